"""The conformed thread: dbt models as Dagster assets, lineage from each raw asset to each mart.

Asset keys and groups follow the layers so the graph reads left to right:
systems (plm, mes, erp, service) -> staging -> intermediate -> thread -> twin -> publish.
"""


import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from .. import lake
from ..faults import checkpoint
from ..dbt_project import DBT_DIR, DBT_EXECUTABLE, MANIFEST
from ..resources import LakeLock, ThreadSettings
from ..warehouse import prepare_build_db

LAYERS = ("staging", "intermediate", "thread", "twin_logic")
GROUP_OF_LAYER = {"twin_logic": "twin"}


class ThreadTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "model":
            layer = dbt_resource_props["fqn"][1]
            return dg.AssetKey([layer, dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props["resource_type"] == "model" and len(fqn) > 1 and fqn[1] in LAYERS:
            return GROUP_OF_LAYER.get(fqn[1], fqn[1])
        return super().get_group_name(dbt_resource_props)


TRANSLATOR = ThreadTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=str(DBT_DIR), profiles_dir=str(DBT_DIR), dbt_executable=DBT_EXECUTABLE)


@dbt_assets(manifest=MANIFEST, dagster_dbt_translator=TRANSLATOR, name="thread_dbt")
def thread_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource, thread: ThreadSettings, writer: LakeLock):
    lake.memory_limit()  # dbt-duckdb pastes it into SET; refuse a bad value before dbt starts
    # dbt reads schema `raw` of the build database; point it at the current raw Delta versions.
    prepare_build_db(thread.build_db, thread.lake_dir, thread.pii_salt)
    args = [
        "build",
        "--vars", json.dumps({"build_db": str(thread.build_db)}),
        "--log-path", str(thread.dbt_log_dir),
        # dbt unit tests check the SQL rules on fixed inputs: they run in the test suite, not on
        # every refresh of the data.
        "--exclude", "test_type:unit",
    ]
    for i, event in enumerate(dbt.cli(args, context=context, target_path=thread.dbt_target_dir).stream()):
        if i == 1:
            checkpoint("dbt-run")
        yield event


def published_keys() -> list[dg.AssetKey]:
    return sorted((k for k in thread_dbt.keys if k.path[0] == "thread"), key=lambda k: k.path)
