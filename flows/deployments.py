"""Every schedule of newswatch, in one place, and the deployments built from them.

`newswatch serve` serves these deployments itself; `newswatch deploy --pool NAME` registers the
same deployments with a work pool so `prefect worker start --pool NAME` can run them elsewhere.
Entry points are module paths (`flows.ingest.ingest_feeds`), so any machine with newswatch
installed can run them.
"""

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

from flows.ingest import ingest_feeds
from flows.maintenance import maintenance
from flows.settings import Settings

INGEST_DEPLOYMENT = "scheduled-ingest"
MAINTENANCE_DEPLOYMENT = "daily-maintenance"


def ingest_schedule(settings: Settings) -> Schedule:
    """When feeds are polled: the cron when one is set, else every `serve_interval_seconds`."""
    if settings.serve_cron:
        return Cron(settings.serve_cron, timezone=settings.serve_timezone)
    return Interval(timedelta(seconds=settings.serve_interval_seconds))


def maintenance_schedule(settings: Settings) -> Schedule:
    """When the daily maintenance runs."""
    return Cron(settings.maintenance_cron, timezone=settings.serve_timezone)


def build_deployments(db: Path, settings: Settings) -> list[RunnerDeployment]:
    """The ingest and maintenance deployments for this database.

    Runs of one deployment never overlap (a second is cancelled while one is running); both
    flows also take the database's run lock, so they never interleave with each other either.
    """
    no_overlap = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    parameters = {"db": str(db)}
    return [
        ingest_feeds.to_deployment(
            name=INGEST_DEPLOYMENT,
            schedule=ingest_schedule(settings),
            parameters=parameters,
            concurrency_limit=no_overlap,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["newswatch"],
        ),
        maintenance.to_deployment(
            name=MAINTENANCE_DEPLOYMENT,
            schedule=maintenance_schedule(settings),
            parameters=parameters,
            concurrency_limit=no_overlap,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["newswatch"],
        ),
    ]
