"""Where a flow's CPU-heavy chunk tasks run: in the flow's own process, or on a Dask cluster.

Extraction and embedding are split into chunk tasks; with `NEWSWATCH_TASK_RUNNER=dask` they are
submitted through Prefect's `DaskTaskRunner` (prefect-dask) to the cluster at
`NEWSWATCH_DASK_ADDRESS`, or to a local cluster of `NEWSWATCH_DASK_WORKERS` worker processes
started for the run. Fetching, deduplication, clustering and loading stay in the flow: they need
the whole batch and the one DuckDB writer.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flows.settings import Settings

ChunkMap = Callable[[Any, Sequence[dict[str, Any]]], list[Any]]


def chunked(items: list, size: int) -> list[list]:
    """The items in consecutive chunks of at most `size`."""
    return [items[start:start + size] for start in range(0, len(items), size)]


@contextmanager
def chunk_runner(settings: Settings) -> Iterator[ChunkMap]:
    """A function running a task once per parameter dict and returning the results in order."""
    if settings.task_runner != "dask":
        yield lambda task, calls: [task(**parameters) for parameters in calls]
        return
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        runner = DaskTaskRunner(address=settings.dask_address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={"n_workers": settings.dask_workers, "threads_per_worker": 1, "processes": True,
                            "dashboard_address": None},
        )
    with runner:
        def submit_all(task, calls):
            futures = [runner.submit(task, parameters) for parameters in calls]
            return [future.result() for future in futures]

        yield submit_all
