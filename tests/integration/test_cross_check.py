"""An independent reading of thread-schema.md in plain Python, checked against the dbt marts.

Computed per unit, straight from the source files, with none of the marts' tricks (no
effectivity classes, no recursive SQL): if both agree on a simulated enterprise, the marts say
what the spec says.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import date

import pandas as pd
import pytest

from tests.helpers import query

INF = pd.Timestamp.max.tz_localize("UTC")


def prefix(serial: str) -> str:
    return serial.rsplit("-", 1)[0] if "-" in serial else ""


@pytest.fixture(scope="module")
def src(small_sources):
    s = small_sources
    ts = lambda df, *cols: df.assign(**{c: pd.to_datetime(df[c], utc=True) for c in cols})  # noqa: E731
    con = sqlite3.connect(s / "mes" / "mes.sqlite")
    units = ts(pd.read_sql("select * from units", con), "build_started_at")
    as_built = pd.read_sql("select * from as_built_components", con)
    wi = ts(pd.read_sql("select * from work_instructions", con), "effective_at")
    con.close()
    events = ts(pd.read_json(s / "service" / "service_events.jsonl", lines=True, dtype=False), "occurred_at")
    return {
        "units": units, "as_built": as_built, "wi": wi, "events": events,
        "revs": ts(pd.read_csv(s / "plm" / "part_revisions.csv", dtype=str), "released_at"),
        "ecos": ts(pd.read_csv(s / "plm" / "ecos.csv", dtype=str), "released_at"),
        "bom": pd.read_csv(s / "plm" / "bom_lines.csv", dtype={"parent_revision": str}),
        "items": pd.read_csv(s / "plm" / "eco_affected_items.csv", dtype=str),
        "erp": ts(pd.read_csv(s / "erp" / "engineering_change_log.csv", dtype=str), "applied_at"),
        "bulletins": ts(pd.read_json(s / "service" / "service_bulletins.jsonl", lines=True, dtype=False), "issued_at"),
    }


def is_effective(rev, eco, unit) -> bool:
    day = unit.build_started_at.date()
    if pd.isna(rev.eco_number):
        return rev.released_at.date() <= day
    if eco is None or eco.state != "released":
        return False
    if eco.effectivity_type == "date":
        return day >= date.fromisoformat(eco.effective_from)
    return prefix(unit.serial_number) == prefix(eco.effective_from) and unit.serial_number >= eco.effective_from


def as_designed(src) -> dict:
    ecos = {e.eco_number: e for e in src["ecos"].itertuples()}
    revs = [r for r in src["revs"].itertuples() if pd.notna(r.released_at) and r.state not in ("in_work", "cancelled")]
    bom = defaultdict(list)
    for b in src["bom"].itertuples():
        bom[(b.parent_part_number, b.parent_revision)].append((b.child_part_number, b.quantity))
    out = {}
    for u in src["units"].itertuples():
        designed = {}
        for r in revs:
            if is_effective(r, ecos.get(r.eco_number) if pd.notna(r.eco_number) else None, u):
                best = designed.get(r.part_number)
                if best is None or (r.released_at, r.revision) > best:
                    designed[r.part_number] = (r.released_at, r.revision)
        totals = defaultdict(float)
        stack = [(u.product_part_number, 1.0, (u.product_part_number,))]
        while stack:
            part, qty, path = stack.pop()
            rev = designed.get(part, (None, None))[1]
            totals[(part, rev)] += qty
            for child, q in bom.get((part, rev), []) if rev else []:
                if child not in path:
                    stack.append((child, qty * q, path + (child,)))
        for (part, rev), qty in totals.items():
            out[(u.serial_number, part, rev)] = round(qty, 6)
    return out


def released_at_of(src):
    return {(r.part_number, r.revision): r.released_at for r in src["revs"].itertuples() if pd.notna(r.released_at)}


def holdings(src, before=None) -> dict:
    """Per unit: {(part, rev): qty}, after MES and the service swaps ordered before `before`
    ({serial: (occurred_at, event_id)}), or all of them."""
    released = released_at_of(src)
    state = defaultdict(lambda: defaultdict(float))
    for u in src["units"].itertuples():
        state[u.serial_number][(u.product_part_number, u.product_revision)] += 1
    for a in src["as_built"].itertuples():
        state[a.serial_number][(a.part_number, a.revision)] += a.quantity
    swaps = src["events"][src["events"].removed_part_number.notna() | src["events"].installed_part_number.notna()]
    for e in swaps.sort_values(["occurred_at", "event_id"]).itertuples():
        if before is not None and (e.occurred_at, e.event_id) >= before.get(e.serial_number, (INF, "")):
            continue
        held = state[e.serial_number]
        if pd.notna(e.removed_part_number):
            if pd.notna(e.removed_revision):
                target = e.removed_revision if held.get((e.removed_part_number, e.removed_revision), 0) > 1e-9 else None
            else:
                options = [r for (p, r), q in held.items() if p == e.removed_part_number and q > 1e-9]
                target = min(options, key=lambda r: (released.get((e.removed_part_number, r), INF), r), default=None)
            if target is not None:
                held[(e.removed_part_number, target)] -= 1
        if pd.notna(e.installed_part_number):
            held[(e.installed_part_number, e.installed_revision)] += 1
    return {s: {k: round(q, 6) for k, q in h.items() if q > 1e-9} for s, h in state.items()}


def test_as_designed(src, built_small):
    got = {(s, p, r): round(q, 6) for s, p, r, q in
           query(built_small / "warehouse.duckdb", "select serial_number, part_number, revision, quantity from thread.unit_as_designed")}
    assert got == as_designed(src)


def test_current_configuration(src, built_small):
    got = defaultdict(dict)
    for s, p, r, q in query(built_small / "warehouse.duckdb",
                            "select serial_number, part_number, revision, quantity from thread.unit_configuration"):
        got[s][(p, r)] = round(q, 6)
    assert dict(got) == holdings(src)


def test_deviations(src, built_small):
    designed = defaultdict(dict)
    for (s, p, r), q in as_designed(src).items():
        designed[s][p] = (r, q)
    built = defaultdict(lambda: defaultdict(dict))
    for u in src["units"].itertuples():
        built[u.serial_number][u.product_part_number][u.product_revision] = 1.0
    for a in src["as_built"].itertuples():
        revs = built[a.serial_number][a.part_number]
        revs[a.revision] = revs.get(a.revision, 0) + a.quantity
    expected = set()
    for u in src["units"].itertuples():
        if u.status not in ("completed", "shipped"):
            continue
        d, b = designed[u.serial_number], built[u.serial_number]
        for part in set(d) | set(b):
            if part not in b:
                expected.add((u.serial_number, part, "missing"))
            elif part not in d:
                expected.add((u.serial_number, part, "unexpected"))
            elif ",".join(sorted(b[part])) != d[part][0]:
                expected.add((u.serial_number, part, "revision_mismatch"))
            elif abs(sum(b[part].values()) - d[part][1]) > 1e-9:
                expected.add((u.serial_number, part, "quantity_mismatch"))
    got = set(query(built_small / "warehouse.duckdb", "select serial_number, part_number, deviation_type from thread.unit_deviations"))
    assert got == expected
    assert got, "the simulated enterprise should have deviations"


def test_eco_propagation(src, built_small):
    expected = {}
    for e in src["ecos"][src["ecos"].state == "released"].itertuples():
        parts = set(src["items"][src["items"].eco_number == e.eco_number].part_number)
        wi = src["wi"][src["wi"].eco_number == e.eco_number].groupby("part_number").effective_at.min()
        erp = src["erp"][(src["erp"].eco_number == e.eco_number) & src["erp"].part_number.isin(parts)]
        bulletins = src["bulletins"][src["bulletins"].eco_number == e.eco_number]
        mes_at = wi.max() if parts and parts <= set(wi.index) else None
        erp_at = erp.applied_at.max() if parts and parts <= set(erp.part_number) else None
        svc_at = bulletins.issued_at.min() if len(bulletins) else None
        missing = [name for name, at in (("erp", erp_at), ("mes", mes_at), ("service", svc_at)) if at is None]
        lag = lambda at: None if at is None else round((at - e.released_at).total_seconds() / 3600, 6)  # noqa: E731
        expected[e.eco_number] = (lag(mes_at), lag(erp_at), lag(svc_at), ",".join(missing))
    got = {r[0]: (None if r[1] is None else round(r[1], 6), None if r[2] is None else round(r[2], 6),
                  None if r[3] is None else round(r[3], 6), r[4])
           for r in query(built_small / "warehouse.duckdb", "select eco_number, mes_lag_hours, erp_lag_hours, "
                                                             "service_lag_hours, missing_systems from thread.eco_propagation")}
    assert got == expected


def test_eco_impact(src, built_small):
    current = holdings(src)
    designed = defaultdict(set)
    for (s, p, _r) in as_designed(src):
        designed[s].add(p)
    built = defaultdict(set)
    for a in src["as_built"].itertuples():
        built[a.serial_number].add((a.part_number, a.revision))
    for u in src["units"].itertuples():
        built[u.serial_number].add((u.product_part_number, u.product_revision))
    expected = set()
    units = src["units"][src["units"].status != "scrapped"]
    for e in src["ecos"][src["ecos"].state == "released"].itertuples():
        items = src["items"][src["items"].eco_number == e.eco_number]
        for u in units.itertuples():
            s = u.serial_number
            uses = {p for p, _ in built[s]} | {p for p, _ in current[s]}
            if not set(items.part_number) & uses:
                continue
            if e.effectivity_type == "date":
                within = u.build_started_at.date() >= date.fromisoformat(e.effective_from)
            else:
                within = prefix(s) == prefix(e.effective_from) and s >= e.effective_from
            relevant = [i for i in items.itertuples() if i.part_number in uses | designed[s]]
            holds_from = any(pd.notna(i.from_revision) and (i.part_number, i.from_revision) in current[s] for i in relevant)
            if within:
                impact = "effective" if all((i.part_number, i.to_revision) in built[s] for i in relevant) else "effective_not_built"
            elif e.field_action == "retrofit":
                impact = "retrofit_pending" if holds_from else "retrofitted"
            elif e.field_action == "inspect" and holds_from:
                impact = "inspect"
            else:
                continue
            expected.add((e.eco_number, s, impact))
    got = set(query(built_small / "warehouse.duckdb", "select eco_number, serial_number, impact from thread.eco_impact"))
    assert got == expected
    assert {i for _, _, i in got} >= {"effective", "retrofit_pending"}


def test_part_field_reliability(src, built_small):
    current = holdings(src)
    shipped = set(src["units"][src["units"].status == "shipped"].serial_number)
    in_service = defaultdict(int)
    for s, held in current.items():
        if s in shipped:
            for key in held:
                in_service[key] += 1
    failures = defaultdict(int)
    for f in src["events"][(src["events"].event_type == "failure") & src["events"].failed_part_number.notna()].itertuples():
        at = holdings(src, before={f.serial_number: (f.occurred_at, f.event_id)})[f.serial_number] \
            if f.serial_number in current else {}
        revs = [r for (p, r) in at if p == f.failed_part_number]
        for r in revs or [None]:
            failures[(f.failed_part_number, r)] += 1
    expected = {k: (in_service.get(k, 0), failures.get(k, 0)) for k in set(in_service) | set(failures)}
    got = {(p, r): (n, f) for p, r, n, f in query(
        built_small / "warehouse.duckdb",
        "select part_number, revision, units_in_service, failures from thread.part_field_reliability")}
    assert got == expected
    assert sum(f for _, f in got.values()) > 0


def test_genealogy_first_in_first_out(src, built_small):
    """Every tracked lot or serial, replayed piece by piece: a removal takes, of the revision it
    resolves to, the piece of that unit installed first."""
    released = released_at_of(src)
    starts = dict(zip(src["units"].serial_number, src["units"].build_started_at))
    pieces = defaultdict(list)  # (unit, part, revision) -> [[lot, remaining, installed_by], ...] in install order
    for u in src["units"].itertuples():
        pieces[(u.serial_number, u.product_part_number, u.product_revision)].append(["-", 1.0, "mes"])
    as_built = src["as_built"].assign(at=pd.to_datetime(src["as_built"].installed_at, utc=True))
    as_built["at"] = as_built["at"].fillna(as_built.serial_number.map(starts))
    as_built["lot_order"] = as_built.component_serial.where(as_built.component_serial != "-", "\U0010ffff")  # untracked: last
    for a in as_built.sort_values(["at", "revision", "lot_order"]).itertuples():
        pieces[(a.serial_number, a.part_number, a.revision)].append([a.component_serial, a.quantity, "mes"])
    events = src["events"]
    for e in events[events.removed_part_number.notna() | events.installed_part_number.notna()] \
            .sort_values(["occurred_at", "event_id"]).itertuples():
        if pd.notna(e.removed_part_number):
            held = {r: sum(p[1] for p in ps) for (s, part, r), ps in pieces.items()
                    if s == e.serial_number and part == e.removed_part_number and sum(p[1] for p in ps) > 1e-9}
            if pd.notna(e.removed_revision):
                target = e.removed_revision if e.removed_revision in held else None
            else:
                target = min(held, key=lambda r: (released.get((e.removed_part_number, r), INF), r), default=None)
            if target is not None:
                first = next(p for p in pieces[(e.serial_number, e.removed_part_number, target)] if p[1] > 1e-9)
                first[1] -= 1
                if first[1] <= 1e-9:
                    first.append(e.event_id)
        if pd.notna(e.installed_part_number):
            lot = e.installed_component_serial if isinstance(e.installed_component_serial, str) else "-"
            pieces[(e.serial_number, e.installed_part_number, e.installed_revision)].append([lot, 1.0, e.event_id])
    expected = {(s, part, r, p[0], p[2]): (round(max(p[1], 0), 6), p[3] if len(p) > 3 else None)
                for (s, part, r), ps in pieces.items() for p in ps if p[0] != "-"}
    got = {(s, p, r, c, by): (round(q, 6), removed) for s, p, r, c, by, q, removed in query(
        built_small / "warehouse.duckdb",
        "select serial_number, part_number, revision, component_serial, installed_by, quantity_held, removed_by "
        "from thread.unit_component_serials")}
    assert got == expected
    assert any(removed for _, removed in got.values()), "no tracked piece was ever removed: a weak check"
