"""The `newswatch` command line: the command table.

The commands live in `flows/commands/`, one module per group (`ingest`, `feeds`, `service`,
`watches`, `reading`, `apps`), with what they share in `common` and the database checks in
`database`. Heavy libraries (Prefect, torch, the web servers) are imported inside the commands
that need them, so that a command which does not use them starts fast.
"""

import os

# Set before Prefect and transformers are imported: no telemetry, no hub access, quiet loading.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer

from flows.commands import apps, feeds, ingest, reading, service, watches
from flows.processes import exit_without_interpreter_teardown

app = typer.Typer(
    help="newswatch: ingest news, link duplicates and group articles into stories in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In this order in `newswatch --help`.
app.command("run")(ingest.run)
app.command("stories")(reading.stories_command)
app.command("clusters", hidden=True)(reading.stories_command)  # its earlier name, still accepted
app.command("reextract")(ingest.reextract)
app.command("add-feed")(feeds.add_feed_command)
app.command("remove-feed")(feeds.remove_feed_command)
app.command("import-opml")(feeds.import_opml_command)
app.command("export-opml")(feeds.export_opml_command)
app.command("feeds")(feeds.feeds_command)
app.command("serve")(service.serve)
app.command("deploy")(service.deploy)
app.command("status")(service.status)
app.command("add-watch")(watches.add_watch_command)
app.command("remove-watch")(watches.remove_watch_command)
app.command("watches")(watches.watches_command)
app.command("test-watch")(watches.test_watch_command)
app.command("search")(reading.search_command)
app.command("digest")(reading.digest_command)
app.command("dashboard")(apps.dashboard)
app.command("api")(apps.api)
app.command("export")(reading.export_command)


def main() -> None:
    """Entry point of the `newswatch` script."""
    with exit_without_interpreter_teardown():
        app()


if __name__ == "__main__":
    main()
