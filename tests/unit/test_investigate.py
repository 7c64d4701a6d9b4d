"""`thread ask carriers` and `thread ask investigate` on a hand-made warehouse whose answers are
worked out by hand: a lot split across units, a lot replaced by service, an installation window
that cuts an install interval, failures counted only while the suspect was installed."""

from __future__ import annotations

import duckdb
import pytest

from orchestration.ask import AskError, ask

TABLES = {
    "parts": ("part_number", [("C",), ("P",)]),
    "part_revisions": ("part_number, revision", [("C", "A"), ("C", "B"), ("P", "A")]),
    "units": ("serial_number, product_part_number, status, site, customer_id", [
        ("U1", "P", "shipped", "S1", "K1"),
        ("U2", "P", "shipped", "S2", "K2"),
        ("U3", "P", "scrapped", "S1", None),
        ("U4", "P", "shipped", "S1", "K4"),
        ("U5", "P", "shipped", "S2", "K5"),
    ]),
    "unit_component_serials": ("serial_number, part_number, revision, component_serial, quantity, installed_at, "
                               "installed_by, removed_at, removed_by, quantity_held", [
        ("U1", "C", "A", "L-1", 2, "2026-01-10", "mes", None, None, 2),
        ("U3", "C", "A", "L-1", 1, "2026-01-20", "mes", None, None, 1),
        ("U2", "C", "A", "L-1", 1, "2026-02-10", "mes", "2026-04-01", "E-2", 0),
        ("U2", "C", "A", "L-2", 1, "2026-04-01", "E-2", None, None, 1),
    ]),
    # U2's swap in E-2 keeps revision A: its period does not break.
    "unit_configuration_history": ("serial_number, part_number, revision, quantity, valid_from, valid_to, changed_by", [
        ("U1", "C", "A", 2, "2026-01-10", None, "mes"),
        ("U2", "C", "A", 1, "2026-02-10", None, "mes"),
        ("U3", "C", "A", 1, "2026-01-20", None, "mes"),
        ("U4", "C", "A", 1, "2026-03-05", None, "mes"),
        ("U5", "C", "A", 1, "2025-12-01", "2026-02-01", "mes"),
        ("U5", "C", "B", 1, "2026-02-01", None, "E-5"),
    ]),
    "service_events": ("event_id, serial_number, event_type, occurred_at, failed_part_number", [
        ("F-1", "U1", "failure", "2026-03-01", "C"),
        ("F-2", "U2", "failure", "2026-03-15", "C"),
        ("F-3", "U2", "failure", "2026-05-01", "C"),  # after L-1 left U2
        ("F-4", "U4", "failure", "2026-04-01", "C"),
        ("F-5", "U5", "failure", "2026-01-15", "C"),  # while U5 held revision A
        ("F-6", "U5", "failure", "2026-03-01", "C"),  # revision B: not this revision
    ]),
    "eco_impact": ("eco_number, serial_number, impact", [("ECO-9", "U1", "retrofit_pending"),
                                                         ("ECO-8", "U1", "retrofit_pending")]),
    "eco_affected_items": ("eco_number, part_number", [("ECO-9", "C"), ("ECO-8", "X")]),
}
TIMESTAMPS = {"installed_at", "removed_at", "valid_from", "valid_to", "occurred_at"}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    path = tmp_path_factory.mktemp("investigate") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'; CREATE SCHEMA thread")
    for table, (columns, rows) in TABLES.items():
        names = [c.strip() for c in columns.split(",")]
        types = ["TIMESTAMPTZ" if n in TIMESTAMPS else "DOUBLE" if n.startswith("quantity") else "VARCHAR"
                 for n in names]
        con.execute(f"CREATE TABLE thread.{table} ({', '.join(f'{n} {t}' for n, t in zip(names, types))})")
        con.executemany(f"INSERT INTO thread.{table} VALUES ({', '.join('?' * len(names))})", rows)
    con.close()
    return path


def rows(section, *columns):
    return [tuple(r[section.columns.index(c)] for c in columns) for r in section.rows]


def test_carriers_of_a_lot_split_across_units(warehouse):
    carriers, went = ask(warehouse, "carriers", "L-1")
    assert (carriers.title, went.title) == ("carriers", "where the pieces went")
    assert rows(carriers, "serial_number", "quantity_held", "removed_by", "carries_now") == [
        ("U1", 2, None, True), ("U3", 1, None, True), ("U2", 0, "E-2", False)]
    assert sorted(rows(went, "site", "status", "units", "pieces_installed", "pieces_carried_now")) == [
        ("S1", "scrapped", 1, 1, 1), ("S1", "shipped", 1, 2, 2), ("S2", "shipped", 1, 1, 0)]
    with pytest.raises(AskError, match=r"Unknown lot or serial number 'L-3'\. Did you mean"):
        ask(warehouse, "carriers", "L-3")


def test_investigate_a_lot(warehouse):
    suspects, rate, notify = ask(warehouse, "investigate", "C@A", lot="L-1")
    assert rows(suspects, "serial_number", "lot", "carries_now", "failures") == [
        ("U1", "L-1", True, 1), ("U3", "L-1", True, 0), ("U2", "L-1", False, 1)]  # F-3 came after L-1 left
    assert rows(rate, "population", "units", "failures", "failures_per_100_units") == [
        ("suspect", 3, 2, 66.67), ("rest of the revision", 2, 2, 100.0)]  # U4's F-4, U5's F-5 (not F-6: rev B)
    # in service and still carrying it: U1 only (U2's L-1 was replaced, U3 is scrapped)
    assert rows(notify, "serial_number", "customer_id", "pending_retrofits") == [("U1", "K1", "ECO-9")]


def test_an_installation_window_selects_installations_not_possession(warehouse):
    suspects, _, _ = ask(warehouse, "investigate", "C@A", lot="L-1", **{"from": "2026-01-15", "to": "2026-02-10"})
    # U1 carried L-1 through the window but got it before: the window cuts its interval, it is out.
    assert rows(suspects, "serial_number") == [("U3",), ("U2",)]  # --to is inclusive
    suspects, rate, _ = ask(warehouse, "investigate", "C@A", **{"from": "2026-03-01"})
    assert rows(suspects, "serial_number", "lot", "failures") == [("U4", None, 1)]
    # Without --lot, an installation is a run of holding the revision, with the lots fitted in it.
    suspects, _, _ = ask(warehouse, "investigate", "C@A", **{"from": "2026-02-01", "to": "2026-02-28"})
    assert rows(suspects, "serial_number", "lot", "failures") == [("U2", "L-1,L-2", 2)]
    # the rest: U1's F-1, U2's F-2 and F-3 (still revision A after L-1 left), U5's F-5
    assert rows(rate, "population", "units", "failures") == [("suspect", 1, 1), ("rest of the revision", 4, 4)]


def test_investigate_errors_are_clear(warehouse):
    with pytest.raises(AskError, match="No unit carries or carried lot or serial 'L-9' of part C"):
        ask(warehouse, "investigate", "C", lot="L-9")
    with pytest.raises(AskError, match=r"--from '2026-13-01' is not a date"):
        ask(warehouse, "investigate", "C", **{"from": "2026-13-01"})
    with pytest.raises(AskError, match="is after --to"):
        ask(warehouse, "investigate", "C", **{"from": "2026-03-01", "to": "2026-02-01"})
    with pytest.raises(AskError, match="`carriers` takes no --lot"):
        ask(warehouse, "carriers", "L-1", lot="L-1")
