"""Twin history: every state in which a twin was published, kept as rows (never as Delta versions,
which retention vacuums away).

At each publish, the published `twin.unit_twin` is compared with the last recorded state of each
unit (all its columns but `refreshed_at`: a twin recomputed to the same values is the same
state). A unit whose state differs gets a row, stamped with the publish time (`valid_from`),
with what changed (compared column by column) and why (the refresh reasons logged for that unit
since its previous state). A unit that is no longer published (scrapped) gets a closing row. The
rows live in lake/_state/twin/history, appended only; the warehouse's `twin.unit_twin_history` is that
table with `valid_to` (the next state's `valid_from`; null = still published).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa

from . import lake, twins

PUBLISHED = "twin.unit_twin_history"
# What a change is called, by the unit_twin columns that moved. A retrofit is a configuration
# change that lowered the pending retrofits; "other" catches any column not listed here.
CHANGE_KINDS = {
    "unit": ("product_part_number", "product_revision", "status", "shipped_at", "site"),
    "configuration": ("configuration_hash", "component_count"),
    "eco impact": ("pending_retrofits",),
    "deviations": ("deviation_count",),
    "service": ("open_service_events", "last_service_event_at"),
    "telemetry": ("last_telemetry_at",),
    "health": ("health_state", "worst_sensor"),
    "rul": ("rul_hours", "rul_model_version"),
    "staleness": ("is_stale", "stale_reason"),
}
# Columns the history adds in front of the twin's own.
HISTORY_COLUMNS = {
    "valid_from": ("TIMESTAMPTZ", "When this state was published."),
    "valid_to": ("TIMESTAMPTZ", "When the next state of the twin was published, or the twin stopped being published "
                 "(the unit was scrapped); null = the state published now."),
    "changes": ("VARCHAR", "What changed from the previous state, comma-separated: new twin, unit, configuration, "
                "retrofit, eco impact, deviations, service, telemetry, health, rul, staleness, other."),
    "refresh_reasons": ("VARCHAR", "Why the twin was recomputed since the previous state: the inputs that changed "
                        "(unit, configuration, deviation, eco, service, telemetry, rul), comma-separated; empty when "
                        "only its staleness changed at publish."),
}
DESCRIPTION = ("Every state in which each twin was published, with when and why it changed; `thread ask twin SERIAL "
               "--as-of TIMESTAMP` reads the state valid then.")


EVENTS = "twin.twin_change_events"
# One event per published change of a twin, in the order they happened: the id is the publish
# time (microseconds since 1970, fixed width) and the serial number, so ids sort as the events do
# and a consumer resumes after the last id it saw (`event_id > ?`), with nothing numbered centrally.
EVENTS_COLUMNS = {
    "event_id": "Ordered, stable id of the change: a consumer resumes after the last id it saw.",
    "serial_number": "The unit whose twin changed.",
    "changed_at": "When the changed twin was published.",
    "changes": "What changed from the previous state (as in unit_twin_history.changes).",
    "refresh_reasons": "Why the twin was recomputed: the inputs that changed.",
    "old_configuration_hash": "The configuration hash before the change; null for a new twin.",
    "new_configuration_hash": "The configuration hash after it.",
    "health_state": "Health after the change.",
    "pending_retrofits": "Retrofits still due after the change.",
    "is_stale": "Whether the twin is stale after the change.",
}
EVENTS_DESCRIPTION = ("One event per change of a published twin, append-only and ordered by event_id (what `thread api` "
                      "streams at /events): serial, time, what changed, why, and the configuration hash before and "
                      "after.")


def events_sql(history: str = PUBLISHED) -> str:
    return f"""
        SELECT lpad(epoch_us(valid_from)::VARCHAR, 17, '0') || '-' || serial_number AS event_id,
               serial_number, valid_from AS changed_at, changes, refresh_reasons,
               lag(configuration_hash) OVER (PARTITION BY serial_number ORDER BY valid_from) AS old_configuration_hash,
               configuration_hash AS new_configuration_hash, health_state, pending_retrofits, is_stale
        FROM {history}"""


def table(lake_dir: Path) -> Path:
    from .twins import internal_dir

    return internal_dir(lake_dir) / "history"


def new_states(con, lake_dir: Path, stored: pa.Table | None, now: datetime,
               relation: str = "twin.unit_twin") -> pa.Table:
    """The history rows this publish adds: units whose published twin differs from their last
    recorded state (`stored`: the history so far, read once per publish), and units no longer
    published. `relation` is the twin table about to be published, on `con`."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {relation}").fetchall()]
    state_cols = [c for c in columns if c != "refreshed_at"]
    # As text: Delta has no unsigned 64-bit integers.
    hashed = "hash(" + ", ".join(f"c.{_q(c)}" for c in state_cols) + ")::VARCHAR"
    if stored is None:
        con.execute(f"CREATE OR REPLACE TEMP VIEW history_last AS SELECT *, NULL::VARCHAR AS state_hash, "
                    f"NULL::BOOLEAN AS present, NULL::TIMESTAMPTZ AS valid_from FROM {relation} WHERE false")
    else:
        con.register("history_stored", stored)
        con.execute("CREATE OR REPLACE TEMP VIEW history_last AS SELECT * FROM history_stored "
                    "QUALIFY row_number() OVER (PARTITION BY serial_number ORDER BY valid_from DESC) = 1")
    log = lake.read(twins.refresh_log_table(lake_dir), columns=["serial_number", "reasons", "refreshed_at"])
    if log is None:
        log = pa.table({"serial_number": pa.array([], pa.string()), "reasons": pa.array([], pa.list_(pa.string())),
                        "refreshed_at": pa.array([], pa.timestamp("us", tz="UTC"))})
    con.register("history_refresh_log", log)
    differs = lambda cols: " OR ".join(f"c.{_q(x)} IS DISTINCT FROM p.{_q(x)}" for x in cols if x in columns)  # noqa: E731
    listed = [x for cols in CHANGE_KINDS.values() for x in cols]
    kinds = [
        *(f"CASE WHEN {differs(cols)} THEN '{kind}' END" for kind, cols in CHANGE_KINDS.items()
          if differs(cols) and kind != "eco impact"),
        f"CASE WHEN ({differs(CHANGE_KINDS['configuration'])}) AND c.pending_retrofits < p.pending_retrofits "
        "THEN 'retrofit' END",
        f"CASE WHEN {differs(CHANGE_KINDS['eco impact'])} THEN 'eco impact' END",
    ]
    others = [c for c in state_cols if c not in listed and c != "serial_number"]
    if others:
        kinds.append(f"CASE WHEN {differs(others)} THEN 'other' END")
    now_sql = f"{lake.sql_literal(now.isoformat())}::TIMESTAMPTZ"
    return con.execute(f"""
        WITH cur AS (SELECT c.*, {hashed} AS state_hash FROM {relation} c),
        changed AS (
            SELECT c.*, p.valid_from AS previous_from,
                   CASE WHEN p.serial_number IS NULL OR NOT p.present THEN 'new twin'
                        ELSE array_to_string(list_filter([{', '.join(kinds)}], k -> k IS NOT NULL), ', ') END
                       AS changes
            FROM cur c LEFT JOIN history_last p USING (serial_number)
            WHERE p.serial_number IS NULL OR NOT p.present OR p.state_hash IS DISTINCT FROM c.state_hash),
        reasons AS (
            SELECT c.serial_number, array_to_string(list_sort(list_distinct(flatten(list(l.reasons)))), ', ') AS why
            FROM changed c JOIN history_refresh_log l
              ON l.serial_number = c.serial_number AND (c.previous_from IS NULL OR l.refreshed_at > c.previous_from)
            GROUP BY 1)
        SELECT {now_sql} AS valid_from, c.changes, coalesce(r.why, '') AS refresh_reasons,
               {', '.join(f'c.{_q(x)}' for x in columns if x != 'serial_number')}, c.serial_number,
               c.state_hash, true AS present
        FROM changed c LEFT JOIN reasons r USING (serial_number)
        UNION ALL BY NAME
        SELECT {now_sql} AS valid_from, 'no longer a twin' AS changes, '' AS refresh_reasons,
               p.serial_number, NULL::VARCHAR AS state_hash, false AS present
        FROM history_last p ANTI JOIN cur c USING (serial_number)
        WHERE p.present
        ORDER BY serial_number
    """).fetch_arrow_table()


def append(lake_dir: Path, rows: pa.Table, batch_id: str) -> None:
    if rows.num_rows:
        lake.write(table(lake_dir), rows, "append", batch_id=batch_id)


def published_sql(con, stored: pa.Table | None, pending: pa.Table, relation: str = "twin.unit_twin") -> str:
    """The published history: every recorded state (`stored`, registered by new_states) and this
    publish's, with valid_to."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {relation}").fetchall()]
    con.register("history_new", pending)
    union = "SELECT * FROM history_new" if stored is None else \
        "SELECT * FROM history_stored UNION ALL BY NAME SELECT * FROM history_new"
    return f"""
        SELECT serial_number, valid_from, valid_to, changes, refresh_reasons,
               {', '.join(_q(c) for c in columns if c != 'serial_number')}
        FROM (SELECT *, lead(valid_from) OVER (PARTITION BY serial_number ORDER BY valid_from) AS valid_to
              FROM ({union}))
        WHERE present
    """


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
