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
