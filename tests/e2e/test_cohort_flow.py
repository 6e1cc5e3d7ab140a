"""End to end in Chromium: the radiomics cohort page computes the demo cases' features,
explains one case, and shows the shipped baseline's held-out evaluation."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def test_cohort_page_features_explanation_and_baseline(server, page):
    page.goto(server)
    wait_idle(page)
    page.get_by_role("link", name="Radiomics cohort").click()
    page.get_by_role("heading", name="Radiomics cohort").wait_for(timeout=60_000)
    wait_idle(page, timeout_ms=120_000)
    compute = page.get_by_role("button", name="Compute radiomics")
    if compute.count():
        compute.click()
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for(timeout=240_000)
    wait_idle(page, timeout_ms=240_000)
    waterfall = page.locator("[data-testid='stPlotlyChart']").first
    waterfall.locator(".waterfalllayer .trace, .barlayer .trace").first.wait_for(state="attached", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "cohort_cases.png"), full_page=True)

    page.get_by_role("tab", name="Shipped baseline").click()
    page.get_by_role("heading", name="Radiomics baseline: true progression vs radionecrosis").wait_for(timeout=60_000)
    roc = page.locator("[data-testid='stPlotlyChart']").filter(has_text="Sensitivity").first
    roc.locator(".scatterlayer .trace").first.wait_for(state="attached", timeout=60_000)
    legend = " ".join(roc.locator(".legend .legendtext").all_text_contents())
    assert "AUC" in legend and "Logistic regression" in legend
    page.get_by_text("External test (unseen site)").click()
    wait_idle(page, timeout_ms=120_000)
    page.screenshot(path=str(ARTIFACTS / "cohort_baseline.png"), full_page=True)
    assert not page.locator("[data-testid='stException']").count()
