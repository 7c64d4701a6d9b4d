"""What an export looks like from outside, without reading its rows: the signature sensors compare.

Files: size and modification time (the telemetry folder: its files' names and sizes); MES tables:
row count, timestamp high-water marks and status mix (and, for an extraction, the SQLite file's stamp). Each extraction records the signature it
started from, so a sensor's first look compares the exports with what the lake last extracted,
not with whatever it happens to find when `thread serve` starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from contracts import EntityContract

from .. import lake
from . import audit, mes
from .readers import Sources


def _file_signature(c: EntityContract, root: Path) -> str:
    # lstat: a file swapped for a link (or a link re-pointed) is a different export, even when
    # what it points to has the same size and time. Not the inode: a sources root copied or
    # restored elsewhere (times kept) is the same export.
    if c.medium == "parquet":
        files = sorted(Path(root).glob(c.location))
        return hashlib.sha1(json.dumps([(f.name, f.lstat().st_size, f.is_symlink()) for f in files]).encode()).hexdigest()
    path = Path(root) / c.location
    if not path.exists() and not path.is_symlink():
        return "missing"
    st = path.lstat()
    return f"{st.st_size}:{st.st_mtime_ns}" + (":link" if path.is_symlink() else "")


# Joins a table's signature and its database file's stamp (see `mes.database_stamp`).
STAMP = " @ "


def signatures(entities: list[EntityContract], src: Sources, *, stamped: bool = False) -> dict[str, str]:
    """Per entity (of one system), its export's signature now. `stamped`: an MES table's also
    carries its SQLite file's stamp, which changes with any write to any table: what an
    extraction needs to know nothing changed, too coarse for a sensor to pick what to extract."""
    tables = [c for c in entities if c.medium == "table"]
    out = mes.table_fingerprints(tables, src.mes_url) if tables else {}
    stamp = mes.database_stamp(src.mes_url) if tables and stamped else None
    if stamp:
        out = {entity: f"{signature}{STAMP}{stamp}" for entity, signature in out.items()}
    out.update({c.entity: _file_signature(c, src.root) for c in entities if c.medium != "table"})
    return out


def extraction_signature(c: EntityContract, src: Sources, lake_dir: Path) -> str:
    """The signature an extraction of `c` starts from (`signatures`, stamped). An MES table whose
    SQLite file has the stamp its last extraction started from has not been written since: its
    counts are that extraction's (counting them again took 0.5 s for as_built_components at
    10,000 units, on every build)."""
    if c.medium == "table":
        stamp = mes.database_stamp(src.mes_url)
        last = audit.last_extraction(lake_dir, c) if stamp else None
        if last is not None and (last["source_signature"] or "").endswith(STAMP + stamp):
            return last["source_signature"]
    return signatures([c], src, stamped=True)[c.entity]


# The entry of a sensor's cursor that holds an SQLite MES database's stamp: while the file's stamp
# is the same, no table changed and the tables are not counted again (at 10,000 units the MES
# sensor's counts took 0.45 s a tick, every 2 s).
CURSOR_STAMP = "_database_stamp"


def database_stamp(entities: list[EntityContract], src: Sources) -> str | None:
    """The stamp of the database these entities' tables are in (None: files, or a server)."""
    return mes.database_stamp(src.mes_url) if any(c.medium == "table" for c in entities) else None


def last_extracted(lake_dir: Path, system: str) -> dict[str, str | None]:
    """Per entity of the system, the signature its latest extraction started from."""
    log = lake.read(lake.audit_table(lake_dir, "extractions"))
    if log is None or "source_signature" not in log.column_names:
        return {}
    rows = sorted((r for r in log.select(["system", "entity", "extracted_at", "source_signature"]).to_pylist()
                   if r["system"] == system), key=lambda r: r["extracted_at"])
    return {r["entity"]: (r["source_signature"] or "").split(STAMP)[0] or None for r in rows}
