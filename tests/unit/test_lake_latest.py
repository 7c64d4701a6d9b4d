"""`lake.latest`: the newest matching row of an append-only Delta log, read from as few files as its
statistics allow, equals what a read of the whole table finds."""

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from orchestration import lake

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rows(*rows):
    return pa.table({"system": [r[0] for r in rows], "entity": [r[1] for r in rows],
                     "at": pa.array([T0 + timedelta(minutes=r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
                     "n": [r[2] for r in rows]})


def _slow(path, system, entity):
    t = lake.read(path)
    t = t.filter(pc.and_(pc.equal(t["system"], system), pc.equal(t["entity"], entity)))
    return t.sort_by([("at", "descending")]).slice(0, 1).to_pylist()[0] if t.num_rows else None


@pytest.mark.parametrize("compacted", [False, True])
def test_latest_is_the_newest_matching_row(tmp_path, compacted):
    path = tmp_path / "log"
    # One row per append, as the extraction log grows; one append with several entities, whose
    # newest row belongs to another entity than an older file's.
    for i, (system, entity) in enumerate([("plm", "ecos"), ("mes", "units"), ("plm", "ecos"), ("plm", "parts")]):
        lake.write(path, _rows((system, entity, i)), "append", batch_id=f"b{i}")
    lake.write(path, _rows(("plm", "ecos", 10), ("mes", "units", 30), ("plm", "parts", 5)), "append", batch_id="b9")
    lake.write(path, _rows(("mes", "units", 20)), "append", batch_id="b10")
    if compacted:  # rows of every entity in one file
        DeltaTable(str(path)).optimize.compact()
    for system, entity in [("plm", "ecos"), ("mes", "units"), ("plm", "parts"), ("mes", "parts"), ("erp", "orders")]:
        assert lake.latest(path, {"system": system, "entity": entity}, "at") == _slow(path, system, entity)
    assert lake.latest(path, {"system": "mes", "entity": "units"}, "at")["n"] == 30
    assert lake.latest(tmp_path / "none", {"system": "plm"}, "at") is None
