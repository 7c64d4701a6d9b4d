"""The landing loop: every export, whatever its medium, goes through the same steps.

Read chunk by chunk; hold back rows whose key occurs more than once in the export (judged
together at the end); enforce the contract; park accepted rows (dropping events already in the
lake); refuse an export that is mostly broken; then write findings, quarantine and, last, the
raw commit that carries the cursor or fingerprint. Master data lands as a snapshot per extraction
(a Delta overwrite: earlier extractions stay queryable by version); event data is appended, its
cursor committed atomically with its rows, so a row is never read twice and never missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from contracts import REJECT_COLUMNS, EntityContract, ExportBreach, enforce
from contracts._base import Enforcement

from .. import lake
from ..faults import checkpoint
from . import audit, watch
from .readers import Reader, Sources, open_reader
from .recovery import discard_crashed_batches, spill_dir

# When more than this share of an export's rows (and at least BROKEN_MIN rows) break the contract,
# the export itself is broken (a shifted column, a wrong file): fail it, load nothing, keep the last
# good data, instead of serving a thread with most of a system missing.
BROKEN_SHARE = 0.5
BROKEN_MIN = 10
# Row groups of clustered readings: small enough that one shard's units span few of them.
CLUSTER_ROW_GROUP = 16_384


@dataclass(frozen=True)
class Guards:
    """What an extraction refuses besides broken rows (from the settings).

    A snapshot with fewer than `shrink_limit` of the rows the last one had is refused (a file cut
    short, a half-rewritten export, an emptied table); an empty snapshot of an entity that had rows
    is refused unless its name (`plm.ecos`) or `*` is in `allow_empty`. Tables holding personal
    data are created owner-only, or for `restricted_group`."""

    shrink_limit: float = 0.5
    allow_empty: frozenset[str] = frozenset()
    restricted_group: str | None = None

    def may_be_empty(self, c: EntityContract) -> bool:
        return "*" in self.allow_empty or c.name in self.allow_empty


@dataclass(kw_only=True)
class ExtractionReport:
    system: str
    entity: str
    batch_id: str
    location: str
    input_rows: int
    accepted_rows: int
    quarantined_rows: int
    warning_rows: int
    already_loaded_rows: int = 0
    changed: bool
    raw_version: int | None
    raw_path: str
    rejected: pd.DataFrame
    warnings: pd.DataFrame

    def metadata(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "source": self.location,
            "input_rows": self.input_rows,
            "accepted_rows": self.accepted_rows,
            "quarantined_rows": self.quarantined_rows,
            "warning_rows": self.warning_rows,
            "already_loaded_rows": self.already_loaded_rows,
            "changed": self.changed,
            "raw_table": self.raw_path,
            "raw_version": self.raw_version if self.raw_version is not None else -1,
        }


class Spill:
    """Accepted rows parked as Parquet until the one Delta commit that lands them: memory stays
    bounded by one chunk while the quarantine is still written before the raw commit."""

    def __init__(self, lake_dir: Path, batch_id: str):
        self.dir = spill_dir(lake_dir) / batch_id.replace("/", "_")
        self.files: list[Path] = []
        self.rows = 0
        self.schema: pa.Schema | None = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0 and self.files:
            return
        # Owner-only: parked rows of a personal-data export are as restricted as its raw table.
        self.dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.parent.chmod(0o700)
        self.dir.mkdir(mode=0o700, exist_ok=True)
        path = self.dir / f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, path)
        self.files.append(path)
        self.rows += table.num_rows
        self.schema = table.schema if self.schema is None else pa.unify_schemas(
            [self.schema, table.schema], promote_options="permissive")

    def reader(self) -> pa.RecordBatchReader:
        dataset = pads.dataset([str(f) for f in self.files], format="parquet", schema=self.schema)
        return pa.RecordBatchReader.from_batches(self.schema, dataset.to_batches(batch_size=200_000))

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def new_batch_id(c: EntityContract, now: datetime, run_id: str | None = None) -> str:
    return f"{c.system}.{c.entity}.{now.strftime('%Y%m%dT%H%M%SZ')}" + (f".{run_id[:8]}" if run_id else "")


def _frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [x for x in parts if len(x)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECT_COLUMNS)


def _to_arrow(frame: pd.DataFrame, c: EntityContract, batch_id: str, now: datetime) -> pa.Table:
    extra = [col for col in frame.columns if col not in c.columns and not str(col).startswith("_")]
    sch = audit.raw_schema(c, extra)
    n = len(frame)
    arrays = []
    for f in sch:
        # Columnar throughout: through Python lists, these four cost 1.7 s of a 4 M-row table's landing.
        if f.name == "_batch_id":
            arrays.append(pa.repeat(pa.scalar(batch_id, f.type), n))
        elif f.name == "_extracted_at":
            arrays.append(pa.repeat(pa.scalar(now, f.type), n))
        elif f.name == "_source":
            arrays.append(pa.Array.from_pandas(frame["_source"], type=f.type) if "_source" in frame
                          else pa.nulls(n, f.type))
        elif f.name == "_source_row":
            arrays.append(pa.Array.from_pandas(frame["_source_row"].astype("int64"), type=f.type))
        elif f.type == pa.date32():
            arrays.append(pa.array(frame[f.name].tolist(), f.type))
        else:
            arrays.append(pa.Array.from_pandas(frame[f.name], type=f.type))
    return pa.Table.from_arrays(arrays, schema=sch)


def _empty_typed(c: EntityContract) -> pd.DataFrame:
    return audit.raw_schema(c).empty_table().to_pandas().drop(columns=["_batch_id", "_extracted_at"])


def _drop_loaded(accepted: pd.DataFrame, c: EntityContract, raw_path: Path) -> tuple[pd.DataFrame, int]:
    """Event rows whose key is already in the raw table (a re-read overlap): dropped, counted."""
    if not len(accepted) or not lake.exists(raw_path):
        return accepted, 0
    keys = list(c.key)
    flt = None
    # Only when the event time is part of the key can the lookup be limited to recent rows: an
    # event id seen before may come again with another time.
    if c.event_time and c.event_time in keys:
        low = accepted[c.event_time].min()
        if pd.notna(low):
            flt = pc.field(c.event_time) >= pa.scalar(low.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    existing = lake.read(raw_path, columns=keys, filter=flt)
    if existing is None or existing.num_rows == 0:
        return accepted, 0
    merged = accepted.merge(existing.to_pandas().drop_duplicates(), on=keys, how="left", indicator=True)
    keep = (merged["_merge"] == "left_only").to_numpy()
    return accepted[keep].reset_index(drop=True), int((~keep).sum())


def _refuse_broken(c: EntityContract, location: str, rejected: pd.DataFrame, total: int) -> None:
    if len(rejected) >= BROKEN_MIN and len(rejected) > BROKEN_SHARE * total:
        first = rejected.iloc[0]
        raise ExportBreach(
            c.system, c.entity, location,
            f"{len(rejected)} of {total} rows break the contract (first, row {first.source_row}: {first.reason}); "
            "the export looks broken, nothing was loaded",
            column=first.get("column") or None,
        )


class _Landing:
    """One extraction of one entity: what has been read, kept, held back and found so far."""

    def __init__(self, c: EntityContract, reader: Reader, lake_dir: Path, batch_id: str, now: datetime,
                 guards: Guards):
        self.c, self.reader, self.lake_dir, self.batch_id, self.now = c, reader, lake.location(lake_dir), batch_id, now
        self.guards = guards
        self.raw = lake.raw_table(lake_dir, c.system, c.entity)
        self.quarantine = lake.quarantine_table(lake_dir, c.system, c.entity)
        self.spill = Spill(lake_dir, batch_id)
        if c.mode == "events":
            reader.known = self.known_keys
        self.rejected: list[pd.DataFrame] = []
        self.warnings: list[pd.DataFrame] = []
        self.held: list[tuple[pd.DataFrame, pd.Series]] = []
        self.input_rows = self.already = 0

    def known_keys(self) -> set[str]:
        """Keys of this event entity the lake holds: landed, or quarantined (never read twice)."""
        known: set[str] = set()
        if len(self.c.key) == 1:
            landed = lake.read(self.raw, columns=list(self.c.key))
            if landed is not None:
                known |= set(landed.column(0).cast("string").to_pylist())
        held = lake.read(self.quarantine, columns=["record_key"])
        if held is not None:
            known |= {k for k in held.column(0).to_pylist() if k}
        return known

    def keep(self, enf: Enforcement, location: str) -> None:
        """Park a checked chunk's accepted rows (minus events already landed), collect its findings."""
        acc, rejected = enf.accepted, enf.rejected
        acc["_source"] = location
        if self.c.mode == "events":
            acc, dup = _drop_loaded(acc, self.c, self.raw)
            rejected, held = self.not_yet_quarantined(rejected)
            self.already += dup + held
        table = _to_arrow(acc, self.c, self.batch_id, self.now)
        if self.clustered:
            table = table.sort_by([(k, "ascending") for k in self.c.key])
        self.spill.add(table)
        self.rejected.append(rejected.assign(source=location))
        self.warnings.append(enf.warnings.assign(source=location))

    def not_yet_quarantined(self, rejected: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """Event rows read again (a rewritten export) that are already in quarantine: not twice."""
        if not len(rejected) or not lake.exists(self.quarantine):
            return rejected, 0
        held = lake.read(self.quarantine, columns=["record"]).column(0).to_pylist()
        again = rejected["record"].isin(set(held)).to_numpy()
        return rejected[~again], int(again.sum())

    def report(self, *, changed: bool, version: int | None, accepted: int | None = None) -> ExtractionReport:
        rejected, warnings = _frames(self.rejected), _frames(self.warnings)
        return ExtractionReport(
            system=self.c.system, entity=self.c.entity, batch_id=self.batch_id, location=self.reader.location,
            input_rows=self.input_rows, accepted_rows=self.spill.rows if accepted is None else accepted,
            quarantined_rows=len(rejected), warning_rows=len(warnings), already_loaded_rows=self.already,
            changed=changed, raw_version=version, raw_path=str(self.raw), rejected=rejected, warnings=warnings)

    @property
    def clustered(self) -> bool:
        """Readings keyed by unit (telemetry) are stored sorted by serial number in small row
        groups: a twin shard's scan reads only its units' row groups, and a new day appends."""
        return self.c.mode == "events" and self.c.key[0] == "serial_number"

    @property
    def restricted(self) -> lake.Restricted | None:
        """Tables with personal data are readable by their owner (or one group) only."""
        return lake.Restricted(self.guards.restricted_group) if self.c.personal_data else None

    def unchanged(self) -> bool:
        return self.c.mode == "snapshot" and self.reader.fingerprint is not None and (
            self.reader.fingerprint == lake.fingerprint(self.raw))

    def run(self) -> ExtractionReport:
        c, reader = self.c, self.reader
        dup_keys = reader.duplicate_keys()
        keys = list(c.key)
        for chunk in reader.chunks():
            self.input_rows += chunk.input_rows
            unreadable = chunk.unreadable
            if c.mode == "events":
                unreadable, held = self.not_yet_quarantined(unreadable)
                self.already += held
            self.rejected.append(unreadable.assign(source=chunk.location))
            if dup_keys is None and self.unchanged():
                # The whole export in one chunk, identical to what is landed: nothing to check.
                return self.report(changed=False, version=lake.table(self.raw).version(), accepted=len(chunk.frame))
            frame, rows = chunk.frame, chunk.rows
            if dup_keys and set(keys) <= set(frame.columns):
                is_dup = frame[keys].astype(str).apply(tuple, axis=1).isin(dup_keys).to_numpy()
                self.held.append((frame[is_dup], rows[is_dup]))
                frame, rows = frame[~is_dup], rows[~is_dup]
            if dup_keys is not None and not len(frame):
                continue
            self.keep(enforce(frame, c, chunk.location, rows, check_keys=dup_keys is None), chunk.location)
        if self.held:
            frame = pd.concat([h[0] for h in self.held], ignore_index=True)
            rows = pd.concat([h[1] for h in self.held], ignore_index=True)
            self.keep(enforce(frame, c, reader.location, rows), reader.location)
        if not self.spill.files:
            self.spill.add(_to_arrow(_empty_typed(c), c, self.batch_id, self.now))
        if self.unchanged():
            return self.report(changed=False, version=lake.table(self.raw).version())
        _refuse_broken(c, reader.location, _frames(self.rejected), self.input_rows)
        if c.mode == "snapshot":
            self.refuse_implausible_shrinkage()
        return self.land()

    def refuse_implausible_shrinkage(self) -> None:
        before, now = lake.row_count(self.raw), self.spill.rows
        if not before or now >= self.guards.shrink_limit * before:
            return
        if now == 0 and self.guards.may_be_empty(self.c):
            return
        c = self.c
        what = ("is empty" if now == 0 else f"holds {now:,} rows") + f" where the last snapshot had {before:,}"
        hint = (f"if it really is empty now, allow it: THREAD_ALLOW_EMPTY_SNAPSHOTS={c.name}" if now == 0 else
                f"a snapshot may not shrink below {self.guards.shrink_limit:.0%} of the last one "
                "(THREAD_SNAPSHOT_SHRINK_LIMIT)")
        raise ExportBreach(c.system, c.entity, self.reader.location,
                           f"{what}: cut short or half written? Nothing was loaded, the last good data stays; {hint}")

    def land(self) -> ExtractionReport:
        """Findings, quarantine, then the raw commit. Quarantine first: if the raw commit then
        fails, the next run re-reads the same rows and nothing was lost; the reverse order could
        advance the cursor past rows never quarantined."""
        c, reader = self.c, self.reader
        rejected, warnings = _frames(self.rejected), _frames(self.warnings)
        # Findings are read by analysts: personal data appears only in the restricted quarantine.
        found = audit.findings(audit.masked(rejected, c), audit.masked(warnings, c), reader.location, c,
                               self.batch_id, self.now)
        if found.num_rows:
            lake.append_to_log(lake.audit_table(self.lake_dir, "contract_findings"), found, batch_id=self.batch_id)
        if len(rejected):
            q = audit.findings(rejected, rejected.iloc[:0], reader.location, c, self.batch_id, self.now)
            q = q.drop_columns(["system", "entity", "mode", "is_rejected"])
            lake.write(self.quarantine, q, "append", batch_id=self.batch_id, restricted=self.restricted)
        if c.mode == "events" and not self.spill.rows and lake.exists(self.raw) and (
                reader.cursor == lake.cursor(self.raw)):
            # Nothing new since the last extraction: no empty commit, nothing downstream to refresh.
            return self.report(changed=False, version=lake.table(self.raw).version())
        checkpoint(f"raw-commit:{c.system}/{c.entity}")
        version = lake.write(self.raw, self.spill.reader(), "overwrite" if c.mode == "snapshot" else "append",
                             batch_id=self.batch_id, cursor=reader.cursor, fingerprint=reader.fingerprint,
                             restricted=self.restricted, row_group_rows=CLUSTER_ROW_GROUP if self.clustered else None)
        return self.report(changed=c.mode == "snapshot" or self.spill.rows > 0, version=version)


def _untouched(c: EntityContract, lake_dir: Path, signature: str | None) -> bool:
    """An export whose signature is the one its last successful extraction started from has not
    been written since: reading it again would land nothing. A file's signature is its size and
    modification time (a folder's: its file names and sizes); an MES table's counts only with its
    SQLite file's stamp (any write changes it): a correction in place can leave every other sign of
    a table as it was, so a table of a database server is always read."""
    if signature is None or (c.medium == "table" and watch.STAMP not in signature) \
            or not lake.exists(lake.raw_table(lake_dir, c.system, c.entity)):
        return False
    last = audit.last_extraction(lake_dir, c)
    return last is not None and last["status"] == "ok" and last["source_signature"] == signature


def extract_entity(c: EntityContract, src: Sources, lake_dir: Path, *, batch_id: str,
                   now: datetime | None = None, guards: Guards = Guards(),
                   source_signature: str | None = None) -> ExtractionReport:
    """Extract one entity; on a whole-export breach record it and re-raise (nothing landed).

    Any failure to read the export (not only a contract breach) is recorded as a failed
    extraction with a message naming system, entity and file, and raised as a breach."""
    now = now or datetime.now(timezone.utc)
    lake_dir = lake.location(lake_dir)
    try:
        discard_crashed_batches(c, lake_dir)
        if _untouched(c, lake_dir, source_signature):
            raw = lake.raw_table(lake_dir, c.system, c.entity)
            report = ExtractionReport(
                system=c.system, entity=c.entity, batch_id=batch_id, location=c.location, input_rows=0,
                accepted_rows=0, quarantined_rows=0, warning_rows=0, changed=False,
                raw_version=lake.table(raw).version(), raw_path=str(raw), rejected=pd.DataFrame(),
                warnings=pd.DataFrame())
            audit.log_extraction(lake_dir, c, batch_id, now, "ok", input_rows=0, accepted_rows=0,
                                 quarantined_rows=0, changed=False, signature=source_signature)
            return report
        cursor = lake.cursor(lake.raw_table(lake_dir, c.system, c.entity)) if c.mode == "events" else None
        landing = _Landing(c, open_reader(c, src, cursor), lake_dir, batch_id, now, guards)
        try:
            report = landing.run()
        except (ExportBreach, OSError):
            raise
        except Exception as e:  # noqa: BLE001 - a reader's surprise must still be recorded as a breach
            raise ExportBreach(c.system, c.entity, landing.reader.location,
                               f"could not be read: {type(e).__name__}: {str(e)[:300]}") from e
        finally:
            landing.spill.close()
    except ExportBreach as breach:
        audit.record_breach(lake_dir, c, breach, batch_id, now)
        audit.log_extraction(lake_dir, c, batch_id, now, "failed", message=str(breach), signature=source_signature)
        raise
    audit.log_extraction(lake_dir, c, batch_id, now, "ok", input_rows=report.input_rows,
                         accepted_rows=report.accepted_rows, quarantined_rows=report.quarantined_rows,
                         changed=report.changed, signature=source_signature)
    return report
