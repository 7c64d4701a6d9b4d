"""Imported by `thread serve`'s fork server, after the definitions (orchestration/services.py),
and nowhere else in the product: every run forked from it starts with dbt warm
(defs/dbt_in_process.warm) and with what a run would otherwise import on first use."""

import gc
import importlib

from . import dbt_project, report, services
from .defs import dbt_in_process
from .settings import ThreadSettings

# Imported by a run on first use, not with the definitions: the OpenLineage client the lineage
# module emits through, Dagster's SQLite storage and its migrations (0.4 s in a fresh process),
# pandera's pandas checks, which its first validation imports (0.15 s of an extraction).
RUN_IMPORTS = ("openlineage.client", "openlineage.client.event_v2", "openlineage.client.facet_v2",
               "openlineage.client.transport.file", "openlineage.client.uuid", "alembic.runtime.migration",
               "pandera.backends.pandas.builtin_checks", "pandera.backends.pandas.builtin_hypotheses",
               "dagster._core.storage.runs.sqlite.sqlite_run_storage",
               "dagster._core.storage.event_log.sqlite.sqlite_event_log",
               "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage")

for name in RUN_IMPORTS:
    importlib.import_module(name)
services.storage_asked_less()  # each run opens Dagster's storages: 0.24 s of its start, and more
dbt_in_process.warm(ThreadSettings.from_env())  # as `thread serve` exported the settings for its runs
report.plotting()  # matplotlib, for the publish's chart: 0.5 s in a fresh process
dbt_project.manifest()  # parsed once here, not by each run's first step that asks the manifest
# Everything so far outlives every run: set aside from the garbage collector, which in a run
# walked all of it (about 500,000 objects) at each full collection, 0.3 s each (one during a
# manifest parse made the parse 0.3 s, not 9 ms), writing to the pages a run shares with this
# process. Python's own advice for a process that forks without exec.
gc.freeze()
