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


def test_upload_a_dicom_zip_creates_a_deidentified_case(server, page, tmp_path):
    import zipfile

    import numpy as np

    from core.imaging import Volume
    from core.imaging.dicom import write_dicom_series

    mri = Volume(np.random.default_rng(3).random((24, 20, 12)).astype(np.float32) * 500,
                 np.diag([2.0, 2.0, 3.0, 1.0]), "MR")
    files = write_dicom_series(mri, tmp_path / "t1", patient_name="Musterfrau^Erika", patient_id="PID-889977",
                               series_description="T1 MPRAGE", seed=11)
    upload = tmp_path / "t1_series.zip"
    with zipfile.ZipFile(upload, "w") as zf:
        for f in files:
            zf.write(f, f.name)

    page.goto(server)
    wait_idle(page)
    page.get_by_text("Import images (", exact=False).click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(upload))
    page.get_by_text("t1_series.zip").first.wait_for()
    page.get_by_label("Pseudonym (leave empty to create one)").fill("E2E-UPLOAD-1")
    page.get_by_label("Pseudonym (leave empty to create one)").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    success = page.locator("[data-testid='stAlertContentSuccess']").first
    success.wait_for(timeout=60_000)
    assert "Imported 1 series" in success.inner_text()
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "worklist_upload_dicom.png"), full_page=True)
    page.locator("[role=gridcell]", has_text="E2E-UPLOAD-1").first.wait_for(state="attached")
    assert not page.locator("[role=gridcell]", has_text="Musterfrau").count()
    assert not page.locator("[data-testid='stException']").count()


def test_upload_with_one_bad_file_says_which_series_made_it(server, page, tmp_path):
    import numpy as np

    from core.imaging import Volume
    from core.imaging.nifti import write_nifti

    good = write_nifti(Volume(np.random.default_rng(4).random((10, 10, 6)).astype(np.float32) * 300,
                              np.diag([2.0, 2.0, 2.0, 1.0]), "MR"), tmp_path / "a_flair.nii.gz")
    bad = tmp_path / "b_pet.nii.gz"
    bad.write_bytes(good.read_bytes()[:60])  # cut off in transfer
    page.goto(server)
    wait_idle(page)
    page.get_by_text("Import images (", exact=False).click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files([str(good), str(bad)])
    page.get_by_text("b_pet.nii.gz").first.wait_for()
    page.get_by_role("button", name="Import", exact=True).click()
    page.locator("[data-testid='stAlertContentError']").first.wait_for(timeout=60_000)
    assert "b_pet.nii.gz: " in page.locator("[data-testid='stAlertContentError']").first.inner_text()
    warning = page.locator("[data-testid='stAlertContentWarning']").first.inner_text()
    assert "1 series of this upload were imported" in warning
    assert not page.locator("[data-testid='stException']").count()
