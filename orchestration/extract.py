"""Extraction: read one entity's export, enforce its contract, land it in the raw Delta layer.

Plain Python (no Dagster) so it can be tested and reused directly; the Dagster assets in
`defs/<system>/` are thin wrappers around `extract_entity`.

Master data lands as a snapshot per extraction (a Delta overwrite: earlier extractions stay
queryable by version). Event data is read incrementally with a cursor stored in the same Delta
commit as the rows it produced, so a row is never read twice and never missed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contracts import EntityContract, ExportBreach, enforce
from contracts._base import REJECT_COLUMNS, Enforcement

from . import lake
from .faults import checkpoint

ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
META_FIELDS = [
    pa.field("_batch_id", pa.string()),
    pa.field("_extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("_source", pa.string()),
    pa.field("_source_row", pa.int64()),
]
FINDING_FIELDS = [
    pa.field("batch_id", pa.string()),
    pa.field("extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("system", pa.string()),
    pa.field("entity", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_row", pa.int64()),
    pa.field("record_key", pa.string()),
    pa.field("column", pa.string()),
    pa.field("rule", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("severity", pa.string()),
    pa.field("is_rejected", pa.bool_()),
    pa.field("record", pa.string()),
]
FINDINGS_SCHEMA = pa.schema(FINDING_FIELDS)
EXTRACTION_SCHEMA = pa.schema([
    pa.field("batch_id", pa.string()),
    pa.field("system", pa.string()),
    pa.field("entity", pa.string()),
    pa.field("extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("status", pa.string()),  # ok | failed
    pa.field("input_rows", pa.int64()),
    pa.field("accepted_rows", pa.int64()),
    pa.field("quarantined_rows", pa.int64()),
    pa.field("is_changed", pa.bool_()),
    pa.field("message", pa.string()),
])
# Event sources can deliver late rows with an earlier timestamp; re-read this much below the
# high-water mark and drop what is already loaded by key.
EVENT_OVERLAP = timedelta(days=1)
# When more than this share of an export's rows (and at least BROKEN_MIN rows) break the contract,
# the export itself is broken (a shifted column, a wrong file): fail it, load nothing, keep the last
# good data, instead of serving a thread with most of a system missing.
BROKEN_SHARE = 0.5
BROKEN_MIN = 10
# Tables larger than this are read, checked and landed chunk by chunk (memory stays bounded).
CHUNK_ROWS = 500_000
# JSON Lines exports whose unread part is larger than this are read in chunks of lines.
JSONL_CHUNK_BYTES = 64 * 2**20
JSONL_CHUNK_LINES = 200_000


@dataclass
class Sources:
    root: Path
    mes_url: str

    @staticmethod
    def default_mes_url(root: Path) -> str:
        return f"sqlite:///{Path(root).resolve() / 'mes' / 'mes.sqlite'}"


@dataclass
class Export:
    frame: pd.DataFrame
    rows: pd.Series
    location: str
    fingerprint: str | None = None
    cursor: dict | None = None
    # rows the reader itself had to reject (unparseable lines), already in REJECT_COLUMNS form
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))


@dataclass
class ExtractionReport:
    system: str
    entity: str
    batch_id: str
    location: str
    input_rows: int
    accepted_rows: int
    quarantined_rows: int
    warning_rows: int
    already_loaded_rows: int
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
    """Accepted rows of a big export, parked as Parquet until the one Delta commit that lands them.

    Keeps memory bounded by one chunk (a file of telemetry, a slice of a table) while the
    quarantine is still written before the raw commit.
    """

    def __init__(self, lake_dir: Path, batch_id: str):
        self.dir = Path(lake_dir) / "_spill" / batch_id.replace("/", "_")
        self.files: list[Path] = []
        self.rows = 0
        self.schema: pa.Schema | None = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0 and self.files:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"part-{len(self.files):05d}.parquet"
        pq.write_table(table, path)
        self.files.append(path)
        self.rows += table.num_rows
        self.schema = table.schema if self.schema is None else pa.unify_schemas(
            [self.schema, table.schema], promote_options="permissive")

    def reader(self) -> pa.RecordBatchReader:
        import pyarrow.dataset as pads

        dataset = pads.dataset([str(f) for f in self.files], format="parquet", schema=self.schema)
        return pa.RecordBatchReader.from_batches(self.schema, dataset.to_batches(batch_size=200_000))

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


def paths(lake_dir: Path, c: EntityContract) -> dict[str, Path]:
    return {
        "raw": Path(lake_dir) / "raw" / c.system / c.entity,
        "quarantine": Path(lake_dir) / "quarantine" / c.system / c.entity,
        "findings": Path(lake_dir) / "audit" / "contract_findings",
        "extractions": Path(lake_dir) / "audit" / "extractions",
    }


def log_extraction(lake_dir: Path, c: EntityContract, batch_id: str, now: datetime, status: str,
                   report: "ExtractionReport | None" = None, message: str | None = None) -> None:
    """The extraction log: what `thread status`, freshness and contract_violations read."""
    row = {
        "batch_id": batch_id, "system": c.system, "entity": c.entity, "extracted_at": now,
        "status": status,
        "input_rows": report.input_rows if report else None,
        "accepted_rows": report.accepted_rows if report else None,
        "quarantined_rows": report.quarantined_rows if report else None,
        "is_changed": report.changed if report else False,
        "message": message,
    }
    tbl = pa.table({f.name: pa.array([row[f.name]], f.type) for f in EXTRACTION_SCHEMA}, schema=EXTRACTION_SCHEMA)
    lake.write(paths(lake_dir, c)["extractions"], tbl, "append", batch_id=batch_id)


def arrow_schema(c: EntityContract, extra: list[str] = ()) -> pa.Schema:
    fields = [pa.field(n, ARROW_TYPES[k]) for n, k in c.columns.items()]
    fields += [pa.field(n, pa.string()) for n in extra]
    return pa.schema(fields + META_FIELDS)


# ------------------------------------------------------------------------------------------------
# Readers, one per medium of source-interfaces.md


def _decode_lines(data: bytes):
    """Text lines of an export; bytes that are not UTF-8 are kept (as surrogates) to be reported."""
    text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _bad_utf8(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _shown(value: str) -> str:
    return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _reject(row: int, key: str, rule: str, reason: str, record: str) -> dict:
    return {"source_row": row, "record_key": key, "column": None, "rule": rule, "reason": reason,
            "severity": "error", "record": record}


def confined(c: EntityContract, root: Path, path: Path) -> Path:
    """The export file, resolved; refused when it (or a symlink on the way) leads outside the
    sources root, so a planted link cannot make the lake read files it was never meant to."""
    base = Path(root).resolve()
    real = Path(path).resolve()
    if not real.is_relative_to(base):
        raise ExportBreach(c.system, c.entity, str(Path(path).relative_to(root)) if Path(path).is_relative_to(root)
                           else str(path), "resolves outside the sources root; refused")
    return real


def read_csv(c: EntityContract, root: Path) -> Export:
    path = confined(c, root, Path(root) / c.location)
    location = c.location
    if not path.is_file():
        raise ExportBreach(c.system, c.entity, location, "file missing")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ExportBreach(c.system, c.entity, location, f"file unreadable: {e}") from e
    if not data.strip():
        raise ExportBreach(c.system, c.entity, location, "file is empty: not even a header line")
    reader = csv.reader(io.StringIO(_decode_lines(data), newline=""))
    header = [h.strip() for h in next(reader)]
    records, lines, rejects = [], [], []
    start = reader.line_num + 1
    for values in reader:
        line = start
        start = reader.line_num + 1
        if not values or all(v == "" for v in values):
            continue
        raw = ",".join(_shown(v) for v in values)
        if len(values) != len(header):
            rejects.append(_reject(line, "", "field count",
                                   f"line {line} has {len(values)} fields, the header has {len(header)}"
                                   " (truncated or malformed line)", json.dumps({"line": raw})))
            continue
        bad = [h for h, v in zip(header, values) if _bad_utf8(v)]
        if bad:
            rejects.append(_reject(line, "", "utf-8",
                                   f"line {line}: column {bad[0]} holds bytes that are not UTF-8",
                                   json.dumps({"line": raw})))
            continue
        records.append(values)
        lines.append(line)
    frame = pd.DataFrame(records, columns=header, dtype="str") if records else pd.DataFrame(
        columns=header, dtype="str")
    return Export(frame, pd.Series(lines, dtype="int64"), location, hashlib.sha256(data).hexdigest(),
                  unreadable=pd.DataFrame(rejects, columns=REJECT_COLUMNS))


def _jsonl_start(c: EntityContract, path: Path, cursor: dict | None) -> tuple[int, int]:
    """Where to start reading: after the cursor for a file that only grows, else the beginning."""
    if c.mode == "events" and cursor and path.stat().st_size >= cursor.get("offset", 0):
        return cursor.get("offset", 0), cursor.get("line", 0) + 1
    return 0, 1


def iter_jsonl(c: EntityContract, root: Path, cursor: dict | None, chunk_lines: int | None = None):
    """The export as Exports of at most `chunk_lines` lines (one Export when None); the last one
    carries the new cursor (events) or the fingerprint (snapshots)."""
    path = confined(c, root, Path(root) / c.location)
    location = c.location
    if not path.is_file():
        raise ExportBreach(c.system, c.entity, location, "file missing")
    offset, first_line = _jsonl_start(c, path, cursor)
    digest = hashlib.sha256()
    consumed, n = 0, first_line - 1
    records, lines, rejects = [], [], []
    with path.open("rb") as f:
        f.seek(offset)
        for raw in f:
            if c.mode == "events" and not raw.endswith(b"\n"):
                break  # a line still being written is left for the next extraction
            consumed += len(raw)
            digest.update(raw)
            n += 1
            line = _decode_lines(raw).rstrip("\r\n")
            if not line.strip():
                continue
            shown = _shown(line)
            if _bad_utf8(line):
                rejects.append(_reject(n, "", "utf-8", f"line {n} holds bytes that are not UTF-8",
                                       json.dumps({"line": shown})))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                rejects.append(_reject(n, "", "valid json", f"line {n} is not valid JSON ({e.msg})",
                                       json.dumps({"line": shown})))
                continue
            if not isinstance(obj, dict):
                rejects.append(_reject(n, "", "json object", f"line {n} is not a JSON object",
                                       json.dumps({"line": shown})))
                continue
            records.append({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in obj.items()})
            lines.append(n)
            if chunk_lines and len(records) >= chunk_lines:
                yield _jsonl_export(c, records, lines, rejects, location)
                records, lines, rejects = [], [], []
    final = _jsonl_export(c, records, lines, rejects, location)
    final.fingerprint = digest.hexdigest() if c.mode == "snapshot" else None
    final.cursor = {"offset": offset + consumed, "line": n} if c.mode == "events" else None
    yield final


def _jsonl_export(c: EntityContract, records, lines, rejects, location) -> Export:
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for col in c.columns:
        # JSON writers omit null fields: an absent optional field is null. An absent required
        # field (in every record) stays absent and is reported as a missing column by enforce.
        if col not in frame.columns and (not records or c.nullable(col)):
            frame[col] = pd.Series([None] * len(frame), dtype="object")
    return Export(frame, pd.Series(lines, dtype="int64"), location,
                  unreadable=pd.DataFrame(rejects, columns=REJECT_COLUMNS))


def read_jsonl(c: EntityContract, root: Path, cursor: dict | None) -> Export:
    return next(iter_jsonl(c, root, cursor))


def _unread_bytes(c: EntityContract, root: Path, cursor: dict | None) -> int:
    path = Path(root) / c.location
    if not path.is_file():
        return 0
    return path.stat().st_size - _jsonl_start(c, path, cursor)[0]


def jsonl_duplicate_keys(c: EntityContract, root: Path) -> set[tuple]:
    """Keys that appear more than once anywhere in the file, found by DuckDB without Python rows."""
    import duckdb

    path = str(confined(c, root, Path(root) / c.location)).replace("'", "''")
    cols = ", ".join(f"'{k}': 'VARCHAR'" for k in c.key)
    keys = ", ".join(f'"{k}"' for k in c.key)
    con = duckdb.connect()
    try:
        rows = con.execute(f"SELECT {keys} FROM read_ndjson('{path}', columns = {{{cols}}}, ignore_errors = true) "
                           f"GROUP BY ALL HAVING count(*) > 1").fetchall()
    finally:
        con.close()
    return {tuple(str(v) for v in r) for r in rows}


def parquet_files(c: EntityContract, root: Path) -> list[Path]:
    files = sorted(Path(root).glob(c.location))
    for f in files:
        confined(c, root, f)
    return files


def read_parquet_files(c: EntityContract, root: Path, cursor: dict | None):
    """New files since the cursor, one Export per file (files can be large; stream them)."""
    seen = set((cursor or {}).get("files", []))
    folder = Path(root) / Path(c.location).parent
    if not folder.is_dir():
        raise ExportBreach(c.system, c.entity, str(Path(c.location).parent), "folder missing")
    new = [p for p in parquet_files(c, root) if p.name not in seen]
    return new, sorted(seen)


def read_parquet_file(c: EntityContract, root: Path, path: Path) -> Export:
    location = str(path.relative_to(root))
    try:
        tbl = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - any reader failure means the file is unreadable
        raise ExportBreach(c.system, c.entity, location, f"file unreadable as Parquet: {e}") from e
    for name, kind in c.columns.items():
        if name in tbl.column_names:
            t = tbl.schema.field(name).type
            ok = {
                "str": pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t),
                "float": pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t),
                "int": pa.types.is_integer(t),
                "timestamp": pa.types.is_timestamp(t),
                "date": pa.types.is_date(t),
            }[kind]
            if not ok:
                raise ExportBreach(c.system, c.entity, location,
                                   f"column has the wrong type: {t}, the contract says {kind}", column=name)
    frame = tbl.to_pandas()
    rows = pd.Series(range(1, len(frame) + 1), dtype="int64")
    return Export(frame, rows, location)


def _engine(url: str):
    """An engine for the MES URL. Any failure to even build one (bad URL, missing driver) is
    reported as a SQLAlchemy error whose text names the URL with its password hidden."""
    import sqlalchemy as sa

    try:
        return sa.create_engine(url)
    except Exception as e:  # noqa: BLE001
        raise sa.exc.ArgumentError(f"cannot use {_redact(url)}: {scrub(f'{type(e).__name__}: {e}', url)}") from None


def scrub(text: str, url: str) -> str:
    """`text` without the URL's password, however a driver chose to quote the URL."""
    try:
        import sqlalchemy as sa

        password = sa.engine.make_url(url).password
    except Exception:  # noqa: BLE001
        return text.replace(url, "<MES database URL>")
    return text.replace(url, _redact(url)).replace(password, "***") if password else text


def read_table(c: EntityContract, src: Sources, cursor: dict | None, known_keys=None) -> Export:
    import sqlalchemy as sa

    location = f"{_redact(src.mes_url)} table {c.location}"
    engine = None
    try:
        engine = _engine(src.mes_url)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(c.location):
                raise ExportBreach(c.system, c.entity, location, "table missing")
            quoted = engine.dialect.identifier_preparer.quote(c.location)
            query, params = f"SELECT * FROM {quoted}", {}
            if c.mode == "events" and cursor and cursor.get("hwm"):
                since = (pd.Timestamp(cursor["hwm"]) - EVENT_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
                col = engine.dialect.identifier_preparer.quote(c.event_time)
                query += f" WHERE {col} >= :since"
                params["since"] = since
            frame = pd.read_sql_query(sa.text(query), conn, params=params, dtype_backend="numpy_nullable")
    except ExportBreach:
        raise
    except sa.exc.SQLAlchemyError as e:
        # `from None`: the driver's own exception may quote the URL, password included.
        detail = scrub(f"{e.__class__.__name__}: {e.orig if getattr(e, 'orig', None) else e}", src.mes_url)
        raise ExportBreach(c.system, c.entity, location, f"database unreachable or unreadable: {detail}") from None
    finally:
        if engine is not None:
            engine.dispose()
    frame = frame.astype({col: "object" for col in frame.columns if str(frame[col].dtype) in ("string", "str")})
    fingerprint = None
    if c.mode == "snapshot":
        fingerprint = str(int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum()) & (2**63 - 1)) + f"-{len(frame)}"
    rows = pd.Series(range(1, len(frame) + 1), dtype="int64")
    new_cursor = None
    if c.mode == "events":
        ts = pd.to_datetime(frame[c.event_time].astype("object") if c.event_time in frame else pd.Series([], dtype="object"),
                            utc=True, errors="coerce", format="ISO8601") if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
        hwm = ts.max() if len(ts) and ts.notna().any() else None
        old = pd.Timestamp(cursor["hwm"]) if cursor and cursor.get("hwm") else None
        best = max([t for t in (hwm, old) if t is not None], default=None)
        new_cursor = {"hwm": best.strftime("%Y-%m-%dT%H:%M:%SZ") if best is not None else None}
    return Export(frame, rows, location, fingerprint, new_cursor)


def table_rows(c: EntityContract, src: Sources) -> int | None:
    import sqlalchemy as sa

    try:
        engine = _engine(src.mes_url)
    except sa.exc.SQLAlchemyError:
        return None
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(c.location):
                return None
            quoted = engine.dialect.identifier_preparer.quote(c.location)
            return conn.execute(sa.text(f"SELECT count(*) FROM {quoted}")).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _extract_table_chunked(c: EntityContract, src: Sources, p, batch_id: str, now: datetime) -> "ExtractionReport":
    """A big MES table in chunks. Duplicate keys are found by the database itself (GROUP BY), their
    rows held back and judged together at the end; everything else is checked chunk by chunk."""
    import sqlalchemy as sa

    location = f"{_redact(src.mes_url)} table {c.location}"
    engine = _engine(src.mes_url)
    q = engine.dialect.identifier_preparer.quote
    keys = list(c.key)
    accepted = Spill(Path(p["raw"]).parents[2], batch_id)
    rejected, warnings, held = [], [], []
    digest = hashlib.sha256()
    row_offset = 0
    try:
        with engine.connect() as conn:
            columns = {col["name"] for col in sa.inspect(conn).get_columns(c.location)}
            missing = [k for k in c.columns if k not in columns]
            if missing:
                raise ExportBreach(c.system, c.entity, location, f"required column{'s' if len(missing) > 1 else ''} "
                                   f"{', '.join(repr(m) for m in missing)} missing", column=missing[0])
            key_sql = ", ".join(q(k) for k in keys)
            dup = pd.read_sql_query(sa.text(f"SELECT {key_sql} FROM {q(c.location)} GROUP BY {key_sql} "
                                            "HAVING count(*) > 1"), conn)
            dup_keys = set(map(tuple, dup[keys].astype(str).itertuples(index=False))) if len(dup) else set()
            for chunk in pd.read_sql_query(sa.text(f"SELECT * FROM {q(c.location)}"), conn, chunksize=CHUNK_ROWS):
                rows = pd.Series(range(row_offset + 1, row_offset + len(chunk) + 1), dtype="int64")
                row_offset += len(chunk)
                digest.update(pd.util.hash_pandas_object(chunk.astype(str), index=False).values.tobytes())
                if dup_keys:
                    is_dup = chunk[keys].astype(str).apply(tuple, axis=1).isin(dup_keys).to_numpy()
                    held.append((chunk[is_dup], rows[is_dup]))
                    chunk, rows = chunk[~is_dup], rows[~is_dup]
                enf = enforce(chunk, c, location, rows, check_keys=False)
                enf.accepted["_source"] = c.location
                accepted.add(_to_arrow(enf.accepted, c, batch_id, now))
                rejected.append(enf.rejected)
                warnings.append(enf.warnings)
            if held:
                frame = pd.concat([h[0] for h in held], ignore_index=True)
                rows = pd.concat([h[1] for h in held], ignore_index=True)
                enf = enforce(frame, c, location, rows)
                enf.accepted["_source"] = c.location
                accepted.add(_to_arrow(enf.accepted, c, batch_id, now))
                rejected.append(enf.rejected)
                warnings.append(enf.warnings)
    except sa.exc.SQLAlchemyError as e:
        accepted.close()
        detail = scrub(f"{e.__class__.__name__}: {e.orig if getattr(e, 'orig', None) else e}", src.mes_url)
        raise ExportBreach(c.system, c.entity, location, f"database unreachable or unreadable: {detail}") from None
    except BaseException:
        accepted.close()
        raise
    finally:
        engine.dispose()
    fingerprint = digest.hexdigest() + f"-{row_offset}"
    rejected_df = pd.concat([r for r in rejected if len(r)], ignore_index=True) if any(len(r) for r in rejected) \
        else pd.DataFrame(columns=REJECT_COLUMNS)
    warnings_df = pd.concat([w for w in warnings if len(w)], ignore_index=True) if any(len(w) for w in warnings) \
        else pd.DataFrame(columns=REJECT_COLUMNS)
    try:
        if fingerprint == lake.fingerprint(p["raw"]):
            return ExtractionReport(c.system, c.entity, batch_id, location, row_offset, accepted.rows,
                                    len(rejected_df), len(warnings_df), 0, False, lake.table(p["raw"]).version(),
                                    str(p["raw"]), rejected_df, warnings_df)
        _refuse_broken(c, location, len(rejected_df), row_offset, rejected_df)
        return _land(c, p, location, None, rejected_df, warnings_df, 0, None, fingerprint, batch_id, now,
                     table=accepted.reader(), n_accepted=accepted.rows)
    finally:
        accepted.close()


def _extract_jsonl_chunked(c: EntityContract, src: Sources, p, cur, batch_id: str, now: datetime) -> "ExtractionReport":
    """A big JSON Lines export, in chunks (the service history of a large fleet is gigabytes)."""
    keys = list(c.key)
    dup_keys = jsonl_duplicate_keys(c, src.root)
    spill = Spill(Path(p["raw"]).parents[2], batch_id)
    rejected, warnings, held = [], [], []
    already, total = 0, 0
    export = None

    def keep(enf: Enforcement) -> int:
        """Spill a checked chunk's accepted rows, collect its findings; rows already in the lake."""
        enf.accepted["_source"] = c.location
        acc, dup = _drop_loaded(enf.accepted, c, p["raw"]) if c.mode == "events" else (enf.accepted, 0)
        spill.add(_to_arrow(acc, c, batch_id, now))
        rejected.append(enf.rejected)
        warnings.append(enf.warnings)
        return dup

    try:
        for export in iter_jsonl(c, src.root, cur, chunk_lines=JSONL_CHUNK_LINES):
            frame, rows = export.frame, export.rows
            total += len(frame) + len(export.unreadable)
            if len(export.unreadable):
                rejected.append(export.unreadable)
            if not len(frame):
                continue
            if dup_keys and set(keys) <= set(frame.columns):
                is_dup = frame[keys].astype(str).apply(tuple, axis=1).isin(dup_keys).to_numpy()
                held.append((frame[is_dup], rows[is_dup]))
                frame, rows = frame[~is_dup], rows[~is_dup]
            already += keep(enforce(frame, c, export.location, rows, check_keys=False))
        if held:
            frame = pd.concat([h[0] for h in held], ignore_index=True)
            rows = pd.concat([h[1] for h in held], ignore_index=True)
            already += keep(enforce(frame, c, c.location, rows))
        if not spill.files:
            spill.add(_to_arrow(_empty_typed(c), c, batch_id, now))
        rejected_df = _frames(rejected)
        warnings_df = _frames(warnings)
        if c.mode == "snapshot" and export.fingerprint == lake.fingerprint(p["raw"]):
            return ExtractionReport(c.system, c.entity, batch_id, c.location, total, spill.rows, len(rejected_df),
                                    len(warnings_df), 0, False, lake.table(p["raw"]).version(), str(p["raw"]),
                                    rejected_df, warnings_df)
        _refuse_broken(c, c.location, len(rejected_df), total, rejected_df)
        return _land(c, p, c.location, None, rejected_df, warnings_df, already, export.cursor, export.fingerprint,
                     batch_id, now, table=spill.reader(), n_accepted=spill.rows)
    finally:
        spill.close()


def _frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [x for x in parts if len(x)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECT_COLUMNS)


def _redact(url: str) -> str:
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "MES database"


# ------------------------------------------------------------------------------------------------
# Extraction


def new_batch_id(c: EntityContract, now: datetime, run_id: str | None = None) -> str:
    return f"{c.system}.{c.entity}.{now.strftime('%Y%m%dT%H%M%SZ')}" + (f".{run_id[:8]}" if run_id else "")


def _to_arrow(frame: pd.DataFrame, c: EntityContract, batch_id: str, now: datetime) -> pa.Table:
    extra = [col for col in frame.columns if col not in c.columns and not str(col).startswith("_")]
    sch = arrow_schema(c, extra)
    df = frame.drop(columns=[x for x in ("_source_row",) if x in frame.columns])
    arrays = []
    for f in sch:
        if f.name == "_batch_id":
            arrays.append(pa.array([batch_id] * len(frame), f.type))
        elif f.name == "_extracted_at":
            arrays.append(pa.array([now] * len(frame), f.type))
        elif f.name == "_source":
            arrays.append(pa.array(frame["_source"].tolist() if "_source" in frame else [None] * len(frame), f.type))
        elif f.name == "_source_row":
            arrays.append(pa.array(frame["_source_row"].astype("int64").tolist(), f.type))
        else:
            col = df[f.name]
            if f.type == pa.date32():
                arrays.append(pa.array(col.tolist(), f.type))
            else:
                arrays.append(pa.Array.from_pandas(col, type=f.type))
    return pa.Table.from_arrays(arrays, schema=sch)


def _findings(rejected: pd.DataFrame, warnings: pd.DataFrame, sources: list[str], c: EntityContract,
              batch_id: str, now: datetime) -> pa.Table:
    parts = []
    for df, rejected_flag in ((rejected, True), (warnings, False)):
        if len(df):
            d = df.copy()
            d["is_rejected"] = rejected_flag
            parts.append(d)
    if not parts:
        return FINDINGS_SCHEMA.empty_table()
    d = pd.concat(parts, ignore_index=True)
    d = d.astype(object).where(d.notna(), None)  # concat turns missing text into NaN floats
    if "source" not in d:
        d["source"] = sources[0] if sources else None
    n = len(d)
    data = {
        "batch_id": [batch_id] * n, "extracted_at": [now] * n, "system": [c.system] * n,
        "entity": [c.entity] * n, "mode": [c.mode] * n,
        "source": d["source"].tolist(), "source_row": [int(x) if pd.notna(x) else None for x in d["source_row"]],
        "record_key": d["record_key"].tolist(), "column": d["column"].tolist(), "rule": d["rule"].tolist(),
        "reason": d["reason"].tolist(), "severity": d["severity"].tolist(),
        "is_rejected": d["is_rejected"].tolist(), "record": d["record"].tolist(),
    }
    return pa.table({f.name: pa.array(data[f.name], f.type) for f in FINDINGS_SCHEMA}, schema=FINDINGS_SCHEMA)


def record_breach(lake_dir: Path, c: EntityContract, breach: ExportBreach, batch_id: str, now: datetime) -> None:
    """A failed export is itself a finding: it shows in thread.contract_violations."""
    df = pd.DataFrame([{
        "source_row": None, "record_key": None, "column": breach.column, "rule": "export readable",
        "reason": str(breach), "severity": "error", "record": None, "source": breach.location}])
    tbl = _findings(df, pd.DataFrame(), [breach.location], c, batch_id, now)
    tbl = tbl.set_column(tbl.schema.get_field_index("is_rejected"), "is_rejected", pa.array([False], pa.bool_()))
    lake.write(paths(lake_dir, c)["findings"], tbl, "append", batch_id=batch_id)


def extract_entity(c: EntityContract, src: Sources, lake_dir: Path, *, batch_id: str,
                   now: datetime | None = None) -> ExtractionReport:
    """Extract one entity; on a whole-export breach record it and re-raise (nothing written)."""
    now = now or datetime.now(timezone.utc)
    try:
        report = _extract(c, src, Path(lake_dir), batch_id, now)
    except ExportBreach as breach:
        record_breach(Path(lake_dir), c, breach, batch_id, now)
        log_extraction(Path(lake_dir), c, batch_id, now, "failed", message=str(breach))
        raise
    log_extraction(Path(lake_dir), c, batch_id, now, "ok", report)
    return report


def discard_crashed_batches(c: EntityContract, lake_dir: Path) -> list[str]:
    """Drop findings, quarantine and spill files of this entity's batches that never finished.

    An extraction writes findings and quarantine, then the raw commit, then its log entry. A batch
    killed before its raw commit is read again by the next run, so what it quarantined would be
    quarantined twice; a batch that committed raw data but died before logging keeps everything.
    """
    p = paths(lake_dir, c)
    prefix = f"{c.system}.{c.entity}."
    spill = Path(lake_dir) / "_spill"
    if spill.is_dir():
        for d in spill.glob(prefix + "*"):
            shutil.rmtree(d, ignore_errors=True)
    mine = (pc.field("system") == c.system) & (pc.field("entity") == c.entity)
    seen: dict[str, set[str]] = {}
    for name, flt in (("findings", mine), ("quarantine", None)):
        t = lake.read(p[name], columns=["batch_id"], filter=flt)
        seen[name] = set(t.column("batch_id").to_pylist()) if t is not None else set()
    found = {b for ids in seen.values() for b in ids if b and b.startswith(prefix)}
    if not found:
        return []
    log = lake.read(p["extractions"], columns=["batch_id"], filter=mine)
    finished = set(log.column("batch_id").to_pylist()) if log is not None else set()
    finished |= lake.recent_batches(p["raw"])
    crashed = sorted(found - finished)
    if crashed:
        listed = ", ".join("'" + b.replace("'", "''") + "'" for b in crashed)
        for name in ("findings", "quarantine"):
            if seen[name] & set(crashed):
                lake.delete(p[name], f"batch_id IN ({listed})")
    return crashed


def _extract(c: EntityContract, src: Sources, lake_dir: Path, batch_id: str, now: datetime) -> ExtractionReport:
    p = paths(lake_dir, c)
    discard_crashed_batches(c, lake_dir)
    cur = lake.cursor(p["raw"]) if c.mode == "events" else None
    if c.medium == "parquet":
        return _extract_parquet(c, src, p, cur, batch_id, now)
    if c.medium == "table" and c.mode == "snapshot" and (table_rows(c, src) or 0) > CHUNK_ROWS:
        return _extract_table_chunked(c, src, p, batch_id, now)
    if c.medium == "jsonl" and _unread_bytes(c, src.root, cur) > JSONL_CHUNK_BYTES:
        return _extract_jsonl_chunked(c, src, p, cur, batch_id, now)
    if c.medium == "csv":
        export = read_csv(c, src.root)
    elif c.medium == "jsonl":
        export = read_jsonl(c, src.root, cur)
    else:
        export = read_table(c, src, cur)
    if c.mode == "snapshot" and export.fingerprint and export.fingerprint == lake.fingerprint(p["raw"]):
        n = len(export.frame) + len(export.unreadable)
        return ExtractionReport(c.system, c.entity, batch_id, export.location, n, len(export.frame),
                                len(export.unreadable), 0, 0, False, lake.table(p["raw"]).version(),
                                str(p["raw"]), export.unreadable, pd.DataFrame(columns=REJECT_COLUMNS))
    enf = enforce(export.frame, c, export.location, export.rows)
    enf.accepted["_source"] = export.location
    rejected = pd.concat([x for x in (export.unreadable, enf.rejected) if len(x)], ignore_index=True) if (
        len(export.unreadable) or len(enf.rejected)) else pd.DataFrame(columns=REJECT_COLUMNS)
    _refuse_broken(c, export.location, len(rejected), len(rejected) + len(enf.accepted), rejected)
    accepted, already = enf.accepted, 0
    if c.mode == "events":
        accepted, already = _drop_loaded(accepted, c, p["raw"])
    return _land(c, p, export.location, accepted, rejected, enf.warnings, already, export.cursor,
                 export.fingerprint, batch_id, now)


def _refuse_broken(c: EntityContract, location: str, rejected: int, total: int, examples: pd.DataFrame) -> None:
    if rejected >= BROKEN_MIN and rejected > BROKEN_SHARE * total:
        first = examples.iloc[0]
        raise ExportBreach(
            c.system, c.entity, location,
            f"{rejected} of {total} rows break the contract (first, row {first.source_row}: {first.reason}); "
            "the export looks broken, nothing was loaded",
            column=first.get("column") or None,
        )


def _drop_loaded(accepted: pd.DataFrame, c: EntityContract, raw_path: Path) -> tuple[pd.DataFrame, int]:
    if not len(accepted) or not lake.exists(raw_path):
        return accepted, 0
    keys = list(c.key)
    flt = None
    if c.event_time:
        low = accepted[c.event_time].min()
        if pd.notna(low):
            flt = pc.field(c.event_time) >= pa.scalar(low.to_pydatetime(), pa.timestamp("us", tz="UTC"))
    existing = lake.read(raw_path, columns=keys, filter=flt)
    if existing is None or existing.num_rows == 0:
        return accepted, 0
    ex = existing.to_pandas()
    merged = accepted.merge(ex.drop_duplicates(), on=keys, how="left", indicator=True)
    keep = (merged["_merge"] == "left_only").to_numpy()
    return accepted[keep].reset_index(drop=True), int((~keep).sum())


def _land(c, p, location, accepted, rejected, warnings, already, cursor, fingerprint, batch_id, now,
          extra_input: int = 0, table=None, n_accepted: int | None = None) -> ExtractionReport:
    """Write findings, quarantine, then the raw commit. `table` may be an Arrow table or a
    RecordBatchReader (big exports), in which case `n_accepted` says how many rows it holds."""
    # Quarantine first: if the raw commit then fails, the next run re-reads the same rows and
    # nothing was lost; the reverse order could advance the cursor past rows never quarantined.
    findings = _findings(rejected, warnings, [location], c, batch_id, now)
    if findings.num_rows:
        lake.write(p["findings"], findings, "append", batch_id=batch_id)
    if len(rejected):
        q = findings.filter(pc.field("is_rejected")).drop_columns(["system", "entity", "mode", "is_rejected"])
        lake.write(p["quarantine"], q, "append", batch_id=batch_id)
    if n_accepted is None:
        n_accepted = table.num_rows if table is not None else len(accepted)
    total = n_accepted + len(rejected) + already + extra_input
    if c.mode == "events" and not n_accepted and lake.exists(p["raw"]) and cursor == lake.cursor(p["raw"]):
        # Nothing new since the last extraction: no empty commit, nothing downstream to refresh.
        return ExtractionReport(c.system, c.entity, batch_id, location, total, 0, len(rejected), len(warnings),
                                already, False, lake.table(p["raw"]).version(), str(p["raw"]), rejected, warnings)
    if table is None:
        table = _to_arrow(accepted, c, batch_id, now)
    mode = "overwrite" if c.mode == "snapshot" else "append"
    checkpoint(f"raw-commit:{c.system}/{c.entity}")
    version = lake.write(p["raw"], table, mode, batch_id=batch_id, cursor=cursor, fingerprint=fingerprint)
    return ExtractionReport(c.system, c.entity, batch_id, location, total, n_accepted, len(rejected),
                            len(warnings), already, c.mode == "snapshot" or n_accepted > 0, version,
                            str(p["raw"]), rejected, warnings)


def _extract_parquet(c, src, p, cur, batch_id, now) -> ExtractionReport:
    new, seen = read_parquet_files(c, src.root, cur)
    spill = Spill(Path(p["raw"]).parents[2], batch_id)
    rejected_parts, warning_parts = [], []
    already = 0
    try:
        for path in new:
            export = read_parquet_file(c, src.root, path)
            enf: Enforcement = enforce(export.frame, c, export.location, export.rows)
            acc = enf.accepted
            acc["_source"] = export.location
            acc, dup = _drop_loaded(acc, c, p["raw"])
            already += dup
            spill.add(_to_arrow(acc, c, batch_id, now))
            for df, bucket in ((enf.rejected, rejected_parts), (enf.warnings, warning_parts)):
                if len(df):
                    bucket.append(df.assign(source=export.location))
        n_rejected = sum(len(x) for x in rejected_parts)
        if n_rejected:
            _refuse_broken(c, c.location, n_rejected, n_rejected + spill.rows, pd.concat(rejected_parts))
        if not spill.files:
            spill.add(_to_arrow(_empty_typed(c), c, batch_id, now))
        cursor = {"files": sorted(set(seen) | {x.name for x in new})}
        rejected = pd.concat(rejected_parts, ignore_index=True) if rejected_parts else pd.DataFrame(columns=REJECT_COLUMNS)
        warnings = pd.concat(warning_parts, ignore_index=True) if warning_parts else pd.DataFrame(columns=REJECT_COLUMNS)
        location = f"{c.location} ({len(new)} new file{'s' if len(new) != 1 else ''})"
        return _land(c, p, location, None, rejected, warnings, already, cursor, None, batch_id, now,
                     table=spill.reader(), n_accepted=spill.rows)
    finally:
        spill.close()


def _empty_typed(c: EntityContract) -> pd.DataFrame:
    empty = arrow_schema(c).empty_table().to_pandas()
    return empty.drop(columns=["_batch_id", "_extracted_at"])
