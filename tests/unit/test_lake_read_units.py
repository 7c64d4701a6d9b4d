"""`lake.read_units`: some units' rows of a Delta table, read by DuckDB's Parquet reader, are the
rows a plain read filtered to those units finds, with the table's own schema (also for a column
added after older files were written)."""

from datetime import datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from orchestration import lake

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rows(serials, with_note=False):
    n = len(serials)
    columns = {
        "serial_number": pa.array(serials, pa.string()),
        "installed_at": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
        "quantity": pa.array([Decimal("1.5")] * n, pa.decimal128(38, 9)),
        "reasons": pa.array([["eco", s] for s in serials], pa.list_(pa.string())),
        "count": pa.array(range(n), pa.int64()),
    }
    if with_note:
        columns["note"] = pa.array([f"note {s}" for s in serials], pa.string())
    return pa.table(columns)


def _sorted(table):
    return table.sort_by([("serial_number", "ascending"), ("count", "ascending")])


def test_read_units_equals_a_filtered_read(tmp_path):
    path = tmp_path / "state"
    lake.write(path, _rows([f"HX-{i:04d}" for i in range(0, 50)]), "append", batch_id="b1")
    # A later file, with a column the first one lacks.
    lake.write(path, _rows([f"HX-{i:04d}" for i in range(40, 90)], with_note=True), "append", batch_id="b2")
    units = ["HX-0003", "HX-0045", "HX-0089", "HX-0500"]
    got = lake.read_units(path, units)
    whole = lake.read(path)
    expected = whole.filter(pc.is_in(whole["serial_number"], pa.array(units)))
    assert got.schema == lake.schema(path)
    assert _sorted(got).equals(_sorted(expected))
    # HX-0045 is in both files: once without a note (the first file's), once with.
    pairs = sorted(zip(got["serial_number"].to_pylist(), got["note"].to_pylist()), key=str)
    assert pairs == [("HX-0003", None), ("HX-0045", "note HX-0045"), ("HX-0045", None),
                     ("HX-0089", "note HX-0089")], pairs
    assert lake.read_units(path, ["HX-9999"]).num_rows == 0
    assert lake.read_units(path, []).num_rows == 0 and lake.read_units(path, []).schema == got.schema
    assert lake.read_units(tmp_path / "none", units) is None
