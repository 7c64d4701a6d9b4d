"""OpenLineage: every step that moves data is a run with its inputs and outputs, sent where the
OpenLineage client is configured to send them (a file under the data directory by default)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from orchestration import paths
from tests.helpers import thread


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rebuilt(e: dict) -> dict:
    """The event rebuilt with openlineage-python's classes, generated from the OpenLineage spec
    (their validators check the run id, the time, the producer and schema URLs)."""
    event = RunEvent(
        eventType=RunState[e["eventType"]], eventTime=e["eventTime"], run=Run(runId=e["run"]["runId"]),
        job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"]), producer=e["producer"],
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in e["inputs"]],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in e["outputs"]],
    )
    return Serde.to_dict(event)


def _core(e: dict) -> dict:
    return {"eventType": e["eventType"], "eventTime": e["eventTime"], "runId": e["run"]["runId"],
            "job": (e["job"]["namespace"], e["job"]["name"]), "schemaURL": e["schemaURL"],
            "inputs": [(d["namespace"], d["name"]) for d in e["inputs"]],
            "outputs": [(d["namespace"], d["name"]) for d in e["outputs"]]}


def test_every_step_is_a_run_with_a_start_and_an_end(built_small):
    events = _events(built_small / "logs" / "openlineage.jsonl")
    assert len(events) > 100
    runs = defaultdict(list)
    for e in events:
        assert _core(_rebuilt(e)) == _core(e), e["job"]["name"]
        runs[e["run"]["runId"]].append(e["eventType"])
        # Each step belongs to the Dagster run that executed it.
        assert e["run"]["facets"]["parent"]["job"]["name"].startswith("build_"), e["run"]["facets"]["parent"]
    assert all(states == ["START", "COMPLETE"] for states in runs.values()), runs
    jobs = {e["job"]["name"] for e in events}
    assert {"extract.plm.bom_lines", "thread.raw_views", "twin.refresh", "publish.warehouse"} <= jobs
    assert {"dbt.staging.stg_plm__bom_lines", "dbt.twin_logic.unit_twin"} <= jobs
    landed = next(e for e in events if e["job"]["name"] == "extract.plm.bom_lines" and e["eventType"] == "COMPLETE")
    [raw] = landed["outputs"]
    assert raw["outputFacets"]["outputStatistics"]["rowCount"] > 0
    assert {"parent_part_number", "quantity"} <= {f["name"] for f in raw["facets"]["schema"]["fields"]}


def test_a_plm_export_can_be_followed_to_the_twin_table(small_sources, built_small):
    events = [e for e in _events(built_small / "logs" / "openlineage.jsonl") if e["eventType"] == "COMPLETE"]
    downstream = defaultdict(set)
    for e in events:
        for i in e["inputs"]:
            downstream[(i["namespace"], i["name"])] |= {(o["namespace"], o["name"]) for o in e["outputs"]}
    start = ("file", str((small_sources / "plm" / "bom_lines.csv").resolve()))
    seen, todo = {start}, [start]
    while todo:
        for nxt in downstream[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    warehouse = paths.warehouse(built_small).resolve()
    assert (f"duckdb://{warehouse}", "warehouse.twin.unit_twin") in seen
    assert (f"duckdb://{warehouse}", "warehouse.thread.unit_as_designed") in seen
    assert (f"duckdb://{warehouse}", "warehouse.thread.unit_as_built_tree") in seen


def test_lineage_goes_where_openlineage_is_configured_and_a_failure_says_why(built_small_copy, tmp_path):
    sources, data = built_small_copy
    bom = sources / "plm" / "bom_lines.csv"
    bom.write_text(bom.read_text().replace("quantity", "qty", 1))  # a column gone: the export is refused
    target = tmp_path / "lineage" / "events.jsonl"
    target.parent.mkdir()
    default = data / "logs" / "openlineage.jsonl"
    before = len(_events(default))
    done = thread(["build"], sources, data, OPENLINEAGE__TRANSPORT__TYPE="file",
                  OPENLINEAGE__TRANSPORT__LOG_FILE_PATH=str(target), OPENLINEAGE__TRANSPORT__APPEND="true")
    assert done.returncode != 0
    assert len(_events(default)) == before  # nothing to the default file once configured
    events = _events(target)
    failed = [e for e in events if e["eventType"] == "FAIL"]
    assert [e["job"]["name"] for e in failed] == ["extract.plm.bom_lines"]
    assert "quantity" in failed[0]["run"]["facets"]["errorMessage"]["message"]
    assert any(e["job"]["name"] == "extract.plm.parts" and e["eventType"] == "COMPLETE" for e in events)
