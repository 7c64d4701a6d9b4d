"""`thread api`: the published twins for applications, read-only, over HTTP.

The twins as an AAS repository (AAS Part 2 HTTP API v3.0, read profiles): see `aas_api`.

`GET /events` streams every change of a twin as Server-Sent Events, in order (from
`twin.twin_change_events`): `id` is the event id, `event` is `twin-changed`, `data` the change as
JSON. A consumer that reconnects sends the last id it saw (`Last-Event-ID`, as browsers'
EventSource do by themselves, or `?after=`) and receives every event after it, none twice; without
one it receives the history from the start (`?after=now`: only what happens from now on).
`?serial=` keeps one unit's events. The stream looks at the warehouse when its file was replaced
(a publish) and sends a comment every 15 s so proxies keep it open.

Reads the warehouse read-only, a fresh connection per look: a publish swaps the file and never
waits for a reader. No personal data is in what it serves (the twin tables hold none).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from pathlib import Path

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from . import aas, aas_api, lake
from .twin_history import EVENTS

PAGE = 500
HEARTBEAT_S = 15.0
POLL_S = 0.25


def _stamp(warehouse: Path):
    try:
        st = warehouse.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _rows(warehouse: Path, sql: str, params: list) -> list[dict]:
    """Rows of a query on the warehouse; none when it is not published yet, or was published
    before the events existed."""
    if not warehouse.exists():
        return []
    con = lake.open_published(warehouse)
    try:
        return aas._rows(con, sql, params)
    except duckdb.CatalogException:
        return []
    finally:
        con.close()


def read_events(warehouse: Path, after: str, serial: str | None = None, limit: int = PAGE) -> list[dict]:
    where, params = "event_id > ?", [after]
    if serial:
        where += " AND serial_number = ?"
        params.append(serial)
    return _rows(warehouse, f"SELECT * FROM {EVENTS} WHERE {where} ORDER BY event_id LIMIT {int(limit)}", params)


def latest_event_id(warehouse: Path) -> str:
    rows = _rows(warehouse, f"SELECT max(event_id) AS last FROM {EVENTS}", [])
    return (rows[0]["last"] if rows else None) or ""


def _sse(event: dict) -> str:
    data = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in event.items()}
    for key in ("changes", "refresh_reasons"):
        data[key] = [x for x in (data.get(key) or "").split(", ") if x]
    return f"id: {event['event_id']}\nevent: twin-changed\ndata: {json.dumps(data)}\n\n"


def app(warehouse: Path) -> Starlette:
    warehouse = Path(warehouse)

    async def events(request: Request):
        after = request.headers.get("last-event-id") or request.query_params.get("after") or ""
        if after == "now":
            after = await run_in_threadpool(latest_event_id, warehouse)
        serial = request.query_params.get("serial")

        async def stream():
            nonlocal after
            yield "retry: 2000\n\n"
            seen, quiet = None, 0.0
            while not await request.is_disconnected():
                stamp = _stamp(warehouse)
                if stamp != seen:
                    batch = await run_in_threadpool(read_events, warehouse, after, serial)
                    for event in batch:
                        yield _sse(event)
                        after = event["event_id"]
                    if len(batch) < PAGE:
                        seen = stamp  # all of this publish sent; otherwise read the next page first
                    quiet = 0.0
                    continue
                await asyncio.sleep(POLL_S)
                quiet += POLL_S
                if quiet >= HEARTBEAT_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def health(request: Request):
        return JSONResponse({"warehouse": warehouse.exists(), "pid": os.getpid()})

    return Starlette(routes=[Route("/events", events), Route("/health", health), *aas_api.routes(warehouse)])


def serve(warehouse: Path, host: str, port: int) -> None:
    import uvicorn

    # What is loaded by now lives as long as the server: out of the garbage collector's sight, so a
    # collection in the middle of building a submodel walks only that request's objects.
    gc.freeze()
    # Open event streams never end by themselves: on Ctrl-C, close them after 2 s.
    uvicorn.run(app(warehouse), host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=2)
