"""The Dagster code location: every asset of the thread, from source exports to the warehouse.

Policies are applied here, in one place: sources are extracted when their sensors see a change,
everything downstream follows by declarative automation, twins by the twin-refresh sensor.
"""

import warnings
from datetime import timedelta

import dagster as dg

from .defs.audit import audit
from .defs.erp.assets import assets as erp_assets
from .defs.health import rul_model
from .defs.erp.sensors import sensor as erp_sensor
from .defs.mes.assets import assets as mes_assets
from .defs.mes.sensors import sensor as mes_sensor
from .defs.plm.assets import assets as plm_assets
from .defs.plm.sensors import sensor as plm_sensor
from .defs.publish import warehouse
from .defs.service.assets import assets as service_assets
from .defs.service.sensors import sensor as service_sensor
from .defs.thread import dbt_resource, thread_dbt
from .defs.keys import TWIN_KEYS
from .defs.twins import twin_changes, twin_refresh_sensor, twin_units
from .resources import lock_from_env, settings_from_env

RAW_ASSETS = [*plm_assets, *mes_assets, *erp_assets, *service_assets]
SOURCE_GROUPS = ("plm", "mes", "erp", "service")

# "eager" without its missing-dependency guard: the warehouse must publish even while a new
# unit's twin partition has never been materialized (that twin is simply marked stale).
FOLLOWS_UPSTREAM = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("follows_upstream")
FOLLOWERS = dg.AssetSelection.all() - dg.AssetSelection.groups(*SOURCE_GROUPS) - dg.AssetSelection.assets(*TWIN_KEYS)
# A twin should reflect its unit within hours even when nothing else happens (daily full refresh).
TWIN_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=6))

# Besides the sensors, once a day: re-extract every source and refresh everything downstream
# (twins follow through the twin-refresh sensor), so nothing depends on a change being seen.
DAILY_FULL_REFRESH = dg.ScheduleDefinition(
    name="daily_full_refresh",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(*TWIN_KEYS),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00 UTC: extract every source and rebuild the thread and the warehouse.",
)

_defs = dg.Definitions(
    assets=[*RAW_ASSETS, audit, thread_dbt, rul_model, twin_changes, twin_units, warehouse],
    schedules=[DAILY_FULL_REFRESH],
    sensors=[
        plm_sensor, mes_sensor, erp_sensor, service_sensor, twin_refresh_sensor,
        dg.AutomationConditionSensorDefinition(
            "thread_automation",
            target=FOLLOWERS,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=5,
            description="Refreshes the thread, the twin change set and the warehouse after the sources land.",
        ),
    ],
    resources={"thread": settings_from_env(), "writer": lock_from_env(), "dbt": dbt_resource()},
    # One process per run, not per step: re-importing the code location costs ~3 s a step here,
    # and the steps of a refresh are sequential anyway (one writer of the build database).
    executor=dg.in_process_executor,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = _defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(automation_condition=FOLLOWS_UPSTREAM), selection=FOLLOWERS
    ).map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=TWIN_FRESHNESS),
        selection=dg.AssetSelection.assets(*TWIN_KEYS),
    )
