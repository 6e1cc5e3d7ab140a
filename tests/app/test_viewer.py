"""AppTest: the case viewer fuses PET over MRI, follows the frame slider and both units."""

import re

import pytest
from streamlit.testing.v1 import AppTest

from tests.demo_store import ROOT

VIEWER = str(ROOT / "pages" / "viewer.py")


def _status(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Cursor"))


def _pet_value(at) -> float:
    return float(re.search(r"PET \*\*([-\d.e+]+) ", _status(at)).group(1))


def test_viewer_shows_fused_planes_and_follows_frames(demo_store):
    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    assert not at.exception
    assert any("Synthetic demo case" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1
    frame = at.slider(key="frame")
    assert frame.max > 20 and frame.value == frame.max
    late = _pet_value(at)
    frame.set_value(1).run()
    assert not at.exception
    assert any(c.value.startswith("Frame 1/") for c in at.caption)
    assert _pet_value(at) != pytest.approx(late)


def test_units_switch_scales_by_the_suv_factor(demo_store):
    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    assert at.radio(key="units").options == ["SUV", "Bq/ml"]
    suv = _pet_value(at)
    at.radio(key="units").set_value("Bq/ml").run()
    bq = _pet_value(at)
    assert not at.exception and "Bq/ml" in _status(at)
    # SUV = Bq/ml x weight / decay-corrected dose: a few kBq/ml is an SUV of order 1
    assert bq > 100 * suv > 0


def test_cursor_moves_in_millimetres(demo_store):
    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    before = _status(at)
    k = at.slider(key="cursor_k")
    k.set_value(k.value + 5).run()
    after = _status(at)
    z_before = float(re.search(r"\(([-\d.]+), ([-\d.]+), ([-\d.]+)\) mm", before).group(3))
    z_after = float(re.search(r"\(([-\d.]+), ([-\d.]+), ([-\d.]+)\) mm", after).group(3))
    assert z_after - z_before == pytest.approx(10.0)  # 5 voxels of the 2 mm MRI grid


@pytest.mark.parametrize("study", ["abc", "999", "-1"])
def test_a_bad_study_link_falls_back_to_the_first_case(demo_store, study):
    at = AppTest.from_file(VIEWER, default_timeout=60)
    at.query_params["study"] = study
    at.run()
    assert not at.exception
    assert at.selectbox(key="case").index == 0


def test_viewer_with_an_empty_store_says_so(empty_store):
    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    assert not at.exception
    assert any("No case to show" in i.value for i in at.info)


def _import_pet_without_dose(tmp_path):
    import numpy as np

    from core.cases.repository import CaseRepository
    from core.imaging import DynamicVolume
    from core.imaging.nifti import write_nifti

    data = np.random.default_rng(0).random((12, 12, 10, 3)).astype(np.float32) * 1000
    pet = DynamicVolume(data, np.diag([3.0, 3.0, 3.0, 1.0]), "PT", "Bq/ml",
                        frame_start_s=np.array([0.0, 60.0, 120.0]), frame_duration_s=np.full(3, 60.0))
    path = write_nifti(pet, tmp_path / "nodose_pet.nii.gz")
    repo = CaseRepository()
    return repo, repo.import_series(path, pseudonym="NODOSE-1", role="dynamic_pet")


def test_a_stored_file_gone_missing_is_reported_not_crashed(empty_store, tmp_path):
    repo, series = _import_pet_without_dose(tmp_path)
    repo.resolve(series.path).unlink()
    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    assert not at.exception
    assert at.error and series.path.split("/")[-1] in at.error[0].value


def test_pet_without_dose_shows_bq_per_ml_and_says_why(empty_store, tmp_path):
    _import_pet_without_dose(tmp_path)

    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    assert not at.exception
    assert at.radio(key="units").options == ["Bq/ml"]
    assert any(c.value.startswith("SUV unavailable:") for c in at.sidebar.caption)
    assert "Bq/ml" in _status(at)


def test_switching_cases_starts_at_the_new_lesion_on_the_last_frame(demo_store):
    import numpy as np

    from core.cases.repository import CaseRepository

    at = AppTest.from_file(VIEWER, default_timeout=60).run()
    at.slider(key="frame").set_value(1).run()
    at.selectbox(key="case").select_index(1).run()
    assert not at.exception
    assert at.query_params["study"] in (["2"], "2")
    assert at.slider(key="frame").value == at.slider(key="frame").max
    repo = CaseRepository()
    lesion_mm = repo.load_mask(repo.get_case(2).mask_by_name("tumour").id).centroid_mm()
    cursor_mm = np.array([float(v) for v in re.search(r"\(([-\d.]+), ([-\d.]+), ([-\d.]+)\) mm", _status(at)).groups()])
    assert np.all(np.abs(cursor_mm - lesion_mm) <= 1.0 + 1e-6)   # within half of a 2 mm voxel per axis
