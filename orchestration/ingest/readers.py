"""Readers: one per medium of the source interfaces (CSV, JSON Lines, Parquet files, SQL table),
all behind one interface so that a single landing loop handles every export.

A reader yields the export as chunks of rows (the whole export in one chunk when it is small),
and says afterwards what it read: the snapshot's fingerprint, the events' new cursor. A reader
that splits an export into several chunks also names the keys that occur more than once anywhere
in it, so that those rows can be held back and judged together.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from contracts import KINDS, REJECT_COLUMNS, EntityContract, ExportBreach

from .. import lake

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
class Chunk:
    """Rows of an export as read (text or typed), where each sits in its source, and the rows
    the reader itself could not parse (already in REJECT_COLUMNS form)."""

    frame: pd.DataFrame
    rows: pd.Series
    location: str
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))

    @property
    def input_rows(self) -> int:
        return len(self.frame) + len(self.unreadable)


class Reader:
    """One entity's export. `chunks()` reads it; `fingerprint` (snapshots) and `cursor` (events)
    are known once the chunks are read; `location` is what messages name."""

    location: str
    fingerprint: str | None = None
    cursor: dict | None = None
    # Event readers that can ask: the keys (as text) the lake already holds, landed or quarantined.
    known: Callable[[], set[str]] | None = None
    # True when an event export was rewritten since the cursor and is read again from the start.
    rewritten: bool = False

    def __init__(self, c: EntityContract, src: Sources):
        self.c, self.src = c, src
        self.location = c.location

    def duplicate_keys(self) -> set[tuple] | None:
        """Keys repeated anywhere in the export, or None when each chunk is judged on its own
        (the whole export in one chunk, or files that are each a batch of their own)."""
        return None

    def chunks(self) -> Iterator[Chunk]:
        raise NotImplementedError


def confined(c: EntityContract, root: Path, path: Path) -> Path:
    """The export file, resolved; refused when it (or a symlink on the way) leads outside the
    sources root, so a planted link cannot make the lake read files it was never meant to."""
    base = Path(root).resolve()
    real = Path(path).resolve()
    if not real.is_relative_to(base):
        raise ExportBreach(c.system, c.entity, str(Path(path).relative_to(root)) if Path(path).is_relative_to(root)
                           else str(path), "resolves outside the sources root; refused")
    return real


def _export_file(c: EntityContract, root: Path) -> Path:
    path = confined(c, root, Path(root) / c.location)
    if not path.is_file():
        raise ExportBreach(c.system, c.entity, c.location, "file missing")
    return path


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


# A snapshot file modified less than this long ago may still be being written: wait until it has
# been quiet this long (at most WRITE_WAIT_S) before reading it.
QUIET_S = 1.0
WRITE_WAIT_S = 30.0


def quiet(c: EntityContract, location: str, path: Path) -> tuple[int, int, int]:
    """Wait until nobody has written the file for QUIET_S; its signature then. A writer that is
    still at it after WRITE_WAIT_S makes the export a breach for now (read again next time)."""
    import time

    deadline = time.monotonic() + WRITE_WAIT_S
    while True:
        sig = _signature(path)
        idle = time.time() - sig[2] / 1e9
        if idle >= QUIET_S:
            return sig
        if time.monotonic() > deadline:
            raise ExportBreach(c.system, c.entity, location, f"is still being written ({WRITE_WAIT_S:.0f} s without "
                               f"a pause of {QUIET_S:g} s); nothing was loaded, the next extraction reads it again")
        time.sleep(min(QUIET_S - idle, 0.5) + 0.01)


def unchanged_while_read(c: EntityContract, location: str, path: Path, before: tuple[int, int, int]) -> None:
    """A snapshot rewritten while it was read would be published as a part of itself: refuse it
    (nothing is loaded; the next extraction, which the change itself triggers, reads it again)."""
    after = _signature(path)
    if after != before:
        raise ExportBreach(c.system, c.entity, location, f"the file changed while it was being read ({before[1]:,} "
                           f"bytes, then {after[1]:,}); nothing was loaded, the next extraction reads it again")


# -- text lines ----------------------------------------------------------------------------------

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _decode(data: bytes) -> str:
    """Text of an export; bytes that are not UTF-8 are kept (as surrogates) to be reported."""
    text = data.decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _decode_file(c: EntityContract, data: bytes) -> str:
    """A whole text export: UTF-8 (a BOM allowed), or UTF-16 when its byte-order mark declares it;
    anything else with NUL bytes is not text this interface can carry."""
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise ExportBreach(c.system, c.entity, c.location, f"declares UTF-16 (byte-order mark) but is not "
                               f"valid UTF-16 at byte {e.start}") from None
    if data.count(b"\x00") > len(data) // 10:
        # A stray NUL is one broken line (quarantined by the reader); this many is another encoding.
        raise ExportBreach(c.system, c.entity, c.location, "is mostly NUL bytes: not UTF-8 text (UTF-16 without a "
                           "byte-order mark?); export it as UTF-8")
    return _decode(data)


# What `_decode` makes of bytes that are not UTF-8 (searched in C: a loop over the characters in
# Python was two fifths of a JSON Lines extraction).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _bad_utf8(value: str) -> bool:
    return not value.isascii() and _ESCAPED_BYTE.search(value) is not None


def _shown(value: str) -> str:
    return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _reject(row: int, rule: str, reason: str, line: str) -> dict:
    return {"source_row": row, "record_key": "", "column": None, "rule": rule, "reason": reason,
            "severity": "error", "record": json.dumps({"line": line})}


# -- CSV -----------------------------------------------------------------------------------------

class CsvReader(Reader):
    """A CSV snapshot, read whole; its fingerprint is the hash of the file's bytes."""

    def chunks(self) -> Iterator[Chunk]:
        c = self.c
        path = _export_file(c, self.src.root)
        before = quiet(c, c.location, path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ExportBreach(c.system, c.entity, c.location, f"file unreadable: {e}") from e
        unchanged_while_read(c, c.location, path, before)
        if not data.strip():
            raise ExportBreach(c.system, c.entity, c.location, "file is empty: not even a header line")
        reader = csv.reader(io.StringIO(_decode_file(c, data), newline=""))
        header = [h.strip() for h in next(reader)]
        records, lines, rejects = [], [], []
        start = reader.line_num + 1
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                # The csv module recovers at the next line: this one is quarantined, not the file.
                rejects.append(_reject(start, "csv syntax", f"line {start} is not valid CSV ({e})", ""))
                start = reader.line_num + 1
                continue
            line = start
            start = reader.line_num + 1
            if not values or all(v == "" for v in values):
                continue
            raw = ",".join(_shown(v) for v in values)
            if len(values) != len(header):
                rejects.append(_reject(line, "field count", f"line {line} has {len(values)} fields, the header has "
                                       f"{len(header)} (truncated or malformed line)", raw))
                continue
            bad = [h for h, v in zip(header, values) if _bad_utf8(v)]
            if bad:
                rejects.append(_reject(line, "utf-8", f"line {line}: column {bad[0]} holds bytes that are not UTF-8",
                                       raw))
                continue
            nul = [h for h, v in zip(header, values) if "\x00" in v]
            if nul:
                rejects.append(_reject(line, "text", f"line {line}: column {nul[0]} holds a NUL byte", raw.replace(
                    "\x00", "\\0")))
                continue
            records.append(values)
            lines.append(line)
        frame = pd.DataFrame(records, columns=header, dtype="str") if records else pd.DataFrame(
            columns=header, dtype="str")
        self.fingerprint = hashlib.sha256(data).hexdigest()
        yield Chunk(frame, pd.Series(lines, dtype="int64"), c.location,
                    pd.DataFrame(rejects, columns=REJECT_COLUMNS))


# -- JSON Lines ----------------------------------------------------------------------------------

class JsonlReader(Reader):
    """A JSON Lines export. Events are read from the cursor's byte offset on (the file only grows);
    a snapshot is read whole and fingerprinted. Big exports come in chunks of lines."""

    def __init__(self, c: EntityContract, src: Sources, cursor: dict | None):
        super().__init__(c, src)
        self.start_cursor = cursor
        self.rewritten = False
        self.chunk_lines = JSONL_CHUNK_LINES if self.unread_bytes() > JSONL_CHUNK_BYTES else None

    def _start(self, path: Path) -> tuple[int, int]:
        """Where to start reading: after the cursor for a file that only grew since, else from the
        beginning (a snapshot, or an event file rewritten since: the landing loop then drops what
        is already loaded by key)."""
        cursor = self.start_cursor
        if self.c.mode != "events" or not cursor:
            return 0, 1
        offset = cursor.get("offset", 0)
        if path.stat().st_size < offset or cursor.get("prefix", _prefix_hash(path, offset)) != _prefix_hash(path, offset):
            self.rewritten = True
            return 0, 1
        return offset, cursor.get("line", 0) + 1

    def unread_bytes(self) -> int:
        path = Path(self.src.root) / self.c.location
        return path.stat().st_size - self._start(path)[0] if path.is_file() else 0

    def duplicate_keys(self) -> set[tuple] | None:
        """Keys that appear more than once anywhere in the file, found by DuckDB without Python rows."""
        if not self.chunk_lines:
            return None
        import duckdb

        c = self.c
        path = lake.sql_literal(str(confined(c, self.src.root, Path(self.src.root) / c.location)))
        cols = ", ".join(f"'{k}': 'VARCHAR'" for k in c.key)
        keys = ", ".join(f'"{k}"' for k in c.key)
        con = duckdb.connect()
        try:
            rows = con.execute(f"SELECT {keys} FROM read_ndjson({path}, columns = {{{cols}}}, "
                               f"ignore_errors = true) GROUP BY ALL HAVING count(*) > 1").fetchall()
        finally:
            con.close()
        return {tuple(str(v) for v in r) for r in rows}

    def chunks(self) -> Iterator[Chunk]:
        c = self.c
        path = _export_file(c, self.src.root)
        offset, first_line = self._start(path)
        before = quiet(c, c.location, path) if c.mode == "snapshot" else _signature(path)
        with path.open("rb") as f:
            if f.read(2).startswith(UTF16_BOMS):
                raise ExportBreach(c.system, c.entity, c.location, "is UTF-16: JSON Lines are UTF-8 text; export it "
                                   "as UTF-8")
        digest = hashlib.sha256()
        consumed, n = 0, first_line - 1
        records, lines, rejects = [], [], []
        with path.open("rb") as f:
            f.seek(offset)
            for raw in f:
                if c.mode == "events" and not raw.endswith(b"\n") and not _complete_json(raw):
                    break  # a line still being written is left for the next extraction
                consumed += len(raw)
                digest.update(raw)
                n += 1
                line = _decode(raw).rstrip("\r\n")
                if not line.strip():
                    continue
                if _bad_utf8(line):
                    rejects.append(_reject(n, "utf-8", f"line {n} holds bytes that are not UTF-8", _shown(line)))
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    rejects.append(_reject(n, "valid json", f"line {n} is not valid JSON ({e.msg})", _shown(line)))
                    continue
                except RecursionError:
                    rejects.append(_reject(n, "valid json", f"line {n} is not valid JSON (nested too deeply)",
                                           _shown(line)[:1000]))
                    continue
                if not isinstance(obj, dict):
                    rejects.append(_reject(n, "json object", f"line {n} is not a JSON object", _shown(line)))
                    continue
                records.append({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in obj.items()})
                lines.append(n)
                if self.chunk_lines and len(records) >= self.chunk_lines:
                    yield self._chunk(records, lines, rejects)
                    records, lines, rejects = [], [], []
        if c.mode == "snapshot":
            unchanged_while_read(c, c.location, path, before)
            self.fingerprint = digest.hexdigest()
        else:
            end = offset + consumed
            self.cursor = {"offset": end, "line": n, "prefix": _prefix_hash(path, end)}
        yield self._chunk(records, lines, rejects)

    def _chunk(self, records, lines, rejects) -> Chunk:
        c = self.c
        frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
        for col in c.columns:
            # JSON writers omit null fields: an absent optional field is null. An absent required
            # field (in every record) stays absent and is reported as a missing column by enforce.
            if col not in frame.columns and (not records or c.nullable(col)):
                frame[col] = pd.Series([None] * len(frame), dtype="object")
        return Chunk(frame, pd.Series(lines, dtype="int64"), c.location, pd.DataFrame(rejects, columns=REJECT_COLUMNS))


def _complete_json(raw: bytes) -> bool:
    """A last line without its newline is still a record once it parses (JSON Lines allows it);
    one that does not parse is still being written."""
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


PREFIX_BYTES = 64 * 1024


def _prefix_hash(path: Path, offset: int) -> str:
    """What the part already read looks like: its first and last 64 KiB. An event file that only
    grows keeps it; one rewritten or with a line inserted before the offset does not."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(min(offset, PREFIX_BYTES)))
        f.seek(max(0, offset - PREFIX_BYTES))
        digest.update(f.read(min(offset, PREFIX_BYTES)))
    return digest.hexdigest()


# -- Parquet files -------------------------------------------------------------------------------

class ParquetReader(Reader):
    """Event files in a folder (telemetry, a file per day): the files not read before, one chunk
    per file; the cursor is the set of file names read."""

    def __init__(self, c: EntityContract, src: Sources, cursor: dict | None):
        super().__init__(c, src)
        self.seen = sorted(set((cursor or {}).get("files", [])))

    def files(self) -> list[Path]:
        files = sorted(Path(self.src.root).glob(self.c.location))
        for f in files:
            confined(self.c, self.src.root, f)
        return files

    def chunks(self) -> Iterator[Chunk]:
        c, root = self.c, self.src.root
        folder = Path(root) / Path(c.location).parent
        if not folder.is_dir():
            raise ExportBreach(c.system, c.entity, str(Path(c.location).parent), "folder missing")
        new = [p for p in self.files() if p.name not in set(self.seen)]
        self.location = f"{c.location} ({len(new)} new file{'s' if len(new) != 1 else ''})"
        self.cursor = {"files": sorted(set(self.seen) | {x.name for x in new})}
        for path in new:
            yield self.read_file(path)

    def read_file(self, path: Path) -> Chunk:
        c, root = self.c, self.src.root
        location = str(path.relative_to(root))
        before = _signature(path)
        try:
            tbl = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 - any reader failure means the file is unreadable
            raise ExportBreach(c.system, c.entity, location, f"file unreadable as Parquet: {e}") from e
        unchanged_while_read(c, location, path, before)
        for name, kind in c.columns.items():
            if name in tbl.column_names and not KINDS[kind].parquet_accepts(tbl.schema.field(name).type):
                raise ExportBreach(c.system, c.entity, location, f"column has the wrong type: "
                                   f"{tbl.schema.field(name).type}, the contract says {kind}", column=name)
        frame = tbl.to_pandas()
        return Chunk(frame, pd.Series(range(1, len(frame) + 1), dtype="int64"), location)


def open_reader(c: EntityContract, src: Sources, cursor: dict | None = None) -> Reader:
    """The reader for the entity's medium, positioned after `cursor` for event entities."""
    if c.medium == "csv":
        return CsvReader(c, src)
    if c.medium == "jsonl":
        return JsonlReader(c, src, cursor)
    if c.medium == "parquet":
        return ParquetReader(c, src, cursor)
    from .mes import TableReader  # the MES module builds on these readers

    return TableReader(c, src, cursor)


def read_whole(c: EntityContract, src: Sources) -> list[Chunk]:
    """Every chunk of an export from the start (tests and tools that look at an export as is)."""
    return list(open_reader(c, src).chunks())
