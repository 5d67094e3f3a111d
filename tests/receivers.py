"""The notification receivers of `bench/receivers.py` (a webhook endpoint, an SMTP server) as pytest fixtures."""

import pytest

from bench.receivers import ReceivedRequest, SmtpReceiver, WebhookReceiver

__all__ = ["ReceivedRequest", "SmtpReceiver", "WebhookReceiver", "make_smtp_fixture", "make_webhook_fixture"]


def make_webhook_fixture(scope: str = "function", name: str = "webhook"):
    """Build a pytest fixture yielding a started `WebhookReceiver`.

    Args:
        scope: The pytest fixture scope.
        name: The fixture's name, as test functions request it.

    Returns:
        A fixture function; assign it to a module-level name (or import it into a conftest).
    """
    return _receiver_fixture(WebhookReceiver, scope, name)


def make_smtp_fixture(scope: str = "function", name: str = "smtp"):
    """Build a pytest fixture yielding a started `SmtpReceiver` (arguments as `make_webhook_fixture`)."""
    return _receiver_fixture(SmtpReceiver, scope, name)


def _receiver_fixture(receiver_type, scope: str, name: str):
    @pytest.fixture(scope=scope, name=name)
    def receiver_fixture():
        with receiver_type() as receiver:
            yield receiver

    return receiver_fixture
