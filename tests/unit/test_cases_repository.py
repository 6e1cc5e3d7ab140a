"""Case repository on SQLite and PostgreSQL: imports, records, masks, labels, results,
worklist status, cohorts, audit, and atomicity of failed imports."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

import core.cases.repository as repository_module
from core.cases.records import CASE_COLUMNS
from core.cases.repository import CaseNotFoundError, CaseRepository
from core.errors import (
    CaseStoreError,
    DicomSeriesError,
    InputError,
    GeometryError,
    InvalidVoxelError,
    MaskError,
    TimingError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from core.imaging.volume import DynamicVolume, Volume
from tests.support import case_data as cd


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input files, written once per module: good ones and one of each kind of bad one."""
    root = tmp_path_factory.mktemp("case-inputs")
    pet = cd.pet_dynamic()
    files = {
        "pet": cd.write_nifti_file(pet, root / "good" / "sub-01_pet.nii.gz"),
        "t1": cd.write_nifti_file(cd.mri(), root / "good" / "sub-01_T1w.nii.gz"),
        "other_grid": cd.write_nifti_file(
            Volume(np.ones((3, 3, 3), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]), "MR"),
            root / "good" / "sub-01_FLAIR.nii.gz"),
        "mask": cd.write_nifti_file(cd.mask_on(pet), root / "good" / "sub-01_desc-tumour_mask.nii.gz"),
    }
    bad = root / "bad"
    bad.mkdir()
    files["corrupt_gzip"] = cd.truncated_gzip(files["pet"], bad / "corrupt_pet.nii.gz")
    files["not_an_image"] = cd.text_as_nifti(bad / "letter.nii.gz")
    files["no_timing"] = cd.nifti_4d_without_timing(bad / "dyn_no_timing.nii.gz")
    files["nan_voxels"] = cd.nifti_with_nan(bad / "nan_T1w.nii.gz")
    (bad / "notes.txt").write_text("not an image")
    files["text_file"] = bad / "notes.txt"
    mixed = bad / "mixed_dicom"
    cd.write_identifying_dicom(pet, mixed / "a", seed=1)
    cd.write_identifying_dicom(cd.pet_dynamic(seed=3), mixed / "b", seed=2)
    files["mixed_dicom"] = mixed
    damaged_zip = bad / "damaged.zip"
    cd.zip_folder(mixed / "a", root / "tmp.zip")
    damaged_zip.write_bytes((root / "tmp.zip").read_bytes()[:300])
    files["damaged_zip"] = damaged_zip
    files["missing"] = bad / "does_not_exist.nii.gz"
    n = pet.n_frames
    files["frame_count_mismatch"] = cd.pet_with_sidecar_timing(
        files["pet"], bad / "count_pet.nii.gz", [0.0, 60.0], [60.0, 60.0])
    files["non_monotonic_frames"] = cd.pet_with_sidecar_timing(
        files["pet"], bad / "order_pet.nii.gz", [120.0, 0.0, 60.0][:n], [60.0] * n)
    files["zero_spacing"] = cd.nifti_with_affine(bad / "flat_T1w.nii.gz", np.diag([2.0, 0.0, 3.0, 1.0]))
    singular = np.array([[2.0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    files["singular_affine"] = cd.nifti_with_affine(bad / "singular_T1w.nii.gz", singular)
    files["missing_slice"] = cd.dicom_missing_slice(cd.mri(), bad / "missing_slice")
    files["uneven_spacing"] = cd.dicom_uneven_spacing(cd.mri(), bad / "uneven_spacing")
    return files


def _snapshot(repo: CaseRepository):
    counts = repo.counts()
    counts.pop("audit_events")
    return counts, repo.store.files()


# ---------------------------------------------------------------- imports and records


def test_import_nifti_round_trip(case_repo, inputs):
    assert case_repo.is_empty()
    progress = []
    rec = case_repo.import_series(inputs["pet"], pseudonym="P001", user="dr_a",
                                  progress=lambda f, m: progress.append(f))
    assert not case_repo.is_empty()
    assert (rec.modality, rec.role, rec.original_format) == ("PT", "dynamic_pet", "nifti")
    assert rec.path.startswith(f"store/{rec.sha256[:2]}/{rec.sha256}") and rec.path.endswith(".nii.gz")
    assert rec.geometry["shape"] == [6, 5, 4, 3] and rec.spacing_mm == (2.0, 2.0, 3.0)
    assert rec.timing["frame_start_s"] == [0.0, 60.0, 180.0] and rec.n_frames == 3
    assert rec.dose["injected_activity_bq"] == pytest.approx(185e6) and rec.units == "Bq/ml"
    assert len(rec.original_files) == 2  # image + sidecar
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    for relpath in (rec.path, rec.sidecar_path, *rec.original_files):
        case_repo.store.verify(relpath)

    vol = case_repo.load_series(rec.id, verify=True)
    original = cd.pet_dynamic()
    assert isinstance(vol, DynamicVolume)
    np.testing.assert_allclose(vol.data, original.data, rtol=1e-6)
    np.testing.assert_allclose(vol.affine, original.affine)
    np.testing.assert_allclose(vol.frame_duration_s, original.frame_duration_s)
    assert vol.suv_factor == pytest.approx(72.5e3 / 185e6)
    assert vol.meta["series_id"] == rec.id and str(case_repo.data_dir) in vol.source
    assert case_repo.get_series(rec.id) == rec


def test_series_join_a_study_and_roles_are_checked(case_repo, inputs):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P002")
    t1 = case_repo.import_series(inputs["t1"], study_id=pet.study_id)
    assert (t1.role, t1.study_id, t1.modality) == ("t1", pet.study_id, "MR")
    with pytest.raises(CaseStoreError, match="belongs to P002"):
        case_repo.import_series(inputs["t1"], study_id=pet.study_id, pseudonym="SOMEONE-ELSE")
    with pytest.raises(CaseStoreError, match="already series"):
        case_repo.import_series(inputs["t1"], study_id=pet.study_id)
    with pytest.raises(CaseStoreError, match="time frames"):
        case_repo.import_series(inputs["pet"], role="static_pet")
    with pytest.raises(CaseStoreError, match="not known"):
        case_repo.import_series(inputs["t1"], role="xray")
    with pytest.raises(CaseStoreError, match="pseudonym"):
        case_repo.import_series(inputs["t1"], pseudonym="Doe, John")
    other = case_repo.import_series(inputs["t1"])  # generated pseudonym, new study
    assert other.study_id != pet.study_id
    assert case_repo.get_case(other.study_id).pseudonym.startswith("TB-")
    case = case_repo.get_case(pet.study_id)
    assert [s.role for s in case.series] == ["dynamic_pet", "t1"]
    assert case.series_by_role("t1") == t1 and case.series_by_role("ct") is None


def test_nifti_in_a_zip(case_repo, inputs, tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (inputs["pet"], inputs["pet"].with_name("sub-01_pet.json")):
            zf.write(path, f"export/{path.name}")
    rec = case_repo.import_series(archive, pseudonym="P007")
    assert (rec.original_format, rec.role) == ("nifti", "dynamic_pet")
    assert rec.original_names == ("image.nii.gz", "image.json")
    assert rec.dose["body_weight_kg"] == 72.5


def test_identifying_sidecar_keys_are_not_stored(case_repo, inputs, tmp_path):
    image = tmp_path / "sub-02_pet.nii.gz"
    shutil.copy(inputs["pet"], image)
    sidecar = json.loads(inputs["pet"].with_name("sub-01_pet.json").read_text())
    sidecar.update({"PatientName": "Doe^Johnathan", "PatientID": "MRN-4711-0815",
                    "InstitutionName": "St Elsewhere", "AcquisitionDateTime": "2024-01-15T09:00:00"})
    image.with_name("sub-02_pet.json").write_text(json.dumps(sidecar))
    rec = case_repo.import_series(image, pseudonym="P008")
    for relpath in (rec.sidecar_path, rec.original_file("image.json")):
        text = case_repo.resolve(relpath).read_text()
        assert "Doe" not in text and "MRN" not in text and "Elsewhere" not in text and "2024-01-15" not in text
        assert json.loads(text)["TracerName"] == "FDOPA"
    assert case_repo.suv_factor(rec.id) == pytest.approx(72.5e3 / 185e6)
    event = case_repo.audit_events(action="series.import")[0]
    assert event.details["sidecar_keys_removed"] == ["AcquisitionDateTime", "InstitutionName", "PatientID",
                                                     "PatientName"]


def test_masks(case_repo, inputs):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P003")
    case_repo.import_series(inputs["other_grid"], study_id=pet.study_id, role="flair")
    from_file = case_repo.add_mask(pet.study_id, inputs["mask"], "tumour", "demo")
    assert (from_file.series_id, from_file.n_voxels, from_file.source) == (pet.id, 8, "demo")
    assert from_file.volume_ml == pytest.approx(8 * 12 / 1000)
    vol = case_repo.load_mask(from_file.id, verify=True)
    assert vol.data.dtype == bool and vol.data.sum() == 8 and vol.modality == "SEG"
    np.testing.assert_allclose(vol.affine, cd.AFFINE)

    array = np.zeros((6, 5, 4), bool)
    array[0, 0, 0] = True
    on_series = case_repo.add_mask(pet.study_id, array, "background", "computed", series_id=pet.id)
    assert on_series.n_voxels == 1 and on_series.source == "computed"
    assert [m.name for m in case_repo.get_case(pet.study_id).masks] == ["tumour", "background"]

    before = _snapshot(case_repo)
    off_grid = Volume(np.ones((2, 2, 2), np.uint8), np.eye(4), "SEG", "label")
    with pytest.raises(MaskError, match="grid of no series"):
        case_repo.add_mask(pet.study_id, off_grid, "tumour")
    with pytest.raises(MaskError, match="not binary"):
        case_repo.add_mask(pet.study_id, cd.mask_on(cd.pet_dynamic()).with_data(np.full((6, 5, 4), 2, np.uint8)),
                           "tumour")
    with pytest.raises(MaskError, match="empty"):
        case_repo.add_mask(pet.study_id, np.zeros((6, 5, 4)), "tumour", series_id=pet.id)
    with pytest.raises(MaskError, match="needs the series"):
        case_repo.add_mask(pet.study_id, array, "tumour")
    with pytest.raises(CaseStoreError, match="mask source"):
        case_repo.add_mask(pet.study_id, array, "tumour", "ai", series_id=pet.id)
    assert _snapshot(case_repo) == before


def test_labels_results_status_and_worklist(case_repo, inputs):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P004", site="B")
    sid = pet.study_id
    [summary] = case_repo.list_cases()
    assert (summary.status, summary.label, summary.roles) == ("new", None, ("dynamic_pet",))
    assert summary.modalities == ("PT",)
    assert set(summary.as_row()) == set(CASE_COLUMNS) and summary.as_row()["Series"] == "dynamic_pet"

    case_repo.set_label(sid, "progression", source="synthetic ground truth",
                        molecular={"idh": "wildtype", "codeletion_1p19q": False}, user="demo")
    label = case_repo.set_label(sid, "radionecrosis", source="histology", details={"report": "H-1"}, user="dr_b")
    changed = case_repo.set_label(sid, "progression", source="histology", user="dr_c")
    assert changed.id == label.id and changed.set_by == "dr_c"
    assert [(lab.source, lab.diagnosis) for lab in case_repo.labels(sid)] == [
        ("synthetic ground truth", "progression"), ("histology", "progression")]
    assert case_repo.list_cases()[0].label == "progression"
    assert case_repo.list_cases()[0].label_source == "histology"

    params = {"window_min": (20, 40), "threshold": np.float64(1.6), "undefined": float("nan")}
    result = case_repo.add_result(sid, "kinetics.tac", params, {"tbr_max": np.float32(2.5), "n": np.int64(3)},
                                  code_version="abc123", user="engine")
    assert result.parameters == {"window_min": [20, 40], "threshold": 1.6, "undefined": None}
    assert result.summary == {"tbr_max": 2.5, "n": 3}
    assert case_repo.list_cases()[0].status == "has results"
    assert case_repo.find_result(sid, "kinetics.tac", params) == result
    assert case_repo.find_result(sid, "kinetics.tac", {**params, "threshold": 1.7}) is None
    assert case_repo.find_result(sid, "kinetics.tac", code_version="other") is None
    assert case_repo.get_result(result.id) == result

    case_repo.mark_reviewed(sid, user="dr_b")
    case = case_repo.get_case(sid)
    assert case.status == "reviewed" and case.reviewed_by == "dr_b" and case.reviewed_at is not None
    assert case.summary.site == "B" and case.summary.n_results == 1 and len(case.labels) == 2
    assert not case.synthetic


def test_result_artefact_goes_to_store(case_repo, inputs, tmp_path):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P005")
    artefact = tmp_path / "tac.npz"
    np.savez(artefact, tac=np.arange(5.0))
    rec = case_repo.add_result(pet.study_id, "kinetics.tac", {"a": 1}, artefact=artefact)
    assert rec.artefact_path.endswith(".npz") and rec.artefact_sha256 in rec.artefact_path
    np.testing.assert_array_equal(np.load(case_repo.resolve(rec.artefact_path))["tac"], np.arange(5.0))
    with pytest.raises(UnreadableFileError):
        case_repo.add_result(pet.study_id, "kinetics.tac", {}, artefact=tmp_path / "missing.npz")


def test_cohort_results_round_trip_with_artefact(case_repo, inputs, tmp_path):
    a = case_repo.import_series(inputs["pet"], pseudonym="P010").study_id
    b = case_repo.import_series(inputs["pet"], pseudonym="P011").study_id
    artefact = tmp_path / "scores.npz"
    np.savez(artefact, score=np.array([0.2, 0.9]))
    params = {"models": ("logistic",), "seed": np.int64(0)}
    rec = case_repo.add_cohort_result("radiomics.evaluation", params, [b, a], {"auc": np.float64(0.75)},
                                      artefact=artefact, user="engine")
    assert rec.study_ids == (b, a) and rec.parameters == {"models": ["logistic"], "seed": 0}
    assert rec.summary == {"auc": 0.75} and rec.artefact_sha256 in rec.artefact_path
    np.testing.assert_array_equal(np.load(case_repo.resolve(rec.artefact_path))["score"], [0.2, 0.9])
    assert case_repo.find_cohort_result("radiomics.evaluation", params, study_ids=[b, a]) == rec
    assert case_repo.find_cohort_result("radiomics.evaluation", params, study_ids=[a, b]) is None
    assert case_repo.find_cohort_result("radiomics.evaluation", {"seed": 1}) is None
    assert case_repo.find_cohort_result("other") is None
    newer = case_repo.add_cohort_result("radiomics.evaluation", params, [b, a])
    assert case_repo.find_cohort_result("radiomics.evaluation", params) == newer
    assert [r.id for r in case_repo.list_cohort_results("radiomics.evaluation")] == [rec.id, newer.id]
    assert case_repo.counts()["cohort_results"] == 2
    assert case_repo.audit_events(action="cohort_result.add")[-1].details["n_studies"] == 2
    with pytest.raises(CaseNotFoundError):
        case_repo.add_cohort_result("radiomics.evaluation", {}, [a, 999])
    assert case_repo.counts()["cohort_results"] == 2


def test_unknown_ids_raise_case_not_found(case_repo):
    for call in (lambda: case_repo.get_case(99), lambda: case_repo.load_series(99), lambda: case_repo.load_mask(99),
                 lambda: case_repo.set_label(99, "progression", source="histology"),
                 lambda: case_repo.add_result(99, "x", {}), lambda: case_repo.mark_reviewed(99)):
        with pytest.raises(CaseNotFoundError, match="99 is not in the case store"):
            call()


def test_every_write_is_audited(case_repo, inputs):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P006", user="dr_a")
    case_repo.add_mask(pet.study_id, inputs["mask"], "tumour", user="dr_a")
    case_repo.set_label(pet.study_id, "progression", source="histology", user="dr_b")
    case_repo.set_label(pet.study_id, "radionecrosis", source="histology", user="dr_b")
    case_repo.add_result(pet.study_id, "kinetics.tac", {}, user="engine")
    case_repo.mark_reviewed(pet.study_id, user="dr_b")
    viewed = case_repo.audit("case.viewed", user="dr_c", object_type="study", object_id=pet.study_id)
    events = case_repo.audit_events()
    assert [e.action for e in events] == ["case.viewed", "study.reviewed", "result.add", "label.set", "label.set",
                                          "mask.add", "series.import"]
    assert events[0] == viewed and viewed.at.tzinfo is not None
    assert events[3].details["previous"]["diagnosis"] == "progression"
    assert events[-1].details["pseudonym"] == "P006" and events[-1].who == "dr_a"
    assert [e.action for e in case_repo.audit_events(action="label")] == ["label.set", "label.set"]
    assert len(case_repo.audit_events(object_type="study", object_id=pet.study_id)) == 4
    assert len(case_repo.audit_events(user="dr_b", limit=2)) == 2


# ---------------------------------------------------------------- cohorts


def _manifest(root, n=2):
    patients = []
    for i in range(n):
        pid = f"DEMO-T-{i:03d}"
        folder = root / pid
        pet = cd.pet_dynamic(seed=10 + i)
        cd.write_nifti_file(pet, folder / "pet.nii.gz")
        cd.write_nifti_file(cd.mri(seed=20 + i), folder / "t1c.nii.gz")
        cd.write_nifti_file(cd.mask_on(pet), folder / "tumour.nii.gz")
        (folder / "blood.tsv").write_text("time\tplasma_radioactivity\n0\t0\n60\t1000\n")
        (folder / "blood.json").write_text('{"time": {"Units": "s"}}')
        patients.append({"id": pid, "label": ["progression", "radionecrosis"][i % 2], "idh": "wildtype",
                         "codeletion_1p19q": False,
                         "files": {"dynamic_pet": f"{pid}/pet.nii.gz", "t1c": f"{pid}/t1c.nii.gz",
                                   "dynamic_pet_sidecar": f"{pid}/pet.json", "blood": f"{pid}/blood.tsv"},
                         "masks": {"tumour": f"{pid}/tumour.nii.gz"}, "truth": {"k3_per_min": 0.05 * (i + 1)}})
    manifest = {"generator": "test-cohort", "seed": 5, "site": "T", "synthetic": True, "patients": patients}
    (root / "cohort.json").write_text(json.dumps(manifest))
    return root / "cohort.json"


def test_import_cohort_per_patient_and_idempotent(case_repo, tmp_path):
    manifest = _manifest(tmp_path / "cohort")
    progress = []
    ids = case_repo.import_cohort(manifest, progress=lambda f, m: progress.append((f, m)))
    assert len(ids) == 2 and progress[-1][0] == 1.0
    cases = case_repo.list_cases()
    assert [(c.pseudonym, c.label, c.roles, c.synthetic, c.site) for c in cases] == [
        ("DEMO-T-000", "progression", ("dynamic_pet", "t1c"), True, "T"),
        ("DEMO-T-001", "radionecrosis", ("dynamic_pet", "t1c"), True, "T")]
    case = case_repo.get_case(ids[1])
    assert case.labels[0].source == "synthetic ground truth"
    assert case.labels[0].molecular == {"idh": "wildtype", "codeletion_1p19q": False}
    assert case.labels[0].details["truth"] == {"k3_per_min": 0.1}
    assert case.mask_by_name("tumour").source == "demo"
    pet = case.series_by_role("dynamic_pet")
    assert case.mask_by_name("tumour").series_id == pet.id
    assert pet.original_names == ("image.nii.gz", "image.json", "blood.tsv", "blood.json")
    assert case_repo.resolve(pet.original_file("blood.tsv")).read_text().startswith("time\tplasma")
    assert case.series_by_role("t1c").original_file("blood.tsv") is None
    assert case_repo.import_cohort(manifest.parent) == []  # again: nothing new
    assert len(case_repo.list_cases()) == 2
    assert [e.action for e in case_repo.audit_events(action="cohort")] == ["cohort.import", "cohort.import"]


def test_cohort_failure_keeps_earlier_patients_only(case_repo, tmp_path):
    manifest = _manifest(tmp_path / "cohort", n=3)
    broken = tmp_path / "cohort" / "DEMO-T-001" / "t1c.nii.gz"
    cd.truncated_gzip(tmp_path / "cohort" / "DEMO-T-000" / "t1c.nii.gz", broken)
    with pytest.raises(UnreadableFileError, match="t1c.nii.gz"):
        case_repo.import_cohort(manifest)
    assert [c.pseudonym for c in case_repo.list_cases()] == ["DEMO-T-000"]
    counts, files = _snapshot(case_repo)
    assert counts["patients"] == 1 and counts["series"] == 2 and counts["masks"] == 1
    referenced = {p for s in case_repo.get_case(case_repo.list_cases()[0].study_id).series
                  for p in (s.path, s.sidecar_path, *s.original_files)}
    assert referenced <= set(files)


@pytest.mark.parametrize("content, error", [
    (None, UnreadableFileError),
    ("{not json", UnreadableFileError),
    (json.dumps({"patients": "none"}), UnsupportedFormatError),
    (json.dumps({"patients": [{"id": "A-1", "files": {"pet": "a.nii.gz"}}]}), UnsupportedFormatError),
    (json.dumps({"patients": [{"id": "A-1", "files": {"t1": "a.nii.gz", "dwi": "b.nii.gz"}}]}),
     UnsupportedFormatError),
    (json.dumps({"patients": [{"id": "A-1", "files": {"t1": "missing.nii.gz"}}]}), InputError),
    (json.dumps({"patients": [{"id": "Doe, John", "files": {"t1": "a.nii.gz"}}]}), CaseStoreError),
    (json.dumps({"patients": [{"id": "A-1", "files": {}}]}), UnsupportedFormatError),
])
def test_bad_manifests_are_refused(case_repo, tmp_path, content, error):
    path = tmp_path / "cohort.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error):
        case_repo.import_cohort(path)
    assert case_repo.is_empty()


# ---------------------------------------------------------------- atomicity


BAD_INPUTS = [
    ("corrupt_gzip", UnreadableFileError),
    ("not_an_image", UnreadableFileError),
    ("text_file", UnsupportedFormatError),
    ("no_timing", TimingError),
    ("nan_voxels", InvalidVoxelError),
    ("mixed_dicom", DicomSeriesError),
    ("damaged_zip", UnreadableFileError),
    ("missing", InputError),
    ("frame_count_mismatch", TimingError),
    ("non_monotonic_frames", TimingError),
    ("zero_spacing", GeometryError),
    ("singular_affine", GeometryError),
    ("missing_slice", DicomSeriesError),
    ("uneven_spacing", DicomSeriesError),
]


@pytest.mark.parametrize("name, error", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_leaves_no_trace(case_repo, inputs, name, error):
    first = case_repo.import_series(inputs["t1"], pseudonym="P010")
    before = _snapshot(case_repo)
    with pytest.raises(error) as excinfo:
        case_repo.import_series(inputs[name], pseudonym="P011")
    assert isinstance(excinfo.value, InputError)
    with pytest.raises(error):
        case_repo.import_series(inputs[name], study_id=first.study_id)
    assert _snapshot(case_repo) == before
    assert [c.pseudonym for c in case_repo.list_cases()] == ["P010"]


@pytest.mark.parametrize("source", ["nifti", "dicom"])
def test_failure_midway_rolls_back_rows_and_new_store_files(case_repo, inputs, tmp_path, monkeypatch, source):
    kept = case_repo.import_series(inputs["t1"], pseudonym="P020")
    path = inputs["pet"]
    if source == "dicom":
        path = tmp_path / "dicom"
        cd.write_identifying_dicom(cd.pet_dynamic(), path)
    before = _snapshot(case_repo)
    real_audit = CaseRepository._audit

    def failing_audit(session, who, action, *args, **kwargs):
        if action == "series.import":
            session.flush()  # rows are written and store files are in place when it fails
            raise RuntimeError("disk full")
        return real_audit(session, who, action, *args, **kwargs)

    monkeypatch.setattr(CaseRepository, "_audit", staticmethod(failing_audit))
    with pytest.raises(RuntimeError, match="disk full"):
        case_repo.import_series(path, pseudonym="P021")
    with pytest.raises(RuntimeError, match="disk full"):  # same content as an existing series
        case_repo.import_series(inputs["t1"], study_id=kept.study_id, role="other")
    assert _snapshot(case_repo) == before
    for relpath in (kept.path, kept.sidecar_path, *kept.original_files):
        case_repo.store.verify(relpath)  # files shared with committed rows were not deleted


def test_failure_after_files_are_written_removes_them(case_repo, inputs, monkeypatch):
    before = _snapshot(case_repo)
    real_put = repository_module.StagedFiles.put
    calls = []

    def put_then_fail(self, src, *, suffix=""):
        calls.append(src)
        if len(calls) == 3:
            raise OSError("no space left on device")
        return real_put(self, src, suffix=suffix)

    monkeypatch.setattr(repository_module.StagedFiles, "put", put_then_fail)
    with pytest.raises(OSError):
        case_repo.import_series(inputs["pet"], pseudonym="P030")
    assert _snapshot(case_repo) == before


def test_repository_defaults_come_from_the_environment(tmp_path, monkeypatch, inputs):
    monkeypatch.setenv("THERABOARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("THERABOARD_DB_URL", raising=False)
    repo = CaseRepository()
    try:
        assert repo.url == f"sqlite:///{tmp_path / 'data' / 'theraboard.db'}"
        rec = repo.import_series(inputs["t1"], pseudonym="ENV-1")
        assert (tmp_path / "data" / "theraboard.db").is_file()
        stored = {p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data" / "store").glob("*/*")}
        assert stored == {rec.path, rec.sidecar_path, *rec.original_files}
    finally:
        repo.close()
    again = CaseRepository()  # a second process sees the same store
    try:
        assert [c.pseudonym for c in again.list_cases()] == ["ENV-1"]
    finally:
        again.close()


def test_load_detects_a_corrupted_store_file(case_repo, inputs):
    rec = case_repo.import_series(inputs["t1"], pseudonym="P040")
    path = case_repo.resolve(rec.path)
    path.chmod(0o644)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CaseStoreError, match="corrupt"):
        case_repo.load_series(rec.id, verify=True)
    shutil.rmtree(case_repo.store.root)
    with pytest.raises(CaseStoreError, match="missing"):
        case_repo.load_series(rec.id)


def test_case_picks_its_pet_and_orders_fusion_backgrounds(case_repo, inputs):
    pet = case_repo.import_series(inputs["pet"], pseudonym="P020")
    flair = case_repo.import_series(inputs["other_grid"], study_id=pet.study_id, role="flair")
    t1 = case_repo.import_series(inputs["t1"], study_id=pet.study_id, role="t1c")
    case = case_repo.get_case(pet.study_id)
    assert case.pet.id == pet.id
    assert [s.id for s in case.backgrounds()] == [t1.id, flair.id, pet.id]
