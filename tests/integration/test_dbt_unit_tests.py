"""dbt's own unit tests (`unit_tests:` beside the models) for every thread rule, run by dbt."""

from __future__ import annotations

import json
import subprocess

from orchestration.dbt_project import DBT_DIR, DBT_EXECUTABLE
from orchestration.warehouse import prepare_build_db


def dbt(*args: str, build_db, target) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DBT_EXECUTABLE, *args, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--vars", json.dumps({"build_db": str(build_db)}), "--target-path", str(target),
         "--log-path", str(target / "logs")],
        capture_output=True, text=True,
    )


def test_every_rule_passes_its_dbt_unit_tests(tmp_path):
    build_db = tmp_path / "build.duckdb"
    prepare_build_db(build_db, tmp_path / "lake", "salt")  # empty lake: typed, empty raw views
    target = tmp_path / "target"
    # Unit tests read their parents' column types from the database: create them, empty.
    empty = dbt("run", "--empty", build_db=build_db, target=target)
    assert empty.returncode == 0, empty.stdout[-3000:]
    result = dbt("test", "--select", "test_type:unit", build_db=build_db, target=target)
    assert result.returncode == 0, result.stdout[-5000:]
    results = json.loads((target / "run_results.json").read_text())["results"]
    names = {r["unique_id"].split(".")[-1] for r in results if r["status"] == "pass"}
    assert {
        "released_revisions_ignore_in_work_cancelled_and_unreleased_ecos",
        "designed_revision_date_and_serial_edges",
        "explosion_multiplies_quantities_and_stops_at_gaps_and_cycles",
        "configuration_changes_resolve_removals_in_order",
        "history_periods_follow_quantity_changes",
        "deviations_of_each_type",
        "propagation_when_only_some_parts_arrived",
        "impact_for_each_category",
        "failures_attributed_before_and_after_a_retrofit",
    } <= names
    assert all(r["status"] == "pass" for r in results)
