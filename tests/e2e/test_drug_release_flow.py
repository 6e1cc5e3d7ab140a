"""End to end in Chromium: drug-release page -> compute a liposome study -> maps, time slider, distance, inverse."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def test_compute_a_liposome_study_and_read_every_tab(server, page):
    page.goto(server)
    wait_idle(page)
    page.get_by_role("link", name="Drug release").click()
    wait_idle(page)
    assert page.get_by_role("heading", name="Drug release").is_visible()
    # the liposome study, classical inverse only (the I-PINN takes minutes on a CPU)
    page.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="liposomal doxorubicin", exact=False).click()
    wait_idle(page)
    methods = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect'] input").first
    methods.click()
    methods.press("Backspace")                                       # drops the last chip: the I-PINN
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_role("button", name="Compute the drug release").click()
    page.get_by_role("tab", name="Inverse").wait_for(timeout=300_000)
    wait_idle(page, timeout_ms=120_000)
    assert not page.get_by_role("button", name="Compute the drug release").count()   # read back from the store
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".heatmaplayer, .imagelayer").first.wait_for(state="attached", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "drug_release_maps.png"), full_page=True)
    page.get_by_role("tab", name="Distance from vessels").click()
    page.get_by_text("50 µm", exact=False).first.wait_for(state="attached", timeout=30_000)
    page.get_by_role("tab", name="Inverse").click()
    page.get_by_text("truth", exact=False).first.wait_for(state="attached", timeout=30_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "drug_release_inverse.png"), full_page=True)
    assert not page.locator("[data-testid='stException']").count()
    assert not page.locator("[data-testid='stAlertContentError']").count()
