"""End to end in Chromium: worklist -> open a case -> move the frame slider -> the image changes."""

from __future__ import annotations

import gzip

import pytest

from tests.browser import ARTIFACTS, wait_idle

pytestmark = pytest.mark.e2e


def _frame_caption(page) -> str:
    return page.get_by_text("Frame ", exact=False).filter(has_text="min p.i.").first.inner_text()


def test_open_case_and_change_frame(server, page):
    page.goto(server)
    wait_idle(page)
    assert page.get_by_role("heading", name="Worklist").is_visible()
    page.locator("[data-testid='stDataFrame']").wait_for()
    page.locator("[role=gridcell]", has_text="DEMO-").first.wait_for(state="attached")
    page.get_by_role("button", name="Open in viewer").click()
    page.wait_for_url("**/viewer**")
    wait_idle(page)
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.locator(".imagelayer image").first.wait_for(state="attached", timeout=30_000)
    page.wait_for_timeout(500)
    before_caption = _frame_caption(page)
    before = chart.screenshot()
    page.screenshot(path=str(ARTIFACTS / "viewer_last_frame.png"), full_page=True)

    slider = page.locator("[data-testid='stSlider']").filter(has_text="Frame").get_by_role("slider")
    slider.focus()
    page.keyboard.press("Home")
    page.wait_for_function("() => [...document.querySelectorAll('p, span, div')]"
                           ".some(e => /^Frame 1\\//.test(e.innerText))", timeout=30_000)
    wait_idle(page)
    page.wait_for_timeout(500)
    after = chart.screenshot()
    page.screenshot(path=str(ARTIFACTS / "viewer_frame1.png"), full_page=True)

    assert _frame_caption(page).startswith("Frame 1/") and before_caption != _frame_caption(page)
    assert before != after, "the fused image did not change when the frame changed"
    assert not page.locator("[data-testid='stException']").count()


def test_corrupt_upload_shows_error_and_app_keeps_running(server, page, tmp_path):
    bad = tmp_path / "broken_pet.nii.gz"
    bad.write_bytes(gzip.compress(b"\x5c\x01" + b"\x00" * 600)[:80])  # truncated gzip
    page.goto(server)
    wait_idle(page)
    page.get_by_text("Import images (", exact=False).click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bad))
    page.get_by_text("broken_pet.nii.gz").first.wait_for()
    page.get_by_role("button", name="Import", exact=True).click()
    wait_idle(page)
    error = page.locator("[data-testid='stAlertContentError']").first
    error.wait_for(timeout=30_000)
    message = error.inner_text()
    assert "broken_pet.nii.gz: " in message and "theraboard-upload" not in message
    page.screenshot(path=str(ARTIFACTS / "worklist_upload_error.png"), full_page=True)
    assert page.get_by_role("heading", name="Worklist").is_visible()
    assert not page.locator("[data-testid='stException']").count()
