"""dbt's own unit tests (`unit_tests:` beside the models) for every thread rule, run by dbt."""

from __future__ import annotations

import json
import subprocess

from orchestration.dbt_project import DBT_DIR, DBT_EXECUTABLE, prepare_build_db


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
    results = [r for r in json.loads((target / "run_results.json").read_text())["results"]
               if r["unique_id"].startswith("unit_test.")]  # not the on-run-start hook
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
        "genealogy_lot_split_serial_moved_and_first_in_first_out",
        "as_built_tree_places_parts_under_their_built_parent",
        "fleet_health_is_each_units_worst_sensor_of_the_day",
    } <= names
    assert all(r["status"] == "pass" for r in results)


def test_dbt_source_freshness_is_the_last_successful_extraction(built_small_copy, tmp_path):
    """dbt's own freshness check reads the extraction log with each contract's limit: a build that
    just ran is fresh everywhere; an extraction log from long ago makes every source stale."""
    _, data = built_small_copy
    build_db = data / "build" / "build.duckdb"
    fresh = dbt("source", "freshness", build_db=build_db, target=tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stdout[-3000:]
    results = json.loads((tmp_path / "fresh" / "sources.json").read_text())["results"]
    assert {r["unique_id"].split(".")[2] for r in results} == {"plm", "mes", "erp", "service"}
    assert all(r["status"] == "pass" for r in results), [r["unique_id"] for r in results if r["status"] != "pass"]

    import duckdb

    con = duckdb.connect(str(build_db))
    con.execute("CREATE OR REPLACE VIEW raw.audit__extractions AS SELECT * REPLACE "
                "(extracted_at - INTERVAL 30 DAY AS extracted_at) FROM read_parquet('"
                + str(data / "lake" / "audit" / "extractions" / "*.parquet") + "')")
    con.close()
    late = dbt("source", "freshness", build_db=build_db, target=tmp_path / "late")
    assert late.returncode != 0
    results = json.loads((tmp_path / "late" / "sources.json").read_text())["results"]
    assert results and all(r["status"] == "error" for r in results)
