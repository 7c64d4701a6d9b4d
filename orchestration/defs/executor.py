"""Where a run's steps execute: in the run's process (one machine), or on Celery workers (a team).

Chosen when the run starts, from THREAD_CELERY_BROKER_URL, so the same definitions serve both;
`thread build` always runs in its own process (`execute_in_process`).
"""

from __future__ import annotations

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.in_process import InProcessExecutor

from ..settings import ThreadSettings

CELERY_QUEUE = "dagster"


def celery_app(settings: ThreadSettings):
    """The Celery app the executor submits steps to and `thread worker` serves: dagster-celery's,
    on our broker."""
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    app = make_app(_celery(settings).app_args())
    create_task(app)
    return app


def _celery(settings: ThreadSettings):
    from dagster_celery.executor import CeleryExecutor

    # No retries here: a failed step is reported as it failed (a rerun redoes the run, idempotently).
    return CeleryExecutor(broker=settings.celery_broker_url, backend=settings.celery_backend_url,
                          retries=RetryMode.DISABLED)


@dg.executor(name="thread")
def thread_executor(init_context: dg.InitExecutorContext):
    """In-process without THREAD_CELERY_BROKER_URL; with it, dagster-celery's executor: each step a
    task on the broker, run by whichever `thread worker` takes it (they need the same code, the
    same THREAD_* settings and a Dagster instance on PostgreSQL)."""
    settings = ThreadSettings.from_env()
    if not settings.celery_broker_url:
        return InProcessExecutor(retries=RetryMode.DISABLED)
    if not settings.dagster_pg_url:
        raise dg.DagsterInvariantViolationError(
            "THREAD_CELERY_BROKER_URL is set but THREAD_DAGSTER_PG_URL is not: Celery workers on other machines "
            "report their steps to the Dagster instance, which must then be on PostgreSQL.")
    return _celery(settings)
