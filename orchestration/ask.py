"""`thread ask`: the questions plant and service engineers ask, answered from the warehouse.

The SQL lives in the dbt project's analyses/ (one file per answer section), with named
parameters ($part, $serial, ...) bound by DuckDB, never pasted into the text. A section can read
the ones before it by title (`suspects`, `carriers`): each is kept as a temporary table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from .paths import DBT_DIR

ANALYSES = DBT_DIR / "analyses"


class AskError(ValueError):
    """A question that cannot be answered as asked (unknown part, serial, ECO...)."""


@dataclass(frozen=True)
class Question:
    name: str
    analysis: str  # file stem, or prefix of section files "<stem>__N_<title>.sql"
    argument: str | None  # PART[@REV], PART, ECO, SERIAL, LOT_OR_SERIAL
    optional: bool = False
    help: str = ""
    # Options besides the argument: lot (--lot L[,L2]), from/to (--from/--to DATE), as_of
    # (--as-of TIMESTAMP), since (--since TIMESTAMP).
    options: tuple[str, ...] = ()


QUESTIONS = {q.name: q for q in (
    Question("units-with", "units_with", "PART[@REV]", help="which units carry a part now, and which shipped with it"),
    Question("where-used", "where_used", "PART", help="which assemblies and products use a part, at which revisions"),
    Question("eco-impact", "eco_impact", "ECO", help="how far an ECO travelled and which units it touches"),
    Question("eco-gaps", "eco_gaps", None, help="released changes not yet in MES, ERP or Service, oldest first"),
    Question("trace", "trace", "SERIAL", help="a unit's genealogy: designed vs built vs now, ECOs, service, health"),
    Question("twin", "twin", "SERIAL", options=("as_of",),
             help="a unit's live twin; with --as-of, its state as published then"),
    Question("twin-changes", "twin_changes", "SERIAL", options=("since",),
             help="every state a unit's twin was published in: what changed, when and why"),
    Question("reliability", "reliability", "PART", optional=True, help="failures per part revision, worst first"),
    Question("due-soon", "due_soon", None, help="the fleet by remaining useful life: units due for maintenance first"),
    Question("carriers", "carriers", "LOT_OR_SERIAL",
             help="every unit that carries a lot or serial now or carried it before, and where a lot's pieces went"),
    Question("investigate", "investigate", "PART[@REV]", options=("lot", "from", "to"),
             help="a quality investigation: the suspect units, their failures against the rest of the revision, "
                  "whom to notify"),
)}


def usage(q: Question) -> str:
    """How the question is asked, for the command's help: `twin SERIAL [--as-of TIMESTAMP]`."""
    flags = {"lot": "--lot L[,L2]", "from": "--from DATE", "to": "--to DATE", "as_of": "--as-of TIMESTAMP",
             "since": "--since TIMESTAMP"}
    argument = "" if q.argument is None else f" [{q.argument}]" if q.optional else f" {q.argument}"
    return q.name + argument + "".join(f" [{flags[o]}]" for o in q.options)


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[tuple]


def _sections(analysis: str) -> list[tuple[str, str]]:
    single = ANALYSES / f"{analysis}.sql"
    if single.exists():
        return [(analysis.replace("_", " "), single.read_text())]
    files = sorted(ANALYSES.glob(f"{analysis}__*.sql"))
    return [(f.stem.split("__", 1)[1].split("_", 1)[1].replace("_", " "), f.read_text()) for f in files]


def _params(sql: str, values: dict) -> dict:
    return {k: v for k, v in values.items() if f"${k}" in sql}


def _known(con, sql: str, value: str, what: str, suggest_sql: str) -> None:
    if con.execute(sql, [value]).fetchone():
        return
    close = [r[0] for r in con.execute(suggest_sql, [value]).fetchall()]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise AskError(f"Unknown {what} {value!r}.{hint}")


def _check(con, q: Question, values: dict) -> None:
    if "part" in values and values["part"] is not None:
        _known(con, "SELECT 1 FROM thread.parts WHERE part_number = ?", values["part"], "part",
               "SELECT part_number FROM thread.parts ORDER BY jaro_winkler_similarity(part_number, ?) DESC LIMIT 3")
        if values.get("revision") is not None and not con.execute(
                "SELECT 1 FROM thread.part_revisions WHERE part_number = ? AND revision = ?",
                [values["part"], values["revision"]]).fetchone():
            revs = [r[0] for r in con.execute("SELECT revision FROM thread.part_revisions WHERE part_number = ? "
                                              "ORDER BY revision", [values["part"]]).fetchall()]
            raise AskError(f"Part {values['part']} has no revision {values['revision']!r} (it has {', '.join(revs)}).")
    if "serial" in values:
        _known(con, "SELECT 1 FROM thread.units WHERE serial_number = ?", values["serial"], "serial number",
               "SELECT serial_number FROM thread.units ORDER BY jaro_winkler_similarity(serial_number, ?) DESC LIMIT 3")
        if q.name == "twin" and values.get("as_of"):
            _published_then(con, values["serial"], values["as_of"])
        elif q.name == "twin":
            status = con.execute("SELECT status FROM thread.units WHERE serial_number = ?", [values["serial"]]).fetchone()[0]
            if status == "scrapped":
                raise AskError(f"{values['serial']} is scrapped: it has no twin (try `thread ask trace`, or "
                               f"`thread ask twin-changes` for the states it was published in).")
    if q.name == "carriers":
        _known(con, "SELECT 1 FROM thread.unit_component_serials WHERE component_serial = ?", values["lot"],
               "lot or serial number", "SELECT DISTINCT component_serial FROM thread.unit_component_serials "
               "ORDER BY jaro_winkler_similarity(component_serial, ?) DESC LIMIT 3")
    if q.name == "investigate" and values.get("lot"):
        for lot in _lots(values["lot"]):
            if not con.execute("SELECT 1 FROM thread.unit_component_serials WHERE component_serial = ? "
                               "AND part_number = ?", [lot, values["part"]]).fetchone():
                raise AskError(f"No unit carries or carried lot or serial {lot!r} of part {values['part']}.")
    if "eco" in values:
        _known(con, "SELECT 1 FROM thread.ecos WHERE eco_number = ?", values["eco"], "ECO",
               "SELECT eco_number FROM thread.ecos ORDER BY jaro_winkler_similarity(eco_number, ?) DESC LIMIT 3")


def _published_then(con, serial: str, at: datetime) -> None:
    first, last_to, current = con.execute(
        "SELECT min(valid_from), max(valid_to), bool_or(valid_to IS NULL) FROM twin.unit_twin_history "
        "WHERE serial_number = ?", [serial]).fetchone()
    if first is None:
        raise AskError(f"No twin of {serial} has been published yet.")
    if at < first:
        raise AskError(f"No twin of {serial} was published at or before {at.isoformat()}: the first was published "
                       f"at {first.isoformat()}.")
    if not current and at >= last_to:
        raise AskError(f"The twin of {serial} was no longer published at {at.isoformat()}: its last state ended at "
                       f"{last_to.isoformat()} (scrapped or removed).")


def _lots(text: str) -> list[str]:
    return [lot.strip() for lot in text.split(",") if lot.strip()]


def _options(q: Question, options: dict) -> dict:
    given = {k: v for k, v in options.items() if v is not None}
    unknown = set(given) - set(q.options)
    if unknown:
        flags = ", ".join(_flag(k) for k in sorted(unknown))
        raise AskError(f"`{q.name}` takes no {flags}" + (f" (it takes {', '.join(map(_flag, q.options))})."
                                                        if q.options else "."))
    values = {k: None for k in q.options}
    for k in ("from", "to"):
        if given.get(k):
            try:
                values[k] = date.fromisoformat(given[k])
            except ValueError:
                raise AskError(f"--{k} {given[k]!r} is not a date (YYYY-MM-DD).") from None
    for k in ("as_of", "since"):
        if given.get(k):
            try:
                at = datetime.fromisoformat(given[k])
            except ValueError:
                raise AskError(f"{_flag(k)} {given[k]!r} is not a timestamp (YYYY-MM-DD[THH:MM[:SS]][+HH:MM]).") from None
            values[k] = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    if values.get("from") and values.get("to") and values["from"] > values["to"]:
        raise AskError(f"--from {values['from']} is after --to {values['to']}.")
    if given.get("lot"):
        values["lot"] = ",".join(_lots(given["lot"])) or None
    return values


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def parse(q: Question, argument: str | None, options: dict | None = None) -> dict:
    values = _options(q, options or {})
    if q.argument is None:
        if argument is not None:
            raise AskError(f"`{q.name}` takes no argument (got {argument!r}).")
        return values
    if argument is None:
        if q.optional:
            return {**values, "part": None}
        raise AskError(f"`{q.name}` needs {q.argument}.")
    if q.argument == "PART[@REV]":
        part, _, revision = argument.partition("@")
        return {**values, "part": part, "revision": revision or None}
    key = {"PART": "part", "ECO": "eco", "SERIAL": "serial", "LOT_OR_SERIAL": "lot"}[q.argument]
    return {**values, key: argument}


def pick(sections: list[Section], name: str | None, question: str) -> list[Section]:
    """Only the section titled `name` (spaces, dashes and underscores alike; any case)."""
    if name is None:
        return sections
    wanted = _table_name(name.replace("-", " ")).lower()
    chosen = [s for s in sections if _table_name(s.title).lower() == wanted]
    if not chosen:
        raise AskError(f"`{question}` has no section {name!r}; its sections: "
                       + ", ".join(_table_name(s.title) for s in sections) + ".")
    return chosen


def _table_name(title: str) -> str:
    return re.sub(r"\W+", "_", title).strip("_")


def ask(warehouse: Path, name: str, argument: str | None = None, **options: str | None) -> list[Section]:
    """Answer question `name`; `options` are the question's options (lot, from, to, as_of, since) as given."""
    if name not in QUESTIONS:
        raise AskError(f"Unknown question {name!r}; ask one of: {', '.join(QUESTIONS)}.")
    if not Path(warehouse).exists():
        raise AskError(f"No warehouse at {warehouse}: run `thread build` first.")
    q = QUESTIONS[name]
    values = parse(q, argument, options)
    analysis = f"{q.analysis}_as_of" if values.get("as_of") else q.analysis
    import duckdb  # here: the command's help lists the questions without loading DuckDB

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _check(con, q, values)
        out = []
        sections = _sections(analysis)
        for i, (title, sql) in enumerate(sections):
            if i < len(sections) - 1:  # later sections may read it
                table = _table_name(title)
                con.execute(f"CREATE TEMP TABLE {table} AS {sql}", _params(sql, values))
                cur = con.execute(f"SELECT * FROM {table}")
            else:
                cur = con.execute(sql, _params(sql, values))
            out.append(Section(title, [d[0] for d in cur.description], cur.fetchall()))
        return out
    finally:
        con.close()
