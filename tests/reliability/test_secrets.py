"""Secrets and personal data: grep everything a run writes.

Two `thread build` processes on a tiny enterprise, the second with a MES URL that carries a
password and cannot be reached (errors are where secrets usually leak). Neither the password nor
the masking salt may appear in any file under THREAD_DATA_DIR (lake, warehouse, build database,
Dagster's run storage and compute logs, dbt logs and target) nor on the terminal. Customers' names
and emails may only be in the restricted raw layer (`lake/raw/service/customers`, and its
quarantine).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from orchestration import lake
from tests.helpers import SALT, delta_tables, start_from, thread

pytestmark = pytest.mark.slow
PASSWORD = "Pw-Leak-4711"
RESTRICTED = ("raw/service/customers", "quarantine/service/customers")


def _file_hits(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return hits


def _duckdb_hits(db: Path, needles: list[str]) -> list[str]:
    """DuckDB compresses strings, so ask it: every text column of every stored table."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = con.execute("SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
                           "JOIN information_schema.tables t USING (table_catalog, table_schema, table_name) "
                           "WHERE t.table_type = 'BASE TABLE' AND c.data_type = 'VARCHAR'").fetchall()
        hits = []
        for schema, table, col in cols:
            for n in needles:
                found = con.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains("{col}", ?)',
                                    [n]).fetchone()[0]
                if found:
                    hits.append(f"{db.name}:{schema}.{table}.{col}: {n}")
        return hits
    finally:
        con.close()


def _delta_hits(lake_dir: Path, needles: list[str], skip=()) -> list[str]:
    """Parquet pages are compressed too: read every text column of every Delta table."""
    hits = []
    for path in delta_tables(lake_dir):
        name = str(path.relative_to(lake_dir))
        if name in skip:
            continue
        t = lake.read(path)
        for col in t.column_names:
            if str(t.schema.field(col).type) in ("string", "large_string"):
                values = "\n".join(v for v in t.column(col).to_pylist() if v)
                hits += [f"lake/{name}.{col}: {n}" for n in needles if n in values]
    return hits


@pytest.fixture(scope="module")
def run(tiny_built, tmp_path_factory):
    # The first build (shared with the other fault tests) ran with the salt; this one adds a password.
    sources, data = start_from(tiny_built, tmp_path_factory.mktemp("secrets"))
    second = thread(["build"], sources, data,
                    MES_DATABASE_URL=f"postgresql+psycopg://thread:{PASSWORD}@127.0.0.1:9/mes?connect_timeout=2")
    assert second.returncode != 0 and "database unreachable" in second.stdout
    return sources, data, tiny_built[2] + second.stdout + second.stderr


def test_secrets_never_reach_files_logs_metadata_or_the_terminal(run):
    _, data, terminal = run
    needles = [PASSWORD, SALT]
    assert [n for n in needles if n in terminal] == []
    assert _file_hits(data, needles) == []
    assert _duckdb_hits(data / "warehouse.duckdb", needles) == []
    assert _duckdb_hits(data / "build" / "build.duckdb", needles) == []
    assert _delta_hits(data / "lake", needles) == []
    # The salt was used, and the scans above do find what is there (a masked email, everywhere).
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    masked = con.execute("SELECT email_masked FROM thread.customers WHERE length(email_masked) = 16").fetchone()[0]
    con.close()
    assert _duckdb_hits(data / "warehouse.duckdb", [masked])
    assert _duckdb_hits(data / "build" / "build.duckdb", [masked])
    assert _delta_hits(data / "lake", [masked])
    assert _file_hits(data, ["database unreachable"])
    assert _file_hits(data, ['"name": "SQLQuery"'])  # dbt's log held every statement it sent


def test_personal_data_stays_in_the_restricted_raw_layer(run):
    sources, data, terminal = run
    people = [json.loads(x) for x in (sources / "service" / "customers.jsonl").read_text().splitlines()]
    needles = sorted({p["email"] for p in people if p.get("email")} | {p["name"] for p in people if p.get("name")})
    assert needles
    assert [n for n in needles if n in terminal] == []
    # Parquet under the restricted tables is compressed; every other file is grepped as bytes.
    other_files = [h for h in _file_hits(data, needles) if not any(r in h for r in RESTRICTED)]
    assert other_files == []
    assert _duckdb_hits(data / "warehouse.duckdb", needles) == []
    assert _duckdb_hits(data / "build" / "build.duckdb", needles) == []
    assert _delta_hits(data / "lake", needles, skip=RESTRICTED) == []
    # The restricted raw layer does keep them (nothing is lost at the boundary).
    raw = lake.read(data / "lake" / "raw" / "service" / "customers").column("email").to_pylist()
    assert set(raw) & set(needles)
