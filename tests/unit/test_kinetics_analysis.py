"""core.kinetics.analysis on a stored demo case: computed once, stored, reloaded, exported."""

from __future__ import annotations

import io
import zipfile

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from core.cases.repository import CaseRepository
from core.errors import InputError, MaskError
from core.kinetics.analysis import (ANALYSIS_KIND, KineticsSettings, analyse_case, export_csv, export_nifti_zip,
                                   find_analysis, load_analysis)
from tests.demo_store import build_demo_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinetics-store")
    env = build_demo_store(root, n=1, seed=3)
    repo = CaseRepository(env["THERABOARD_DB_URL"], env["THERABOARD_DATA_DIR"])
    study = repo.list_cases()[0].study_id
    return repo, study, root


@pytest.fixture(scope="module")
def analysis(store):
    repo, study, _ = store
    messages = []
    result = analyse_case(repo, study, progress=lambda f, m: messages.append((f, m)))
    assert messages[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in messages)
    return result


def test_analysis_holds_every_part_the_page_shows(analysis):
    a = analysis
    assert a.tracer == "FDOPA" and a.unit == "SUV"
    assert {"tumour", "background", "cluster 1", "striatum"} <= set(a.tacs)
    assert a.tacs["tumour"].n_frames == a.frame_start_min.size == 28
    assert a.static["tbr_max"] > a.static["tbr_mean"] > 0
    assert a.input_note.startswith("arterial input") and "blood.tsv" in a.input_note
    assert set(a.fits) == {"1tcm", "2tcm_irr", "2tcm", "srtm", "patlak", "logan", "patlak_ref", "logan_ref"}
    assert a.static["tsr_max"] == pytest.approx(a.static["uptake_max"] / a.static["striatum_mean"])
    assert all(a.fits[m]["tumour"]["ok"] for m in ("1tcm", "2tcm_irr", "srtm"))
    curve = np.asarray(a.model_curves["2tcm_irr"]["tumour"])
    measured = a.tacs["tumour"].mean
    assert np.sqrt(np.mean((curve - measured) ** 2)) < 0.1 * measured.max()   # the fit follows the curve
    assert a.readings and all(r["source"] for r in a.readings)


def test_biopsy_target_lies_in_the_aggressive_cluster(analysis):
    ijk = tuple(analysis.target["ijk"])
    assert analysis.maps["mask_aggressive"].data[ijk] == 1
    assert analysis.maps["mask_tumour"].data[ijk] == 1
    assert analysis.maps["mask_clusters"].data[ijk] == 1
    xyz = analysis.maps["mask_tumour"].voxel_to_mm(ijk)
    assert np.allclose(xyz, analysis.target["xyz_mm"], atol=1e-3)


def test_voxel_map_covers_the_brain(analysis):
    ki = analysis.maps["2tcm_irr_Ki"].data
    brain = analysis.maps["mask_brain"].data > 0
    assert np.isfinite(ki[brain]).mean() > 0.95 and np.isnan(ki[~brain]).all()
    tumour = analysis.maps["mask_tumour"].data > 0
    # the ROI fit of the tumour's mean curve and the voxel fits describe the same tissue
    assert np.nanmedian(ki[tumour]) == pytest.approx(analysis.fits["2tcm_irr"]["tumour"]["Ki"], rel=0.5)


def test_result_is_stored_and_reused(store, analysis):
    repo, study, _ = store
    record = find_analysis(repo, study)
    assert record is not None and record.id == analysis.result_id and record.kind == ANALYSIS_KIND
    again = load_analysis(repo, record)
    assert np.array_equal(again.tacs["tumour"].mean, analysis.tacs["tumour"].mean)
    assert np.array_equal(again.maps["mask_clusters"].data, analysis.maps["mask_clusters"].data)
    assert np.allclose(again.maps["2tcm_irr_Ki"].affine, analysis.maps["2tcm_irr_Ki"].affine)
    assert again.target == analysis.target and again.settings == analysis.settings
    assert again.static == analysis.static and again.fits == analysis.fits and again.readings == analysis.readings
    assert find_analysis(repo, study, KineticsSettings(cluster_method="gmm")) is None


def test_exports_are_readable(analysis, tmp_path):
    with zipfile.ZipFile(io.BytesIO(export_csv(analysis))) as zf:
        params = pd.read_csv(zf.open("parameters.csv"))
        tacs = pd.read_csv(zf.open("tacs.csv"))
    assert {"region", "group", "parameter", "value"} <= set(params.columns)
    assert ((params.parameter == "tbr_max") & (params.region == "tumour")).any()
    assert len(tacs) == 28 and "tumour mean (SUV)" in tacs.columns
    with zipfile.ZipFile(io.BytesIO(export_nifti_zip(analysis))) as zf:
        names = zf.namelist()
        assert "2tcm_irr_Ki.nii.gz" in names and "mask_aggressive.nii.gz" in names
        zf.extract("mask_aggressive.nii.gz", tmp_path)
    img = nib.load(tmp_path / "mask_aggressive.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj) > 0, analysis.maps["mask_aggressive"].data > 0)


def test_without_input_function_the_map_falls_back_to_srtm(store):
    repo, study, _ = store
    result = analyse_case(repo, study, KineticsSettings(input_function="none"), store=False)
    assert "srtm" in result.fits and "2tcm_irr" not in result.fits
    assert "srtm_BPND" in result.maps and any("SRTM" in n for n in result.notes)


def test_population_input_is_used_on_request(store):
    repo, study, _ = store
    result = analyse_case(repo, study, KineticsSettings(input_function="population", map_model="none"), store=False)
    assert result.input_note.startswith("population input")
    assert result.fits["2tcm_irr"]["tumour"]["ok"]


def test_bad_settings_and_cases_are_refused(store, tmp_path):
    repo, study, _ = store
    with pytest.raises(InputError, match="unknown input function"):
        KineticsSettings(input_function="arterial-ish")
    with pytest.raises(InputError, match="BTV threshold"):
        KineticsSettings(btv_threshold=0.5)
    with pytest.raises(MaskError, match="no mask called 'cerebellum'"):
        analyse_case(repo, study, KineticsSettings(background="cerebellum"), store=False)
    # a study with a PET but no tumour mask
    pet_rec = repo.get_case(study).pet
    (tmp_path / "pet.nii.gz").write_bytes(repo.resolve(pet_rec.path).read_bytes())
    (tmp_path / "pet.json").write_bytes(repo.resolve(pet_rec.sidecar_path).read_bytes())
    new = repo.import_series(tmp_path / "pet.nii.gz", role="dynamic_pet", pseudonym="NO-MASK")
    with pytest.raises(MaskError, match="no tumour mask"):
        analyse_case(repo, new.study_id, store=False)
    n_results = len(repo.list_results(new.study_id))
    assert n_results == 0  # nothing half-written


def test_uploaded_input_csv_is_stored_and_used(store, analysis, tmp_path):
    from core.kinetics.analysis import INPUT_FILE_KIND, store_input_csv

    repo, study, _ = store
    pet = repo.load_series(repo.get_case(study).pet.id)
    inp = analysis.input_function
    bq = np.asarray(inp["plasma"]) / pet.suv_factor  # the analysis keeps its input in SUV
    csv = tmp_path / "my_input.csv"
    csv.write_text("time_min,plasma_kBq/ml\n" + "".join(f"{t:.5f},{c / 1000:.6f}\n" for t, c in
                                                         zip(inp["time_min"], bq)), encoding="utf-8")
    digest = store_input_csv(repo, study, csv)
    assert store_input_csv(repo, study, csv) == digest                      # stored once
    assert len(repo.list_results(study, INPUT_FILE_KIND)) == 1
    result = analyse_case(repo, study, KineticsSettings(input_function="file", input_file=digest, map_model="none"),
                          store=False)
    assert result.input_note.startswith("file input") and "my_input.csv" in result.input_note
    # the same curve as the arterial input, so the same fit
    assert result.fits["2tcm_irr"]["tumour"]["Ki"] == pytest.approx(analysis.fits["2tcm_irr"]["tumour"]["Ki"],
                                                                     rel=1e-3)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,plasma\n0,1\n1,2\n2,3\n", encoding="utf-8")
    with pytest.raises(InputError, match="unit"):
        store_input_csv(repo, study, bad)
    assert len(repo.list_results(study, INPUT_FILE_KIND)) == 1             # nothing stored


def test_reference_region_and_static_window_can_be_chosen(store, analysis):
    repo, study, _ = store
    result = analyse_case(repo, study, KineticsSettings(reference="cerebellum", static_window_min=(20, 30),
                                                        map_model="none"), store=False)
    assert result.static["static_window_min"] == [20.0, 30.0]
    assert result.static["tbr_max"] != pytest.approx(analysis.static["tbr_max"])
    srtm = result.fits["srtm"]["tumour"]
    assert srtm["ok"] and srtm["R1"] != pytest.approx(analysis.fits["srtm"]["tumour"]["R1"])
    with pytest.raises(InputError, match="static window"):
        KineticsSettings(static_window_min=(30, 10))
