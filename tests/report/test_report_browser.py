"""The normness report in a real browser (headless Chromium, the Debian package `chromium`): after the page script
ran, the originals and rewrites are in the DOM, the sort and flag controls (driven by the URL fragment, as a link
or reload would) reorder and filter the rows, the gzipped data of a large report decodes, and a screenshot is
taken. Skips, saying why, where no Chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from socialsynth.report.build import build_report
from tests.report.samples import norms_record, write_norms_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (apt-get install chromium)")

# rating at level 5 of each comment (the primary judge's); comment 2 has a refused rewrite at level 3
LEVEL5 = [3.0, 4.8, 1.2, 4.1, 2.2, 3.6]
ITEM = re.compile(r'<div class="item" data-id="([^"]+)"')


def browse(page, tmp_path, *args: str, fragment: str = "") -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args,
               page.as_uri() + fragment]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def dom(page, tmp_path, fragment: str = "") -> str:
    proc = browse(page, tmp_path, "--dump-dom", fragment=fragment)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    assert 'data-ready="1"' in proc.stdout  # the page script finished
    return proc.stdout


@pytest.fixture
def norms_page(tmp_path):
    records = [norms_record(i, [1.0, 2.0, 2.5, 3.0, top], refusal_at="3" if i == 2 else None)
               for i, top in enumerate(LEVEL5)]
    folder = write_norms_run(tmp_path / "out", records)
    return build_report(folder, tmp_path / "report.html"), records


def list_id(page) -> str:
    return re.search(r'<section class="browser" id="([^"]+)"', page.read_text(encoding="utf-8")).group(1)


def test_page_renders_originals_and_rewrites(norms_page, tmp_path):
    page, records = norms_page
    html = dom(page, tmp_path)
    assert ITEM.findall(html) == [r["id"] for r in records]
    for rec in records:
        assert rec["original_comment"] in html and rec["5"] in html
    assert "<ins>rewrite 0 at level 5:</ins>" in html  # the word diff against the original
    falling = sum(top <= 3.0 for top in LEVEL5)  # level 5 rated no higher than level 4 (3.0)
    assert html.count('<span class="badge mark">ladder does not rise</span>') == falling


def test_sort_control_reorders_rows(norms_page, tmp_path):
    page, records = norms_page
    lid = list_id(page)
    html = dom(page, tmp_path, fragment=f"#{lid}.sort=r5&{lid}.dir=desc")
    expected = [r["id"] for _, r in sorted(zip(LEVEL5, records, strict=True), key=lambda p: -p[0])]
    assert ITEM.findall(html) == expected
    ascending = dom(page, tmp_path, fragment=f"#{lid}.sort=r5")
    assert ITEM.findall(ascending) == expected[::-1]


def test_flag_filter_and_level_column(norms_page, tmp_path):
    page, _ = norms_page
    lid = list_id(page)
    html = dom(page, tmp_path, fragment=f"#{lid}.flag=refusal&{lid}.col=3")
    assert ITEM.findall(html) == ["c2"]
    shown = re.findall(r'<div class="cell[^"]*" data-label="([^"]+)"', html)
    assert shown == ["original", "3"]


def test_gzipped_data_decodes_in_the_browser(norms_page, tmp_path):
    _, records = norms_page
    packed = build_report(tmp_path / "out", tmp_path / "packed.html", compress=True)
    assert 'data-encoding="gzip+base64"' in packed.read_text(encoding="utf-8")
    assert ITEM.findall(dom(packed, tmp_path)) == [r["id"] for r in records]


def test_screenshot(norms_page, tmp_path):
    page, _ = norms_page
    shot = tmp_path / "shot.png"
    proc = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
