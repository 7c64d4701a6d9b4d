"""Keeping the lake bounded: a retention schedule (Delta checkpoints, vacuum, log cleanup)."""

import dagster as dg

from .. import lake
from ..resources import WriterLock
from ..settings import ThreadSettings


@dg.op(description="Checkpoint every Delta table, vacuum files no version within the retention period reads, "
       "drop old log entries. Holds the writer lock: never runs beside a refresh.")
def retain_lake_versions(context: dg.OpExecutionContext, thread: ThreadSettings, writer: WriterLock) -> None:
    hours = thread.retention_hours
    removed = {}
    for path in lake.tables(thread.lake_dir):
        n = lake.retain(path, hours)
        if n:
            removed[str(path.relative_to(thread.lake_dir))] = n
    context.log.info(f"Kept {hours} h of versions; removed {sum(removed.values())} files: {removed}")


@dg.job(description="Bound the lake's growth: keep THREAD_RETENTION_DAYS of table versions.")
def lake_retention():
    retain_lake_versions()


LAKE_RETENTION = dg.ScheduleDefinition(
    job=lake_retention, cron_schedule="30 4 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 04:30 UTC, after the daily refresh: checkpoints, vacuum, log cleanup.",
)
