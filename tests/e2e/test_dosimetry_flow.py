"""End to end in Chromium: dosimetry page -> compute a therapy case -> dose map, organs, method comparison."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def test_compute_and_compare_dose_methods(server, page):
    page.goto(server)
    wait_idle(page)
    page.get_by_role("link", name="Dosimetry").click()
    wait_idle(page)
    assert page.get_by_role("heading", name="Dosimetry").is_visible()
    page.get_by_role("button", name="Compute the dosimetry").click()
    page.get_by_text("MBq administered", exact=False).first.wait_for(timeout=300_000)
    wait_idle(page, timeout_ms=120_000)
    assert not page.get_by_role("button", name="Compute the dosimetry").count()   # read back from the store
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".heatmaplayer, .contourlayer, .imagelayer").first.wait_for(state="attached", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "dosimetry_dose_map.png"), full_page=True)
    page.get_by_role("tab", name="Organs and limits").click()
    page.locator("[role=gridcell]", has_text="BED 40 Gy").first.wait_for(state="attached", timeout=30_000)
    page.get_by_role("tab", name="Compare methods").click()
    page.get_by_text("Gamma pass rate", exact=False).first.wait_for(timeout=120_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "dosimetry_compare.png"), full_page=True)
    assert not page.locator("[data-testid='stException']").count()
    assert not page.locator("[data-testid='stAlertContentError']").count()
