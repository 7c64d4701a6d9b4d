"""Is each source system within its freshness limit? Read from the extraction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import contracts

from . import lake


@dataclass(frozen=True)
class SourceFreshness:
    system: str
    limit_hours: float
    last_success_at: datetime | None
    last_attempt_status: str | None
    is_late: bool
    # Entities whose latest extraction failed (source unreachable or export broken): the lake
    # still serves their last good data, but nobody knows whether the source has moved on.
    failing_entities: tuple[str, ...] = ()

    @property
    def is_failing(self) -> bool:
        return bool(self.failing_entities)

    @property
    def age_hours(self) -> float | None:
        if self.last_success_at is None:
            return None
        return (datetime.now(timezone.utc) - self.last_success_at).total_seconds() / 3600


def sources(lake_dir: Path, now: datetime | None = None) -> list[SourceFreshness]:
    now = now or datetime.now(timezone.utc)
    log = lake.read(lake.audit_table(lake_dir, "extractions"))
    rows = log.to_pylist() if log is not None else []
    out = []
    for name, system in contracts.SYSTEMS.items():
        mine = sorted((r for r in rows if r["system"] == name), key=lambda r: r["extracted_at"])
        ok = [r["extracted_at"] for r in mine if r["status"] == "ok"]
        last = max(ok) if ok else None
        limit = system.freshness_limit
        latest: dict[str, dict] = {}
        for r in mine:
            latest[r["entity"]] = r
        out.append(SourceFreshness(
            system=name,
            limit_hours=limit.total_seconds() / 3600,
            last_success_at=last,
            last_attempt_status=mine[-1]["status"] if mine else None,
            is_late=last is None or now - last > limit,
            failing_entities=tuple(sorted(e for e, r in latest.items() if r["status"] == "failed")),
        ))
    return out


# The newest business event each system's data in the warehouse records: an extraction that ran a
# minute ago says nothing about whether the system itself is still recording anything.
NEWEST_EVENT_SQL = {
    "plm": "SELECT max(released_at) FROM thread.part_revisions",
    "mes": "SELECT max(greatest(build_started_at, build_completed_at, shipped_at)) FROM thread.units",
    "erp": "SELECT max(erp_adopted_at) FROM thread.eco_propagation",
    "service": "SELECT greatest((SELECT max(occurred_at) FROM thread.service_events), "
               "(SELECT max(last_telemetry_at) FROM twin.unit_twin))",
}


def newest_events(con) -> dict[str, datetime | None]:
    """Per system, the time of the newest event its data in the warehouse (`con`) holds."""
    return {system: con.execute(NEWEST_EVENT_SQL[system]).fetchone()[0] for system in contracts.SYSTEMS}
