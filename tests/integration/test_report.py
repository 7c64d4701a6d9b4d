"""`thread report`: one static HTML file with the key figures and its charts."""

from __future__ import annotations

import base64
import re

from orchestration.report import CHARTS, generate


def test_report_is_a_self_contained_page_with_every_chart(built_small, tmp_path):
    index = generate(built_small / "warehouse.duckdb", tmp_path / "report")
    page = index.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == len(CHARTS) == 7
    for b64 in images:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    for title, _ in CHARTS:
        assert title in page
    assert "http" not in page.replace("http-equiv", ""), "opens without a server or network"


def test_each_chart_has_its_numbers_and_the_page_says_how_current_it_is(built_small, tmp_path):
    from tests.helpers import query

    page = generate(built_small / "warehouse.duckdb", tmp_path / "report").read_text()
    assert page.count("<table>") == len(CHARTS)
    newest = query(built_small / "warehouse.duckdb", "select max(occurred_at) from thread.service_events")[0][0]
    match = re.search(r"Data as of (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", page)
    assert match and match.group(1) >= f"{newest:%Y-%m-%d %H:%M}"


def test_failure_rates_carry_an_exact_interval_and_rank_by_its_lower_end():
    from orchestration.report import rate_interval

    # Garwood's exact Poisson limits (tabulated): 0 events -> [0, 3.689]; 10 events -> [4.795, 18.39].
    low, high = rate_interval(0, 100)
    assert low == 0 and abs(high - 3.689) < 0.01
    low, high = rate_interval(10, 100)
    assert abs(low - 4.795) < 0.01 and abs(high - 18.39) < 0.01
    # One failure in one unit is a rate of 100 per 100 whose interval starts near 2.5: below a
    # revision with 600 failures in 1,400 units, whose interval starts near 40.
    assert rate_interval(1, 1)[0] < rate_interval(600, 1400)[0]
