"""The Dagster code location: every asset of the thread, from source exports to the warehouse.

Policies are applied here, in one place: sources are extracted when their sensors see a change;
the thread (dbt, estimates, twin change set) is rebuilt in one run after any source lands; the
twins whose inputs changed, and the warehouse, follow in runs the thread's run queues itself (or the
twin-refresh sensor requests); a daily
schedule re-extracts everything; freshness policies on sources (their contracts') and twins.
"""

import warnings
from datetime import timedelta

import dagster as dg

import contracts

from .dbt_project import PROJECT
from .defs.audit import AUDIT_SPECS
from .defs.executor import thread_executor
from .defs.health import rul_model
from .defs.jobs import BUILD_JOBS
from .defs.keys import TWIN_KEY
from .defs.maintenance import LAKE_RETENTION
from .defs.publish import warehouse
from .defs.sources import RAW_ASSETS, source_sensor
from .defs.thread import (
    THREAD_STEP_KEYS,
    WITH_THREAD_TAG,
    dbt_resource,
    thread_dbt,
    thread_refresh_sensor,
)
from .defs.twins import twin_changes, twin_refresh_sensor, twin_units
from .resources import writer_lock_resource
from .settings import settings_resource

# Under `dagster dev` (run by hand) the dbt project is re-parsed on start; `thread serve`, `thread
# build` and `make setup` prepare the manifest before any code location loads it.
PROJECT.prepare_if_dev()

SOURCES = dg.AssetSelection.groups(*contracts.SYSTEMS)
# A source sensor's run extracts what changed and rebuilds the thread right after, in the same run
# (one run launch less between an export change and its twins); thread_refresh covers the rest.
SENSORS = {system: source_sensor(system, then=THREAD_STEP_KEYS, tags={WITH_THREAD_TAG: "true"})
           for system in contracts.SYSTEMS}
TWINS = dg.AssetSelection.assets(TWIN_KEY)

# A twin should reflect its unit within hours even when nothing else happens (daily full refresh).
TWIN_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=6))

# Besides the sensors, once a day: re-extract every source and refresh everything downstream
# (twins follow through the twin-refresh sensor), so nothing depends on a change being seen.
DAILY_FULL_REFRESH = dg.ScheduleDefinition(
    name="daily_full_refresh",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.all() - TWINS,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00 UTC: extract every source and rebuild the thread and the warehouse.",
)

_settings = settings_resource()
_defs = dg.Definitions(
    assets=[*RAW_ASSETS, *AUDIT_SPECS, thread_dbt, rul_model, twin_changes, twin_units, warehouse],
    schedules=[DAILY_FULL_REFRESH, LAKE_RETENTION],
    jobs=BUILD_JOBS,
    sensors=[*SENSORS.values(), thread_refresh_sensor, twin_refresh_sensor],
    resources={"thread": _settings, "writer": writer_lock_resource(_settings), "dbt": dbt_resource()},
    # One process per run, not per step: re-importing the code location costs ~3 s a step here,
    # and the steps of a refresh are sequential anyway (one writer of the build database). A team
    # sends the steps to Celery workers instead (THREAD_CELERY_BROKER_URL).
    executor=thread_executor,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = _defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=TWIN_FRESHNESS), selection=TWINS,
    )
