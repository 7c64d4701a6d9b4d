"""The whole graph through Dagster on a small simulated enterprise, checked against the sources."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pyarrow.parquet as pq

import contracts
from orchestration import lake
from tests.helpers import query


def _source_rows(sources, c) -> int:
    if c.medium == "csv":
        return len(pd.read_csv(sources / c.location, dtype=str, keep_default_na=False))
    if c.medium == "jsonl":
        return sum(1 for line in (sources / c.location).read_text().splitlines() if line.strip())
    if c.medium == "table":
        con = sqlite3.connect(sources / "mes" / "mes.sqlite")
        try:
            return con.execute(f"select count(*) from {c.location}").fetchone()[0]
        finally:
            con.close()
    return sum(pq.read_metadata(p).num_rows for p in sources.glob(c.location))


def test_raw_layer_holds_every_source_row(small_sources, built_small):
    for c in contracts.ENTITIES.values():
        raw = lake.read(built_small / "lake" / "raw" / c.system / c.entity)
        assert raw is not None, c.name
        assert raw.num_rows == _source_rows(small_sources, c), c.name
        assert {"_batch_id", "_extracted_at", "_source"} <= set(raw.column_names)


def test_every_unit_has_its_rows_and_every_twin_is_a_unit(small_sources, built_small):
    wh = built_small / "warehouse.duckdb"
    con = sqlite3.connect(small_sources / "mes" / "mes.sqlite")
    units = dict(con.execute("select serial_number, status from units").fetchall())
    as_built = pd.read_sql("select serial_number, part_number, revision, quantity from as_built_components", con)
    con.close()

    assert {r[0] for r in query(wh, "select serial_number from thread.units")} == set(units)
    twins = {r[0] for r in query(wh, "select serial_number from twin.unit_twin")}
    assert twins == {s for s, status in units.items() if status != "scrapped"}

    expected = as_built.groupby(["serial_number", "part_number", "revision"]).quantity.sum()
    got = pd.DataFrame(
        query(wh, "select b.serial_number, b.part_number, b.revision, b.quantity from thread.unit_as_built b "
                  "join thread.units u using (serial_number) where b.part_number <> u.product_part_number"),
        columns=["serial_number", "part_number", "revision", "quantity"],
    ).set_index(["serial_number", "part_number", "revision"]).quantity
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    # The product itself is one row per unit, at the revision MES built to.
    assert query(wh, "select count(*) from thread.unit_as_built b join thread.units u "
                     "on u.serial_number = b.serial_number and u.product_part_number = b.part_number "
                     "and u.product_revision = b.revision")[0][0] == len(units)


def test_row_counts_add_up_from_source_to_thread(small_sources, built_small):
    wh = built_small / "warehouse.duckdb"
    parts = pd.read_csv(small_sources / "plm" / "parts.csv")
    ecos = pd.read_csv(small_sources / "plm" / "ecos.csv")
    customers = (small_sources / "service" / "customers.jsonl").read_text().splitlines()
    assert query(wh, "select count(*) from thread.parts")[0][0] == len(parts)
    assert query(wh, "select count(*) from thread.eco_propagation")[0][0] == (ecos.state == "released").sum()
    assert query(wh, "select count(*) from thread.customers")[0][0] == len(customers)
    # Current configuration = as-built for units that never had a part swapped in the field.
    swapped = {json.loads(x)["serial_number"] for x in
               (small_sources / "service" / "service_events.jsonl").read_text().splitlines()
               if json.loads(x)["installed_part_number"] or json.loads(x)["removed_part_number"]}
    untouched = query(wh, """
        select count(*) from (
            select serial_number, part_number, revision, quantity from thread.unit_as_built
            except
            select serial_number, part_number, revision, quantity from thread.unit_configuration
        ) where serial_number not in (select unnest(?))""", [sorted(swapped)])[0][0]
    assert untouched == 0


def test_no_clear_text_personal_data_is_published(small_sources, built_small):
    wh = built_small / "warehouse.duckdb"
    people = [json.loads(x) for x in (small_sources / "service" / "customers.jsonl").read_text().splitlines()]
    secrets = [p["email"].lower() for p in people[:5]] + [p["name"].lower() for p in people[:5]]
    tables = query(wh, "select table_schema, table_name from information_schema.tables")
    assert len(tables) >= 15
    for schema, table in tables:
        for secret in secrets:
            hits = query(wh, f"select count(*) from {schema}.{table} t where contains(lower(cast(t as varchar)), ?)",
                         [secret])[0][0]
            assert hits == 0, f"{schema}.{table} shows personal data"


def test_published_tables_are_also_delta(built_small):
    for schema, table in (("thread", "units"), ("twin", "unit_twin"), ("thread", "eco_propagation"),
                          ("thread", "unit_component_serials"), ("twin", "unit_twin_history"), ("twin", "rul_models")):
        copy = lake.read(built_small / "lake" / schema / table)
        n = query(built_small / "warehouse.duckdb", f"select count(*) from {schema}.{table}")[0][0]
        assert copy is not None and copy.num_rows == n


# Run in a separate interpreter that cannot import the project (-I: no current directory, no
# PYTHONPATH): what any analyst's polars or deltalake sees.
PLAIN_READER = """
import json, sys
from pathlib import Path
import deltalake, polars
out = {}
for layer in ("thread", "twin"):
    for path in sorted(p for p in (Path(sys.argv[1]) / layer).iterdir()):
        frame = polars.read_delta(str(path))
        fields = json.loads(deltalake.DeltaTable(str(path)).schema().to_json())["fields"]
        out[f"{layer}.{path.name}"] = {"rows": frame.height,
                                       "comments": {f["name"]: f["metadata"].get("comment") for f in fields},
                                       "required": sorted(f["name"] for f in fields if not f["nullable"])}
print(json.dumps(out))
"""


def test_every_published_delta_table_opens_in_plain_polars_with_its_descriptions(built_small):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-I", "-c", PLAIN_READER, str(built_small / "lake")],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    tables = json.loads(done.stdout)
    published = {f"{s}.{t}" for s, t in query(built_small / "warehouse.duckdb",
                                              "select schema_name, table_name from duckdb_tables()")}
    assert set(tables) == published  # nothing else under lake/thread and lake/twin
    for name, t in tables.items():
        assert t["rows"] == query(built_small / "warehouse.duckdb", f"select count(*) from {name}")[0][0], name
    comments = dict(query(built_small / "warehouse.duckdb", """
        select c.schema_name || '.' || c.table_name || '.' || c.column_name, c.comment from duckdb_columns() c
        join duckdb_tables() t using (schema_name, table_name)
        where c.comment is not null and c.schema_name in ('thread', 'twin')"""))
    assert comments and all(tables[k.rsplit(".", 1)[0]]["comments"][k.rsplit(".", 1)[1]] == v
                            for k, v in comments.items())
    assert "serial_number" in tables["thread.units"]["required"]
    assert "part_number" in tables["thread.parts"]["required"]


def test_tables_beyond_dbt_are_described_in_the_warehouse(built_small):
    """The twin history and the model versions are written by the publish step, not dbt: their
    descriptions travel as DuckDB comments like the dbt models' do."""
    missing = query(built_small / "warehouse.duckdb", """
        select table_name || '.' || column_name from duckdb_columns()
        where schema_name = 'twin' and table_name in ('unit_twin_history', 'rul_models', 'unit_twin')
          and comment is null""")
    assert missing == []
    assert query(built_small / "warehouse.duckdb", "select count(*) from twin.unit_twin_history")[0][0] > 0


def test_dbt_ran_in_process_left_its_results_and_an_info_log_but_no_manifest_copy(built_small):
    """The run's target folder holds what dbt ran (read by the lineage), not a second manifest;
    dbt's log file has what dbt prints, not every SQL statement (THREAD_DBT_LOG_LEVEL=debug)."""
    target = built_small / "build" / "dbt_target"
    results = json.loads((target / "run_results.json").read_text())
    assert results["results"] and all(r["status"] in ("success", "pass") for r in results["results"])
    assert not (target / "manifest.json").exists()
    events = [json.loads(line) for line in (built_small / "logs" / "dbt" / "dbt.log").read_text().splitlines()
              if line.startswith("{")]
    assert any(e["info"]["name"] == "LogModelResult" for e in events)
    assert {e["info"]["level"] for e in events} <= {"info", "warn", "error"}
