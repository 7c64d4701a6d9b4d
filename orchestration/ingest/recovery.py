"""Crash recovery at the boundary: what a killed extraction left behind is undone by the next one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc

from contracts import EntityContract

from .. import lake

SPILL_DIR = "_spill"


def spill_dir(lake_dir: Path) -> Path:
    """Where big exports park accepted rows until their raw commit (never read by anyone else):
    beside the tables of a local lake; for a lake on an object store, on this machine's disk (the
    parked files are written and read back by the same process, so they must be local)."""
    if lake.is_remote(lake_dir):
        import hashlib
        import tempfile

        return Path(tempfile.gettempdir()) / "thread-spill" / hashlib.sha256(str(lake_dir).encode()).hexdigest()[:12]
    return Path(lake_dir) / SPILL_DIR


def discard_crashed_batches(c: EntityContract, lake_dir: Path) -> list[str]:
    """Drop findings, quarantine and spill files of this entity's batches that never finished.

    An extraction writes findings and quarantine, then the raw commit, then its log entry. A batch
    killed before its raw commit is read again by the next run, so what it quarantined would be
    quarantined twice; a batch that committed raw data but died before logging keeps everything.
    """
    prefix = f"{c.system}.{c.entity}."
    spill = spill_dir(lake_dir)
    if spill.is_dir():
        for d in spill.glob(prefix + "*"):
            shutil.rmtree(d, ignore_errors=True)
    mine = (pc.field("system") == c.system) & (pc.field("entity") == c.entity)
    tables = {"findings": lake.audit_table(lake_dir, "contract_findings"),
              "quarantine": lake.quarantine_table(lake_dir, c.system, c.entity)}
    seen: dict[str, set[str]] = {}
    for name, flt in (("findings", mine), ("quarantine", None)):
        t = lake.read(tables[name], columns=["batch_id"], filter=flt)
        seen[name] = set(t.column("batch_id").to_pylist()) if t is not None else set()
    found = {b for ids in seen.values() for b in ids if b and b.startswith(prefix)}
    if not found:
        return []
    log = lake.read(lake.audit_table(lake_dir, "extractions"), columns=["batch_id"], filter=mine)
    finished = set(log.column("batch_id").to_pylist()) if log is not None else set()
    finished |= lake.recent_batches(lake.raw_table(lake_dir, c.system, c.entity))
    crashed = sorted(found - finished)
    if crashed:
        listed = ", ".join(lake.sql_literal(b) for b in crashed)
        for name in ("findings", "quarantine"):
            if seen[name] & set(crashed):
                lake.delete(tables[name], f"batch_id IN ({listed})")
    return crashed
