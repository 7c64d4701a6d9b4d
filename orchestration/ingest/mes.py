"""The MES database: connections by SQLAlchemy URL, with the password kept out of every message,
and the reader of its tables.

Public because both the extraction (reading tables) and the MES sensor (looking at row counts
and high-water marks without reading rows) talk to the same database the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import pandas as pd
import sqlalchemy as sa

from contracts import EntityContract, ExportBreach

from .readers import Chunk, Reader, Sources

# Tables larger than this are read, checked and landed chunk by chunk (memory stays bounded).
CHUNK_ROWS = 500_000
# Event sources can deliver late rows with an earlier timestamp; re-read this much below the
# high-water mark and drop what is already loaded by key.
EVENT_OVERLAP = pd.Timedelta(days=1)


def redact(url: str) -> str:
    """The URL as it may be shown: password replaced by ***."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "MES database"


def scrub(text: str, url: str) -> str:
    """`text` without the URL's password, however a driver chose to quote the URL."""
    try:
        password = sa.engine.make_url(url).password
    except Exception:  # noqa: BLE001
        return text.replace(url, "<MES database URL>")
    return text.replace(url, redact(url)).replace(password, "***") if password else text


def error_text(e: sa.exc.SQLAlchemyError, url: str) -> str:
    """A driver error as one line that names the problem but never the password."""
    return scrub(f"{e.__class__.__name__}: {e.orig if getattr(e, 'orig', None) else e}", url)


def engine(url: str) -> sa.Engine:
    """An engine for the MES URL. Any failure to even build one (bad URL, missing driver) is
    reported as a SQLAlchemy error whose text names the URL with its password hidden."""
    try:
        return sa.create_engine(url)
    except Exception as e:  # noqa: BLE001
        raise sa.exc.ArgumentError(f"cannot use {redact(url)}: {scrub(f'{type(e).__name__}: {e}', url)}") from None


def quote(eng: sa.Engine, name: str) -> str:
    return eng.dialect.identifier_preparer.quote(name)


def table_rows(url: str, table: str) -> int | None:
    """Rows in the table, or None when it cannot be counted (the extraction then says why)."""
    try:
        eng = engine(url)
    except sa.exc.SQLAlchemyError:
        return None
    try:
        with eng.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return None
            return conn.execute(sa.text(f"SELECT count(*) FROM {quote(eng, table)}")).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        eng.dispose()


def table_fingerprints(entities: Iterable[EntityContract], url: str) -> dict[str, str]:
    """Per table, its row count, the high-water marks of its timestamp columns and the mix of
    statuses: inserts, newly completed or shipped units and new events show without reading rows."""
    entities = list(entities)
    try:
        eng = engine(url)
    except sa.exc.SQLAlchemyError as e:
        return {c.entity: f"unreachable:{e.__class__.__name__}" for c in entities}
    out = {}
    try:
        with eng.connect() as conn:
            inspector = sa.inspect(conn)
            for c in entities:
                if not inspector.has_table(c.location):
                    out[c.entity] = "missing"
                    continue
                q = eng.dialect.identifier_preparer.quote
                present = {col["name"] for col in inspector.get_columns(c.location)}
                stamps = [n for n, k in c.columns.items() if k == "timestamp" and n in present]
                exprs = ["count(*)"] + [f"max({q(n)})" for n in stamps]
                row = conn.execute(sa.text(f"SELECT {', '.join(exprs)} FROM {q(c.location)}")).fetchone()
                parts = [str(v) for v in row]
                if "status" in present:
                    mix = conn.execute(sa.text(
                        f"SELECT {q('status')}, count(*) FROM {q(c.location)} GROUP BY 1 ORDER BY 1")).fetchall()
                    parts.append(str(mix))
                out[c.entity] = "|".join(parts)
    except sa.exc.SQLAlchemyError as e:
        # Unreachable: let the extraction itself fail with its clear message, once per outage.
        out = {c.entity: f"unreachable:{e.__class__.__name__}" for c in entities}
    finally:
        eng.dispose()
    return out


# -- reading tables ------------------------------------------------------------------------------

class TableReader(Reader):
    """A table of the MES database. Snapshots are fingerprinted by their content; events are read
    from a day below the high-water mark of their event time on. Big snapshots come in chunks."""

    def __init__(self, c: EntityContract, src: Sources, cursor: dict | None):
        super().__init__(c, src)
        self.start_cursor = cursor
        self.location = f"{redact(src.mes_url)} table {c.location}"
        self.chunked = c.mode == "snapshot" and (table_rows(src.mes_url, c.location) or 0) > CHUNK_ROWS
        self._dup_keys: set[tuple] | None = None

    def _breach(self, problem: str, column: str | None = None) -> ExportBreach:
        return ExportBreach(self.c.system, self.c.entity, self.location, problem, column=column)

    def _unreadable(self, e) -> ExportBreach:
        # `from None` at the raise: the driver's own exception may quote the URL, password included.
        return self._breach(f"database unreachable or unreadable: {error_text(e, self.src.mes_url)}")

    def duplicate_keys(self) -> set[tuple] | None:
        if not self.chunked:
            return None
        import sqlalchemy as sa

        c = self.c
        eng = engine(self.src.mes_url)
        try:
            with eng.connect() as conn:
                columns = {col["name"] for col in sa.inspect(conn).get_columns(c.location)}
                missing = [k for k in c.columns if k not in columns]
                if missing:
                    raise self._breach(f"required column{'s' if len(missing) > 1 else ''} "
                                       f"{', '.join(repr(m) for m in missing)} missing", column=missing[0])
                key_sql = ", ".join(quote(eng, k) for k in c.key)
                dup = pd.read_sql_query(sa.text(f"SELECT {key_sql} FROM {quote(eng, c.location)} "
                                                f"GROUP BY {key_sql} HAVING count(*) > 1"), conn)
        except sa.exc.SQLAlchemyError as e:
            raise self._unreadable(e) from None
        finally:
            eng.dispose()
        return set(map(tuple, dup[list(c.key)].astype(str).itertuples(index=False))) if len(dup) else set()

    def chunks(self) -> Iterator[Chunk]:
        return self._chunked() if self.chunked else self._whole()

    def _chunked(self) -> Iterator[Chunk]:
        import sqlalchemy as sa

        eng = engine(self.src.mes_url)
        digest = hashlib.sha256()
        row_offset = 0
        try:
            with eng.connect() as conn:
                query = sa.text(f"SELECT * FROM {quote(eng, self.c.location)}")
                for frame in pd.read_sql_query(query, conn, chunksize=CHUNK_ROWS):
                    rows = pd.Series(range(row_offset + 1, row_offset + len(frame) + 1), dtype="int64")
                    row_offset += len(frame)
                    digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).values.tobytes())
                    yield Chunk(frame, rows, self.location)
        except sa.exc.SQLAlchemyError as e:
            raise self._unreadable(e) from None
        finally:
            eng.dispose()
        self.fingerprint = digest.hexdigest() + f"-{row_offset}"

    def _whole(self) -> Iterator[Chunk]:
        import sqlalchemy as sa

        c, cursor = self.c, self.start_cursor
        eng = None
        try:
            eng = engine(self.src.mes_url)
            with eng.connect() as conn:
                if not sa.inspect(conn).has_table(c.location):
                    raise self._breach("table missing")
                query, params = f"SELECT * FROM {quote(eng, c.location)}", {}
                if c.mode == "events" and cursor and cursor.get("hwm"):
                    since = (pd.Timestamp(cursor["hwm"]) - EVENT_OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
                    query += f" WHERE {quote(eng, c.event_time)} >= :since"
                    params["since"] = since
                frame = pd.read_sql_query(sa.text(query), conn, params=params, dtype_backend="numpy_nullable")
        except ExportBreach:
            raise
        except sa.exc.SQLAlchemyError as e:
            raise self._unreadable(e) from None
        finally:
            if eng is not None:
                eng.dispose()
        frame = frame.astype({col: "object" for col in frame.columns if str(frame[col].dtype) in ("string", "str")})
        if c.mode == "snapshot":
            self.fingerprint = str(int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum())
                                   & (2**63 - 1)) + f"-{len(frame)}"
        else:
            self.cursor = self._next_cursor(frame)
        yield Chunk(frame, pd.Series(range(1, len(frame) + 1), dtype="int64"), self.location)

    def _next_cursor(self, frame: pd.DataFrame) -> dict:
        c, cursor = self.c, self.start_cursor
        if len(frame) and c.event_time in frame:
            ts = pd.to_datetime(frame[c.event_time].astype("object"), utc=True, errors="coerce", format="ISO8601")
        else:
            ts = pd.Series([], dtype="datetime64[ns, UTC]")
        hwm = ts.max() if len(ts) and ts.notna().any() else None
        old = pd.Timestamp(cursor["hwm"]) if cursor and cursor.get("hwm") else None
        best = max([t for t in (hwm, old) if t is not None], default=None)
        return {"hwm": best.strftime("%Y-%m-%dT%H:%M:%SZ") if best is not None else None}
