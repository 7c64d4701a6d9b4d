import pyarrow.compute as pc

from ... import lake
from ..raw import raw_assets
from ..twins import register_units


def _register_twins(context, thread, report) -> dict:
    """MES is the system of record for units: every unit it reports (not scrapped) gets a twin partition."""
    units = lake.read(thread.lake_dir / "raw" / "mes" / "units", columns=["serial_number", "status"])
    live = units.filter(pc.not_equal(units["status"], "scrapped"))["serial_number"].to_pylist()
    return {"twin_partitions_added": register_units(context, live, thread.twin_units_per_partition)}


assets = raw_assets("mes", after={"units": _register_twins})
