"""The bad-input battery: each case a small sources root broken in one way.

Every case checks the message a plant engineer would read, what went to quarantine, that rows
are conserved (input = accepted + quarantined), and that what was published before is intact.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration import lake
from tests.helpers import build, query, thread_env
from tests.sources import every_system_example, write_sources, write_telemetry


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    data, telemetry = every_system_example()
    sources = write_sources(root / "sources", data, telemetry)
    result = build(sources, root / "data")
    assert result.ok, result.failed
    return root


def extract(system: str, sources: Path, data: Path, env: dict | None = None) -> dg.ExecuteInProcessResult:
    from orchestration.definitions import defs

    with pytest.MonkeyPatch.context() as mp:
        thread_env(mp, sources, data)
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        with dg.DagsterInstance.ephemeral() as instance:
            return dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                                  selection=dg.AssetSelection.groups(system), raise_on_error=False)


def failures(result) -> dict[str, str]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            out[event.step_key] = data.user_failure_data.description if data.user_failure_data else data.error.message
    return out


def materialized(result) -> dict[str, dict]:
    return {e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


# -- mutations of a copied sources root -------------------------------------------------------------

def csv_drop_column(rel: str, column: str):
    def go(src: Path):
        lines = (src / rel).read_text().splitlines()
        header = lines[0].split(",")
        i = header.index(column)
        (src / rel).write_text("\n".join(",".join(x for j, x in enumerate(line.split(",")) if j != i)
                                         for line in lines) + "\n")
    return go


def csv_append(rel: str, line: str):
    def go(src: Path):
        with (src / rel).open("a") as f:
            f.write(line + "\n")
    return go


def csv_append_bytes(rel: str, data: bytes):
    def go(src: Path):
        with (src / rel).open("ab") as f:
            f.write(data)
    return go


def jsonl_append(rel: str, text: str):
    def go(src: Path):
        with (src / rel).open("a") as f:
            f.write(text + "\n")
    return go


def jsonl_drop_field(rel: str, name: str):
    def go(src: Path):
        rows = [json.loads(x) for x in (src / rel).read_text().splitlines() if x.strip()]
        (src / rel).write_text("".join(json.dumps({k: v for k, v in r.items() if k != name}) + "\n" for r in rows))
    return go


def sql(statement: str):
    def go(src: Path):
        con = sqlite3.connect(src / "mes" / "mes.sqlite")
        con.executescript(statement)
        con.commit()
        con.close()
    return go


def write_file(rel: str, content: bytes):
    def go(src: Path):
        (src / rel).write_bytes(content)
    return go


def telemetry_file(name: str, rows: list[dict]):
    def go(src: Path):
        write_telemetry(src / "service" / "telemetry" / name, rows)
    return go


def csv_keep_lines(rel: str, n: int):
    """The export cut after its header and n lines (a writer stopped half way)."""
    def go(src: Path):
        lines = (src / rel).read_text().splitlines()
        (src / rel).write_text("\n".join(lines[:1 + n]) + "\n")
    return go


def recode_utf16(rel: str):
    def go(src: Path):
        (src / rel).write_bytes((src / rel).read_text(encoding="utf-8").encode("utf-16"))
    return go


def telemetry_value_as_text(src: Path):
    table = pa.table({"serial_number": ["U-001"], "ts": pa.array([0], pa.timestamp("us", tz="UTC")),
                      "sensor": ["vibration_mm_s"], "value": ["high"]})
    pq.write_table(table, src / "service" / "telemetry" / "2026-03-02.parquet")


def link_outside(rel: str):
    """Replace an export with a symlink to a file outside the sources root (same content)."""
    def go(src: Path):
        outside = src.parent / ("outside-" + Path(rel).name)
        shutil.copy2(src / rel, outside)
        (src / rel).unlink()
        (src / rel).symlink_to(outside)
    return go


def telemetry_link_outside(src: Path):
    outside = src.parent / "outside.parquet"
    write_telemetry(outside, [{"serial_number": "U-001", "ts": "2026-03-04T00:00:00Z",
                               "sensor": "vibration_mm_s", "value": 1.0}])
    (src / "service" / "telemetry" / "2026-03-04.parquet").symlink_to(outside)


@dataclass
class Case:
    id: str
    system: str
    entity: str
    mutate: Callable[[Path], None]
    message: tuple[str, ...] = ()  # fragments of the failure message (a whole-export breach)
    rejected: int = 0  # rows quarantined
    reason: tuple[str, ...] = ()  # fragments of the quarantine reason
    accepted: int | None = None
    env: dict = field(default_factory=dict)
    warnings: int = 0


UNIT = ("U-004,P-1,A,WO-1,L1,2026-03-01T08:00:00Z,,{status},")
CASES = [
    Case("plm-missing-column", "plm", "parts", csv_drop_column("plm/parts.csv", "part_type"),
         message=("PLM parts", "plm/parts.csv", "column 'part_type'", "required column 'part_type' missing")),
    Case("mes-missing-column", "mes", "units", sql("ALTER TABLE units DROP COLUMN status"),
         message=("MES units", "table units", "column 'status'", "missing")),
    Case("erp-missing-column", "erp", "work_orders", csv_drop_column("erp/work_orders.csv", "status"),
         message=("ERP work_orders", "erp/work_orders.csv", "column 'status'")),
    Case("service-missing-field", "service", "service_events",
         jsonl_drop_field("service/service_events.jsonl", "event_type"),
         message=("SERVICE service_events", "service/service_events.jsonl", "column 'event_type'")),
    Case("wrong-type-in-one-row", "plm", "bom_lines", csv_append("plm/bom_lines.csv", "A-1,A,30,C-1,two"),
         rejected=1, reason=("quantity", "'two' is not a number"), accepted=3),
    Case("wrong-type-whole-column", "service", "telemetry", telemetry_value_as_text,
         message=("SERVICE telemetry", "2026-03-02.parquet", "column 'value'", "wrong type")),
    Case("duplicate-keys", "plm", "parts", csv_append("plm/parts.csv", "C-1,Other name,component,buy,ea,"),
         rejected=2, reason=("key C-1 appears in several records",), accepted=3),
    Case("unknown-enum", "mes", "units", sql(
        "INSERT INTO units VALUES ('U-004','P-1','A','WO-1','L1','2026-03-01T08:00:00Z',NULL,'shipping',NULL)"),
         rejected=1, reason=("status: is 'shipping'", "must be one of"), accepted=3),
    Case("negative-quantity", "mes", "as_built_components", sql(
        "INSERT INTO as_built_components VALUES ('U-003','C-9','A',-1,'-','2026-02-06T10:00:00Z',0)"),
         rejected=1, reason=("quantity", "must be > 0"), accepted=9),
    Case("malformed-json-line", "service", "service_events",
         jsonl_append("service/service_events.jsonl", '{"event_id": "S-3", "serial_number": '),
         rejected=1, reason=("line 3 is not valid JSON",), accepted=0),
    Case("truncated-csv", "erp", "purchase_orders",
         csv_append_bytes("erp/purchase_orders.csv", b"PO-2,1,C-2,B,SUP-1,5,3.1,EU"),
         rejected=1, reason=("line 3 has 8 fields, the header has 11",), accepted=1),
    Case("empty-file", "erp", "item_master", write_file("erp/item_master.csv", b""),
         message=("ERP item_master", "erp/item_master.csv", "file is empty")),
    Case("non-utf8-bytes", "plm", "parts",
         csv_append_bytes("plm/parts.csv", "C-3,Dichtung f\xfcr Pumpe,component,buy,ea,\n".encode("latin-1")),
         rejected=1, reason=("line 6", "not UTF-8"), accepted=4),
    Case("file-missing", "plm", "ecos", lambda src: (src / "plm" / "ecos.csv").unlink(),
         message=("PLM ecos", "plm/ecos.csv", "file missing")),
    Case("mes-table-missing", "mes", "quality_records", sql("DROP TABLE quality_records"),
         message=("MES quality_records", "table quality_records", "table missing")),
    Case("mes-unreachable", "mes", "units", lambda src: None,
         env={"MES_DATABASE_URL": "sqlite:////nonexistent/dir/mes.sqlite"},
         message=("MES units", "database unreachable")),
    Case("duplicated-telemetry", "service", "telemetry", telemetry_file("2026-03-02.parquet", [
        {"serial_number": "U-001", "ts": "2026-03-02T00:00:00Z", "sensor": "vibration_mm_s", "value": 2.0},
        {"serial_number": "U-001", "ts": "2026-03-02T00:00:00Z", "sensor": "vibration_mm_s", "value": 2.0}]),
         rejected=1, reason=("the same record appears more than once",), accepted=1),
    Case("column-added-by-source", "erp", "work_orders", lambda src: (src / "erp" / "work_orders.csv").write_text(
        "\n".join(line + (",priority" if i == 0 else ",high") for i, line in
                  enumerate((src / "erp" / "work_orders.csv").read_text().splitlines())) + "\n"),
         accepted=1),
    Case("timestamp-without-zone", "mes", "units", sql(
        "UPDATE units SET build_started_at = '2026-01-10 08:00:00' WHERE serial_number = 'U-001'"),
         accepted=3, warnings=1),
    Case("released-eco-without-date", "plm", "ecos",
         csv_append("plm/ecos.csv", "ECO-2,t,r,released,2026-02-01T00:00:00Z,,date,2026-03-01,none"),
         rejected=1, reason=("released ECO must have released_at",), accepted=1),
    Case("closed-before-opened", "service", "service_events", jsonl_append(
        "service/service_events.jsonl", json.dumps({
            "event_id": "S-3", "serial_number": "U-003", "event_type": "maintenance",
            "occurred_at": "2026-03-10T00:00:00Z", "closed_at": "2026-03-09T00:00:00Z"})),
         rejected=1, reason=("closed_at must not be before occurred_at",), accepted=0),
    Case("serial-effectivity-with-a-date", "plm", "ecos",
         csv_append("plm/ecos.csv", "ECO-2,t,r,released,2026-02-01T00:00:00Z,2026-02-02T00:00:00Z,serial,2026-03-01,none"),
         rejected=1, reason=("serial number",), accepted=1),
    Case("csv-symlink-outside-root", "plm", "parts", link_outside("plm/parts.csv"),
         message=("PLM parts", "plm/parts.csv", "outside the sources root")),
    Case("jsonl-symlink-outside-root", "service", "customers", link_outside("service/customers.jsonl"),
         message=("SERVICE customers", "service/customers.jsonl", "outside the sources root")),
    Case("telemetry-symlink-outside-root", "service", "telemetry", telemetry_link_outside,
         message=("SERVICE telemetry", "2026-03-04.parquet", "outside the sources root")),
    # Snapshots that shrank implausibly are refused; the last good data stays (issue 16).
    Case("header-only-csv", "plm", "parts", csv_keep_lines("plm/parts.csv", 0),
         message=("PLM parts", "plm/parts.csv", "is empty where the last snapshot had 4", "THREAD_ALLOW_EMPTY")),
    Case("header-only-csv-allowed", "plm", "ecos", csv_keep_lines("plm/ecos.csv", 0),
         env={"THREAD_ALLOW_EMPTY_SNAPSHOTS": "plm.ecos"}, accepted=0),
    Case("csv-cut-short", "plm", "bom_lines", csv_keep_lines("plm/bom_lines.csv", 1),
         message=("PLM bom_lines", "holds 1 rows where the last snapshot had 3", "cut short")),
    Case("empty-jsonl-snapshot", "service", "customers", write_file("service/customers.jsonl", b""),
         message=("SERVICE customers", "service/customers.jsonl", "is empty where the last snapshot had 1")),
    Case("emptied-mes-table", "mes", "units", sql("DELETE FROM units"),
         message=("MES units", "table units", "is empty where the last snapshot had 3")),
    # Non-finite numbers are broken values wherever a number is expected.
    Case("telemetry-minus-infinity", "service", "telemetry", telemetry_file("2026-03-02.parquet", [
        {"serial_number": "U-001", "ts": "2026-03-02T00:00:00Z", "sensor": "vibration_mm_s", "value": float("-inf")},
        {"serial_number": "U-001", "ts": "2026-03-02T06:00:00Z", "sensor": "vibration_mm_s", "value": 2.0}]),
         rejected=1, reason=("value", "is not a finite number"), accepted=1),
    Case("csv-infinite-quantity", "plm", "bom_lines", csv_append("plm/bom_lines.csv", "A-1,A,30,C-1,inf"),
         rejected=1, reason=("quantity", "'inf' is not a finite number"), accepted=3),
    # A bad value never crashes extraction: a row is quarantined, or the export refused clearly.
    Case("deeply-nested-json", "service", "service_events",
         jsonl_append("service/service_events.jsonl", '{"event_id": "S-9", "notes": ' + "[" * 200_000 + "]" * 200_000
                      + "}"), rejected=1, reason=("line 3 is not valid JSON", "nested too deeply"), accepted=0),
    Case("utf16-csv-with-bom", "erp", "item_master", recode_utf16("erp/item_master.csv"), accepted=4),
    Case("utf16-jsonl", "service", "service_bulletins", recode_utf16("service/service_bulletins.jsonl"),
         message=("SERVICE service_bulletins", "is UTF-16", "UTF-8")),
    Case("nul-byte-in-a-csv-line", "plm", "parts", csv_append_bytes("plm/parts.csv", b"C-4,Null\x00part,component,buy,ea,\n"),
         rejected=1, reason=("line 6",), accepted=4),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, baseline, tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(baseline / "sources", sources)
    shutil.copytree(baseline / "data", data)
    raw = data / "lake" / "raw" / case.system / case.entity
    version_before = lake.table(raw).version()
    published = query(data / "warehouse.duckdb", "select count(*) from thread.units")[0][0]
    case.mutate(sources)

    result = extract(case.system, sources, data, case.env)

    key = f"{case.system}/{case.entity}"
    failed = failures(result)
    if case.message:
        message = failed.get(f"{case.system}__{case.entity}")
        assert message, f"{key} should have failed; failures: {failed}"
        for fragment in case.message:
            assert fragment in message, message
        # Nothing half-written: the raw table is the last good version.
        assert lake.table(raw).version() == version_before
        log = [r for r in lake.read(data / "lake" / "audit" / "extractions").to_pylist() if r["entity"] == case.entity]
        assert max(log, key=lambda r: r["extracted_at"])["status"] == "failed"
    else:
        assert f"{case.system}__{case.entity}" not in failed, failed
        meta = materialized(result)[key]
        assert meta["quarantined_rows"] == case.rejected
        assert meta["input_rows"] == meta["accepted_rows"] + meta["quarantined_rows"] + meta["already_loaded_rows"]
        if case.accepted is not None:
            assert meta["accepted_rows"] == case.accepted
        assert meta["warning_rows"] == case.warnings
        quarantine = lake.read(data / "lake" / "quarantine" / case.system / case.entity)
        batch = [r for r in (quarantine.to_pylist() if quarantine is not None else [])
                 if r["batch_id"] == meta["batch_id"]]
        assert len(batch) == case.rejected
        for row in batch:
            assert row["record"] and row["rule"]
            for fragment in case.reason:
                assert fragment in row["reason"], row["reason"]
    # Other systems are untouched and what was published before is still there, whole.
    assert query(data / "warehouse.duckdb", "select count(*) from thread.units")[0][0] == published


def test_column_added_by_the_source_is_carried_into_raw(baseline, tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(baseline / "sources", sources)
    shutil.copytree(baseline / "data", data)
    next(c for c in CASES if c.id == "column-added-by-source").mutate(sources)
    extract("erp", sources, data)
    raw = lake.read(data / "lake" / "raw" / "erp" / "work_orders")
    assert raw.column("priority").to_pylist() == ["high"]


def test_breaches_leave_the_thread_as_it_was_and_other_systems_proceed(baseline, tmp_path):
    """Break PLM and MES exports at once: the build fails loudly, serves the last good thread."""
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(baseline / "sources", sources)
    shutil.copytree(baseline / "data", data)
    twin_sql = "select * exclude (refreshed_at, is_stale, stale_reason) from twin.unit_twin"
    before = {t: sorted(query(data / "warehouse.duckdb", twin_sql if t == "twin.unit_twin" else f"select * from {t}"))
              for t in ("thread.units", "thread.unit_as_built", "thread.unit_as_designed", "twin.unit_twin")}
    csv_drop_column("plm/bom_lines.csv", "quantity")(sources)
    sql("DROP TABLE as_built_components")(sources)
    # Meanwhile ERP has a new work order: it must still get through.
    csv_append("erp/work_orders.csv", "WO-2,P-1,A,5,Lyon,planned,2026-03-01T00:00:00Z,2026-04-01")(sources)

    result = build(sources, data)

    assert not result.ok
    failed = {s.key: s.detail for s in result.failed}
    assert "column 'quantity'" in failed["plm/bom_lines"]
    assert "table missing" in failed["mes/as_built_components"]
    after = {t: sorted(query(data / "warehouse.duckdb", twin_sql if t == "twin.unit_twin" else f"select * from {t}"))
             for t in before}
    assert after == before
    # Kept, never silently wrong: every twin says its PLM and MES data could not be refreshed.
    stale = query(data / "warehouse.duckdb", "select is_stale, stale_reason from twin.unit_twin")
    assert all(s and "last extraction failed: plm (bom_lines), mes (as_built_components)" in r for s, r in stale), stale
    assert lake.read(data / "lake" / "raw" / "erp" / "work_orders").num_rows == 2
    violations = query(data / "warehouse.duckdb",
                       "select system, entity, severity, detail from thread.contract_violations where rule = 'export readable'")
    assert {(s, e) for s, e, _, _ in violations} == {("plm", "bom_lines"), ("mes", "as_built_components")}


def test_cross_system_violations_land_in_the_thread(baseline, tmp_path):
    sources, data = tmp_path / "sources", tmp_path / "data"
    shutil.copytree(baseline / "sources", sources)
    shutil.copytree(baseline / "data", data)
    # A BOM cycle (C-1 contains A-1, which contains C-1), a part MES installed that PLM never
    # heard of, telemetry from a unit MES does not know, and a sensor without design limits.
    csv_append("plm/bom_lines.csv", "C-1,A,10,A-1,1")(sources)
    sql("INSERT INTO as_built_components VALUES ('U-002','X-99','A',1,'-','2026-02-05T10:00:00Z',0)")(sources)
    telemetry_file("2026-03-03.parquet", [
        {"serial_number": "GHOST-1", "ts": "2026-03-03T00:00:00Z", "sensor": "vibration_mm_s", "value": 1.0},
        {"serial_number": "U-001", "ts": "2026-03-03T00:00:00Z", "sensor": "oil_level_pct", "value": 80.0}])(sources)

    result = build(sources, data)

    assert result.ok, result.failed
    rows = query(data / "warehouse.duckdb", "select system, entity, rule, record_key, severity, detail "
                                            "from thread.contract_violations")
    by_rule = {r[2]: r for r in rows}
    assert by_rule["BOM has no cycle"][4] == "error" and "contains itself" in by_rule["BOM has no cycle"][5]
    assert by_rule["as-built part exists in PLM"][3] == "U-002/X-99"
    assert by_rule["telemetry names a known serial"][3] == "GHOST-1"
    assert by_rule["telemetry sensor has design limits"][4] == "warning"
    # The cycle never looped: the designed structure is finite and still has every real part.
    designed = query(data / "warehouse.duckdb", "select part_number from thread.unit_as_designed where serial_number = 'U-001'")
    assert sorted(p for (p,) in designed) == ["A-1", "C-1", "C-2", "P-1"]
