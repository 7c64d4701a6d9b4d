"""A partial publish names few units one by one, many by their serial ranges (publish.units_where)."""

import duckdb
import pyarrow as pa

from orchestration import lake, publish


def _selected(where: str, serials: list[str]) -> set[str]:
    con = duckdb.connect()
    con.register("t", pa.table({"serial_number": serials}))
    return {s for (s,) in con.execute(f"SELECT serial_number FROM t WHERE {where}").fetchall()}


def test_few_units_are_listed_many_become_serial_ranges_delta_accepts(tmp_path):
    fleet = [f"HX200-{i:06d}" for i in range(30_000)] + [f"VX80-{i:06d}" for i in range(5_000)]
    few = fleet[:3]
    assert publish.units_where(few).startswith("serial_number IN (") and _selected(publish.units_where(few), fleet) == set(few)
    assert publish.units_where([]) == "false"
    many = fleet[::2]  # every other unit of both products
    where = publish.units_where(many)
    assert "IN (" not in where and where.count(" OR ") < publish.MAX_RANGES
    # The ranges cover every unit named (and the units between them, whose rows a partial write
    # replaces with the same rows).
    assert set(many) <= _selected(where, fleet)
    # Delta takes it as a predicate: the rows in the ranges are replaced, the others kept.
    path = tmp_path / "sensor_state"
    lake.write(path, pa.table({"serial_number": fleet, "v": [0] * len(fleet)}), "overwrite", batch_id="b1")
    inside = sorted(_selected(where, fleet))
    lake.write(path, pa.table({"serial_number": inside, "v": [1] * len(inside)}), "overwrite", batch_id="b2",
               predicate=where)
    rows = lake.read(path).to_pydict()
    assert len(rows["serial_number"]) == len(fleet)
    assert {s for s, v in zip(rows["serial_number"], rows["v"]) if v == 1} == set(inside)
