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

from flows.digest import daily_digest
from flows.ingest import ingest_feeds
from flows.maintenance import maintenance
from flows.settings import Settings

INGEST_DEPLOYMENT = "scheduled-ingest"
MAINTENANCE_DEPLOYMENT = "daily-maintenance"
DIGEST_DEPLOYMENT = "daily-digest"


def ingest_schedule(settings: Settings) -> Schedule:
    """When feeds are polled: the cron when one is set, else every `serve_interval_seconds`."""
    if settings.serve_cron:
        return Cron(settings.serve_cron, timezone=settings.serve_timezone)
    return Interval(timedelta(seconds=settings.serve_interval_seconds))


def maintenance_schedule(settings: Settings) -> Schedule:
    """When the daily maintenance runs."""
    return Cron(settings.maintenance_cron, timezone=settings.serve_timezone)


def digest_schedule(settings: Settings) -> Schedule | None:
    """When the daily digest is sent: only when it has somewhere to go (NEWSWATCH_DIGEST_NOTIFY or _DIR)."""
    if not settings.digest_notify and settings.digest_dir is None:
        return None
    return Cron(settings.digest_cron, timezone=settings.serve_timezone)


def build_deployments(db: Path, settings: Settings) -> list[RunnerDeployment]:
    """The ingest and maintenance deployments for this database, and the digest's when it has a target.

    Runs of one deployment never overlap (a second is cancelled while one is running); the ingest
    and maintenance flows also take the database's run lock, so they never interleave with each
    other either. The digest only reads.
    """
    no_overlap = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    scheduled = [
        (ingest_feeds, INGEST_DEPLOYMENT, ingest_schedule(settings)),
        (maintenance, MAINTENANCE_DEPLOYMENT, maintenance_schedule(settings)),
    ]
    if (digest := digest_schedule(settings)) is not None:
        scheduled.append((daily_digest, DIGEST_DEPLOYMENT, digest))
    return [
        flow.to_deployment(
            name=name,
            schedule=schedule,
            parameters={"db": str(db)},
            concurrency_limit=no_overlap,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["newswatch"],
        )
        for flow, name, schedule in scheduled
    ]
