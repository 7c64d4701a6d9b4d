"""The Dagster code location: every asset of the thread, from source exports to the warehouse."""

import dagster as dg

from .defs.audit import audit
from .defs.erp.assets import assets as erp_assets
from .defs.mes.assets import assets as mes_assets
from .defs.plm.assets import assets as plm_assets
from .defs.publish import warehouse
from .defs.service.assets import assets as service_assets
from .defs.thread import dbt_resource, thread_dbt
from .resources import settings_from_env

RAW_ASSETS = [*plm_assets, *mes_assets, *erp_assets, *service_assets]

defs = dg.Definitions(
    assets=[*RAW_ASSETS, audit, thread_dbt, warehouse],
    resources={"thread": settings_from_env(), "dbt": dbt_resource()},
)
