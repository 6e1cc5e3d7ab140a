"""End to end in Chromium: open a demo case on the PET kinetics page, see the TAC chart and the biopsy target."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def test_kinetics_page_shows_curves_and_target(server, page):
    page.goto(server)  # through the entry page, as a user arrives (see the note in the README on deep links)
    wait_idle(page)
    page.get_by_role("link", name="PET kinetics").click()
    page.get_by_role("heading", name="PET kinetics").wait_for(timeout=60_000)
    # the first visit runs the analysis (progress shown), then draws the curves
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".scatterlayer .trace").first.wait_for(state="attached", timeout=240_000)
    wait_idle(page, timeout_ms=120_000)
    legend = " ".join(chart.locator(".legend .legendtext").all_text_contents())
    assert "tumour" in legend and "background" in legend
    page.screenshot(path=str(ARTIFACTS / "kinetics_curves.png"), full_page=True)

    page.get_by_role("tab", name="Maps and target").click()
    target = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="Biopsy target").first
    target.wait_for(timeout=30_000)
    assert "mm (scanner RAS)" in target.inner_text()
    fused = page.locator("[data-testid='stPlotlyChart']").filter(has=page.locator(".imagelayer image")).first
    fused.locator(".imagelayer image").first.wait_for(state="attached", timeout=30_000)
    fused.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    fused.screenshot(path=str(ARTIFACTS / "kinetics_target.png"))

    page.get_by_role("tab", name="3D").click()
    page.locator("[data-testid='stPlotlyChart'] .gl-container").first.wait_for(state="attached", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "kinetics_3d.png"), full_page=True)
    assert not page.locator("[data-testid='stException']").count()
