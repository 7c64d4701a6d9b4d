"""The conformed thread: dbt models as Dagster assets, lineage from each raw asset to each mart.

Keys and groups are dagster-dbt's defaults: a model's key is its schema and name (`thread/units`),
its group the `dagster.group` its folder declares in dbt_project.yml, so the graph reads left to
right: systems (plm, mes, erp, service) -> staging -> intermediate -> thread -> twin -> publish.
"""

import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from ..dbt_project import DBT_EXECUTABLE, PROJECT, BuildDatabaseLocked, prepare_build_db
from .. import fingerprints
from ..faults import checkpoint
from ..fingerprints import Ledger
from ..resources import WriterLock
from ..settings import ThreadSettings
from .keys import AUDIT_WRITTEN_BY_DBT_STEP


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=PROJECT, dbt_executable=DBT_EXECUTABLE)


@dbt_assets(manifest=PROJECT.manifest_path, project=PROJECT, name="thread_dbt")
def thread_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, thread: ThreadSettings, writer: WriterLock):
    # dbt reads schema `raw` of the build database; point it at the current raw Delta versions.
    if thread.salt_is_generated:
        context.log.warning(f"THREAD_PII_SALT is not set: customers are masked with a generated secret salt kept in "
                            f"{thread.generated_salt_file} (owner-only). Set THREAD_PII_SALT in production.")
    ledger = Ledger(thread.build_db)
    inputs = fingerprints.thread_inputs(thread.lake_dir, PROJECT.manifest_path, thread.salt())
    if ledger.unchanged("thread", inputs):
        context.log.info("Every input of the thread is as it was at the last dbt build: nothing to do.")
        return
    try:
        prepare_build_db(thread.build_db, thread.lake_dir, thread.salt())
    except BuildDatabaseLocked as e:
        raise dg.Failure(str(e), allow_retries=False) from None
    ledger.forget("thread")  # from here on the build database no longer matches any fingerprint
    for key in AUDIT_WRITTEN_BY_DBT_STEP:
        context.log_event(dg.AssetMaterialization(asset_key=key, metadata={"build_db": str(thread.build_db)}))
    args = [
        "build",
        # The memory limit is validated here, before dbt-duckdb pastes it into SET.
        "--vars", json.dumps(thread.dbt_vars()),
        "--threads", str(thread.threads),
        "--log-path", str(thread.dbt_log_dir),
        # dbt unit tests check the SQL rules on fixed inputs: they run in the test suite, not on
        # every refresh of the data.
        "--exclude", "test_type:unit",
    ]
    for i, event in enumerate(dbt.cli(args, context=context, target_path=thread.dbt_target_dir).stream()):
        if i == 1:
            checkpoint("dbt-run")
        yield event
    if context.selected_asset_keys >= set(thread_dbt.keys):
        ledger.record("thread", inputs)


def published_keys() -> list[dg.AssetKey]:
    return sorted((k for k in thread_dbt.keys if k.path[0] == "thread"), key=lambda k: k.path)
