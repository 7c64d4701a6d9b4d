"""Changes a test, a benchmark or a demo makes to a sources root, written as the systems would."""

from __future__ import annotations

from pathlib import Path


def release_eco(sources: Path, eco: str, part: str, from_revision: str, to_revision: str, released_at: str,
                effective_from: str, field_action: str = "retrofit", title: str | None = None,
                effectivity_type: str = "date") -> list[str]:
    """Engineering releases an ECO: PLM's export gains the new revision, the ECO (effective from a
    date, or from a serial number) and its affected item. Returns the entities that changed."""
    plm = Path(sources) / "plm"
    with (plm / "part_revisions.csv").open("a") as f:
        f.write(f"{part},{to_revision},released,{released_at},{eco},Revision {to_revision} per {eco}\n")
    with (plm / "ecos.csv").open("a") as f:
        f.write(f"{eco},{title or f'Change {part}'},Engineering change,released,{released_at},{released_at},"
                f"{effectivity_type},{effective_from},{field_action}\n")
    with (plm / "eco_affected_items.csv").open("a") as f:
        f.write(f"{eco},{part},{from_revision},{to_revision}\n")
    return ["plm/part_revisions", "plm/ecos", "plm/eco_affected_items"]


def telemetry_day(sources: Path) -> tuple[list[str], int]:
    """One more day of telemetry and nothing else: the last day's file again, a day later, its
    readings 1 % higher. Returns the entities that changed and how many units reported."""
    from datetime import date, timedelta

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    last = sorted((Path(sources) / "service" / "telemetry").glob("*.parquet"))[-1]
    t = pq.read_table(last)
    day = date.fromisoformat(last.stem) + timedelta(days=1)
    shifted = pc.add(t["ts"].cast(pa.int64()), pa.scalar(86_400_000_000, pa.int64())).cast(t["ts"].type)
    t = t.set_column(t.schema.get_field_index("ts"), "ts", shifted)
    t = t.set_column(t.schema.get_field_index("value"), "value", pc.multiply(t["value"], 1.01))
    pq.write_table(t, last.with_name(f"{day.isoformat()}.parquet"))
    return ["service/telemetry"], len(set(t["serial_number"].to_pylist()))
