"""Prefect's run loggers, kept from printing a traceback for an error that a command reports in one line."""

import logging

from flows.disk import disk_failure

_PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class NoTracebackForReportedErrors(logging.Filter):
    """Drops the traceback of a record whose error is one of `errors` or a full or read-only disk; the message stays."""

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], self.errors) or disk_failure(record.exc_info[1])):
            record.exc_info = record.exc_text = None  # the message line stays; the command prints the error
        return True


def quiet_reported_errors(errors: tuple[type[BaseException], ...]) -> None:
    """Keep Prefect from logging a traceback for an error that the command reports in one line."""
    for name in _PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(item, NoTracebackForReportedErrors) for item in logger.filters):
            logger.addFilter(NoTracebackForReportedErrors(errors))
