"""The cost of a change follows the change: nothing changed, nothing done; one unit changed, one
shard rebuilt and only what changed published."""

from __future__ import annotations

import json

from orchestration import lake
from tests.helpers import build, digest, retrofit


def _versions(lake_dir) -> dict[str, int]:
    return {str(p.relative_to(lake_dir)): lake.table(p).version() for p in lake.tables(lake_dir)}


def _materialized(result) -> set[str]:
    return {s.key for s in result.steps if s.ok}


def test_a_build_on_unchanged_sources_does_nothing(built_small_copy):
    sources, data = built_small_copy
    before, warehouse = _versions(data / "lake"), digest(data / "warehouse.duckdb")
    result = build(sources, data)
    assert result.ok, result.failed
    done = _materialized(result)
    assert not {k for k in done if k.split("/")[0] in ("staging", "intermediate", "thread", "twin_logic", "twin")}, done
    assert "warehouse" not in done
    after = _versions(data / "lake")
    # Only the extraction log moved: it records that every export was checked (freshness reads it).
    assert {k for k in after if after[k] != before.get(k)} == {"audit/extractions"}
    assert digest(data / "warehouse.duckdb") == warehouse


def test_one_unit_changed_rebuilds_its_shard_and_publishes_only_what_changed(built_small_copy):
    sources, data = built_small_copy
    before = _versions(data / "lake")
    retrofit(sources, 3, 1)
    result = build(sources, data)
    assert result.ok, result.failed
    state = json.loads((data / "build" / "shards.json").read_text())
    assert len(state["thread"]["rebuilt"]) == 1 < len(state["thread"]["digests"]), state["thread"]["rebuilt"]
    after = _versions(data / "lake")
    changed = {k for k in after if after[k] != before.get(k)}
    assert {"thread/unit_configuration", "thread/unit_configuration_history", "twin/unit_twin"} <= changed
    # Tables a retrofit cannot change keep their version: no copy of what did not change.
    assert not changed & {"thread/parts", "thread/part_revisions", "thread/bom_lines", "thread/ecos",
                          "raw/plm/parts", "raw/mes/units"}
    # dbt rebuilt what the changed service events reach, not the PLM-only models beside them.
    done = _materialized(result)
    assert {"thread/service_events", "thread/unit_configuration"} <= done
    assert not done & {"thread/ecos", "thread/bom_lines", "intermediate/int_structures_exploded",
                       "staging/stg_plm__part_revisions"}, done
    refreshed = [s for s in result.steps if s.key == "twin/unit_twin"]
    assert refreshed and refreshed[0].detail.startswith("1 of ")
