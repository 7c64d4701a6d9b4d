"""The MES database: connections by SQLAlchemy URL, with the password kept out of every message,
and the reader of its tables.

Public because both the extraction (reading tables) and the MES sensor (looking at row counts
and high-water marks without reading rows) talk to the same database the same way.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from contracts import EntityContract, ExportBreach

from .readers import Chunk, Reader, Sources

# Tables larger than this are read, checked and landed chunk by chunk (memory stays bounded).
CHUNK_ROWS = 500_000


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


def database_stamp(url: str) -> str | None:
    """The outside of an SQLite database file: size, modification time and the header's change
    counter of the file and of its write-ahead log. Any committed write changes one of them, so an
    unchanged stamp means no table changed. None for other databases (a server's tables have no
    such outside: they are read every time)."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception:  # noqa: BLE001
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return None
    path = Path(parsed.database)
    parts = []
    for f in (path, path.with_name(path.name + "-wal")):
        try:
            st = f.stat()
        except FileNotFoundError:
            parts.append("-")
            continue
        with f.open("rb") as fh:
            head = fh.read(32)
        parts.append(f"{st.st_size}:{st.st_mtime_ns}:{head[24:28].hex() if f is path else head[16:24].hex()}")
    return "sqlite:" + "/".join(parts)


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

def _as_bytes(records: list) -> bytes:
    """The rows as the driver gave them, exactly, for a fingerprint: in marshal's format 2 (the
    same bytes for the same values; format 3 on also marks values shared in memory), else, for
    values marshal does not know (another driver's dates or decimals), as text. Text cost four
    times as much at 500,000 rows (0.34 s a chunk); the frame's hash through text, more than eight."""
    try:
        return marshal.dumps(records, 2)
    except ValueError:
        return repr(records).encode()


class TableReader(Reader):
    """A table of the MES database. Snapshots are fingerprinted by their content (big ones come in
    chunks); of an event table, the rows whose key the lake has not seen are read."""

    def __init__(self, c: EntityContract, src: Sources, cursor: dict | None):
        super().__init__(c, src)
        self.start_cursor = cursor
        self.location = f"{redact(src.mes_url)} table {c.location}"
        self.chunked = c.mode == "snapshot" and (table_rows(src.mes_url, c.location) or 0) > CHUNK_ROWS

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
                # The driver's own cursor: the same frames as pandas.read_sql_query's, without
                # SQLAlchemy wrapping every row first (38 % of the read of a big table).
                cursor = conn.exec_driver_sql(f"SELECT * FROM {quote(eng, self.c.location)}").cursor
                names = [d[0] for d in cursor.description]
                while records := cursor.fetchmany(CHUNK_ROWS):
                    frame = pd.DataFrame.from_records(records, columns=names, coerce_float=True)
                    rows = pd.Series(range(row_offset + 1, row_offset + len(frame) + 1), dtype="int64")
                    row_offset += len(frame)
                    digest.update(_as_bytes(records))
                    yield Chunk(frame, rows, self.location)
        # The driver's cursor raises the driver's own errors (SQLAlchemy wraps only its execute).
        except (sa.exc.SQLAlchemyError, eng.dialect.loaded_dbapi.Error) as e:
            raise self._unreadable(e) from None
        finally:
            eng.dispose()
        self.fingerprint = digest.hexdigest() + f"-{row_offset}"

    def _whole(self) -> Iterator[Chunk]:
        import sqlalchemy as sa

        c = self.c
        eng = None
        try:
            eng = engine(self.src.mes_url)
            with eng.connect() as conn:
                if not sa.inspect(conn).has_table(c.location):
                    raise self._breach("table missing")
                if c.mode == "events" and self.known is not None and len(c.key) == 1:
                    frame, rows = self._new_events(eng, conn)
                else:
                    frame = pd.read_sql_query(sa.text(f"SELECT * FROM {quote(eng, c.location)}"), conn,
                                              dtype_backend="numpy_nullable")
                    rows = pd.Series(range(1, len(frame) + 1), dtype="int64")
                    self.cursor = {"rows": len(frame)}
        except ExportBreach:
            raise
        except sa.exc.SQLAlchemyError as e:
            raise self._unreadable(e) from None
        finally:
            if eng is not None:
                eng.dispose()
        frame = frame.astype({col: "object" for col in frame.columns if str(frame[col].dtype) in ("string", "str")})
        if c.mode == "snapshot":
            self.cursor = None
            self.fingerprint = str(int(pd.util.hash_pandas_object(frame.astype(str), index=False).sum())
                                   & (2**63 - 1)) + f"-{len(frame)}"
        yield Chunk(frame, rows, self.location)

    def _new_events(self, eng, conn) -> tuple[pd.DataFrame, pd.Series]:
        """The event rows whose key is neither landed nor quarantined yet, whatever their time:
        an event that arrives late, out of order or dated in the future is read exactly once."""
        import sqlalchemy as sa

        c = self.c
        table, key = quote(eng, c.location), c.key[0]
        keys = pd.read_sql_query(sa.text(f"SELECT {quote(eng, key)} FROM {table}"), conn)[key].astype(str)
        self.cursor = {"rows": len(keys)}
        position = pd.Series(range(1, len(keys) + 1), index=keys.to_numpy())
        new = keys[~keys.isin(self.known())].unique().tolist()
        query = sa.text(f"SELECT * FROM {table} WHERE {quote(eng, key)} IN :keys").bindparams(
            sa.bindparam("keys", expanding=True))
        parts = [pd.read_sql_query(query, conn, params={"keys": new[i:i + 500]}, dtype_backend="numpy_nullable")
                 for i in range(0, len(new), 500)]
        if not parts:
            parts = [pd.read_sql_query(sa.text(f"SELECT * FROM {table} WHERE 1 = 0"), conn)]
        frame = pd.concat(parts, ignore_index=True)
        # Where each row sits in the table's key listing (a duplicated key: its first place).
        first = position[~position.index.duplicated()]
        rows = pd.Series(first.reindex(frame[key].astype(str)).fillna(0).astype("int64").to_numpy(), dtype="int64")
        return frame, rows
