"""The ODCS contracts run in a tool we did not write: `datacontract test` executes every rule the
pandera models enforce against what landed in the lake, and fails when a table breaks one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import contracts
from contracts.odcs import export
from orchestration import lake, paths
from orchestration.dbt_project import write_lake_catalog
from tests.helpers import thread

DATACONTRACT = str(Path(sys.executable).parent / "datacontract")


def _test(contract: Path, out: Path) -> tuple[int, dict]:
    done = subprocess.run([DATACONTRACT, "test", str(contract), "--server", "lake", "--output-format", "json",
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads(out.read_text())


def _checks(result: dict) -> list[dict]:
    return result["checks"]


@pytest.fixture(scope="module")
def exported(small_sources, built_small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("odcs")
    done = thread(["contracts", "export", "--out", str(out)], small_sources, built_small)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_every_contract_names_the_lake_and_carries_executable_rules(exported, built_small):
    for system in contracts.SYSTEMS:
        doc = yaml.safe_load((exported / f"{system}.odcs.yaml").read_text())
        assert len(doc["servers"]) == 1
        assert doc["servers"][0]["type"] == "duckdb"
        assert Path(doc["servers"][0]["database"]) == paths.lake_catalog(built_small)
        rules = [q for s in doc["schema"] for q in s["quality"]]
        rules += [q for s in doc["schema"] for p in s["properties"] for q in p.get("quality", [])]
        # Every rule pandera runs in Python has a form the tool runs; only the export's own time zone
        # note stays text (the lake stores UTC instants).
        assert {q["name"] for q in rules if q["type"] == "text"} <= {"utc_timestamp"}
        done = subprocess.run([DATACONTRACT, "lint", str(exported / f"{system}.odcs.yaml")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize("system", sorted(contracts.SYSTEMS))
def test_datacontract_test_passes_on_a_good_build(exported, system, tmp_path):
    code, result = _test(exported / f"{system}.odcs.yaml", tmp_path / "result.json")
    failed = [(c["name"], c.get("reason")) for c in _checks(result) if c["result"] != "passed"]
    assert code == 0 and not failed, failed
    ran = {c.get("type") for c in _checks(result)}
    # The schema (columns and types) and the quality rules all ran, not only the file's syntax.
    assert any("quality" in str(t) for t in ran), ran
    tables = {c.raw_relation for c in contracts.ENTITIES.values() if c.system == system}
    assert {c.get("model") for c in _checks(result)} >= tables


def test_datacontract_test_fails_on_a_table_written_past_the_contract(built_small, tmp_path):
    """Someone appends BOM lines to the lake by hand: one contains itself, one repeats a key."""
    lake_dir = tmp_path / "lake"
    shutil.copytree(built_small / "lake" / "raw", lake_dir / "raw")
    bom = lake.raw_table(lake_dir, "plm", "bom_lines")
    rows = lake.read(bom)
    first = rows.slice(0, 1)
    self_containing = first.set_column(first.schema.get_field_index("child_part_number"), "child_part_number",
                                       first.column("parent_part_number"))
    self_containing = self_containing.set_column(
        self_containing.schema.get_field_index("find_number"), "find_number",
        pa.array([pc.max(rows.column("find_number")).as_py() + 1], pa.int64()))
    lake.write(bom, pa.concat_tables([self_containing, first]), "append", batch_id="by-hand")
    catalog = tmp_path / "lake.duckdb"
    write_lake_catalog(catalog, lake_dir)
    [plm] = [p for p in export(tmp_path / "odcs", contracts.SYSTEMS, contracts.ENTITIES, catalog)
             if p.name.startswith("plm.")]

    code, result = _test(plm, tmp_path / "result.json")
    failed = {c["name"] for c in _checks(result) if c["result"] == "failed"}
    assert code != 0
    assert any("cannot contain itself" in n for n in failed), failed
    assert any("duplicate" in n.lower() or "unique" in n.lower() for n in failed), failed
    # Nothing else is blamed: the other tables are as the build left them.
    assert {c["model"] for c in _checks(result) if c["result"] == "failed"} == {"plm__bom_lines"}
