"""End to end in Chromium: the AI diagnosis page gives the opinion, draws the attribution over the
fused slice with its sanity verdict, shows the evidence in 3D and the cohort's label-efficiency plot."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def test_diagnosis_page_opinion_explanation_3d_and_cohort(server, page):
    page.goto(server)
    wait_idle(page)
    page.get_by_role("link", name="AI diagnosis").click()
    page.get_by_role("heading", name="AI diagnosis").wait_for(timeout=60_000)
    wait_idle(page, timeout_ms=300_000)
    metric = page.locator("[data-testid='stMetric']").filter(has_text="P(progression), calibrated")
    metric.wait_for(timeout=300_000)
    value = float(metric.locator("[data-testid='stMetricValue']").inner_text())
    assert 0.0 <= value <= 1.0
    slice_chart = page.locator("[data-testid='stPlotlyChart']").filter(has_text="slice").first
    slice_chart.locator(".heatmaplayer, .hm, image").first.wait_for(state="attached", timeout=60_000)
    verdict = page.locator("[data-testid='stAlert']").filter(has_text="Sanity check")
    assert verdict.count() >= 1
    page.screenshot(path=str(ARTIFACTS / "diagnosis_explanation.png"), full_page=True)

    page.get_by_role("tab", name="3D").click()
    scene = page.locator("[data-testid='stPlotlyChart']").filter(has_text="tumour").last
    scene.locator(".gl-container, canvas").first.wait_for(state="attached", timeout=60_000)

    page.get_by_role("tab", name="Cohort evidence").click()
    wait_idle(page, timeout_ms=120_000)
    curve = page.locator("[data-testid='stPlotlyChart']").filter(has_text="labelled patients").first
    curve.locator(".scatterlayer .trace").first.wait_for(state="attached", timeout=60_000)
    legend = " ".join(curve.locator(".legend .legendtext").all_text_contents())
    assert "CNN" in legend and "Radiomics" in legend
    page.screenshot(path=str(ARTIFACTS / "diagnosis_cohort.png"), full_page=True)
    assert not page.locator("[data-testid='stException']").count()
