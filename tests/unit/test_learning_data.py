"""Deep-model inputs: case arrays, the cohort cache, the dataset, augmentation and splits."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import InputError
from core.learning.data import (Augment, CohortDataset, InputSpec, build_cohort_cache, case_arrays, read_index,
                                rotate, split_by_centre, split_by_patient)
from core.phantoms.brain_fdopa import generate_patient


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cohort_cache")
    calls = []
    index = build_cohort_cache(directory, n=3, seed=11, workers=1, progress=lambda f, m: calls.append(f))
    assert calls[-1] == pytest.approx(1.0)
    return directory, index


@pytest.fixture(scope="module")
def case():
    return generate_patient(0, seed=11, site="A")


def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_cache_files_shapes_and_dtypes(cache):
    directory, index = cache
    table = read_index(directory)
    assert list(table.columns) == ["patient_id", "site", "label", "idh", "codeletion", "file"]
    assert table["site"].tolist() == ["A", "B", "C"]
    assert table["patient_id"].tolist() == ["DEMO-A-S11-000", "DEMO-B-S11-001", "DEMO-C-S11-002"]
    assert set(table["label"]) <= {0, 1}
    spec = InputSpec()
    for row in table.itertuples():
        z = _load(directory / row.file)
        assert z["image"].dtype == np.float16 and z["image"].shape == (4, *spec.shape)
        for k in ("tumour", "aggressive", "brain"):
            assert z[k].dtype == np.uint8 and z[k].shape == spec.shape
        assert str(z["patient_id"]) == row.patient_id and int(z["label"]) == row.label
    saved = json.loads((directory / "spec.json").read_text())
    assert InputSpec.from_dict(saved["spec"]) == spec


def test_normalisation_and_tumour_location(cache):
    directory, _ = cache
    table = read_index(directory)
    for row in table.itertuples():
        z = _load(directory / row.file)
        image = z["image"].astype(np.float32)
        brain, tumour = z["brain"] > 0, z["tumour"] > 0
        assert 30_000 < brain.sum() < 100_000          # an adult brain is ~1.2-1.5 l: 44-56k voxels of 27 ul
        late = image[1]
        assert np.median(late[brain]) == pytest.approx(1.0, abs=0.01)
        assert late.min() >= 0.0 and late.max() <= 8.0
        for c in (2, 3):                                # t1c, flair: z-scores in the brain, 0 outside
            assert image[c][brain].mean() == pytest.approx(0.0, abs=0.02)
            assert image[c][brain].std() == pytest.approx(1.0, abs=0.02)
            assert np.all(image[c][~brain] == 0)
        assert tumour.sum() > 10
        assert late[tumour].mean() > 1.1 * np.median(late[brain])


def test_case_arrays_matches_reference_suvr(case):
    spec = InputSpec(shape=(32, 32, 32), voxel_mm=6.0, channels=("pet_late", "t1c"))
    arrays = case_arrays(case, spec)
    assert arrays.image.shape == (2, 32, 32, 32) and arrays.image.dtype == np.float32
    pet = case.pet
    sel = (pet.frame_start_min >= 10 - 1e-6) & (pet.frame_end_min <= 30 + 1e-6)
    w = pet.frame_duration_s[sel]
    late_suv = (pet.data[..., sel] * w).sum(-1) / w.sum() * pet.suv_factor
    # the grid voxel nearest the tumour centre, compared with the native SUV there / the reference
    centre = np.argwhere(arrays.tumour).mean(0).round().astype(int)
    xyz = arrays.affine[:3, :3] @ centre + arrays.affine[:3, 3]
    ijk = np.linalg.inv(pet.affine)[:3] @ np.append(xyz, 1)
    from scipy.ndimage import map_coordinates
    expected = map_coordinates(late_suv, ijk[:, None], order=1)[0] / arrays.reference_suv
    assert arrays.image[0][tuple(centre)] == pytest.approx(expected, rel=1e-4)
    assert arrays.label == (1 if case.label == "progression" else 0)
    assert arrays.idh == (1 if case.idh == "mutant" else 0)


def test_cache_is_reused(cache):
    directory, index = cache
    before = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    build_cohort_cache(directory, n=3, seed=11, workers=1)
    after = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    assert before == after


def test_spec_change_is_refused(cache):
    directory, _ = cache
    with pytest.raises(InputError, match="another input spec"):
        build_cohort_cache(directory, n=3, seed=11, spec=InputSpec(voxel_mm=4.0))


def test_dataset_items_and_patches(cache):
    directory, _ = cache
    ds = CohortDataset(directory)
    assert len(ds) == 3
    item = ds[1]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (4, 64, 64, 64)
    for k in ("tumour", "aggressive", "brain"):
        assert item[k].shape == (1, 64, 64, 64) and item[k].dtype == torch.float32
    for k in ("label", "idh", "codeletion"):
        assert item[k].dtype == torch.long and item[k].ndim == 0
    assert item["patient_id"] == "DEMO-B-S11-001" and item["site"] == "B"

    sub = CohortDataset(directory, ["DEMO-C-S11-002"], patch=16, p_tumour=1.0, seed=3)
    for epoch in range(3):
        sub.set_epoch(epoch)
        p = sub[0]
        assert p["image"].shape == (4, 16, 16, 16) and p["tumour"].shape == (1, 16, 16, 16)
        assert p["tumour"].sum() > 0
    sub.set_epoch(1)
    assert torch.equal(sub[0]["image"], sub[0]["image"])       # deterministic per (seed, epoch, index)
    starts = set()
    for epoch in range(6):
        sub.set_epoch(epoch)
        starts.add(sub[0]["patch_start"])
    assert len(starts) > 1                                      # epochs draw other patches


def test_dataset_refuses_unknown_ids(cache):
    directory, _ = cache
    with pytest.raises(InputError, match="DEMO-Z-000"):
        CohortDataset(directory, ["DEMO-Z-000"])


def _sample(seed=0, shape=(8, 10, 12)):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(2, *shape, generator=g), "tumour": (torch.rand(1, *shape, generator=g) > 0.7).float(),
            "brain": torch.ones(1, *shape), "label": torch.tensor(1)}


def test_augment_is_deterministic_by_generator():
    s = _sample()
    aug = Augment()
    a = aug(s, torch.Generator().manual_seed(5))
    b = aug(s, torch.Generator().manual_seed(5))
    c = aug(s, torch.Generator().manual_seed(6))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["tumour"], b["tumour"])
    assert not torch.equal(a["image"], c["image"])
    assert set(torch.unique(a["tumour"]).tolist()) <= {0.0, 1.0}


def test_flip_is_an_array_flip():
    s = _sample()
    aug = Augment(p_flip=1.0, max_rotation_deg=0.0, scale=(1.0, 1.0), shift=0.0)
    out = aug(s, torch.Generator().manual_seed(0))
    assert torch.equal(out["image"], torch.flip(s["image"], (-3, -2, -1)))
    assert torch.equal(out["tumour"], torch.flip(s["tumour"], (-3, -2, -1)))
    none = Augment(p_flip=0.0, max_rotation_deg=0.0, scale=(1.0, 1.0), shift=0.0)(s, torch.Generator())
    assert torch.equal(none["image"], s["image"])


def test_rotation_zero_is_identity_and_90_is_a_transpose():
    s = _sample(shape=(9, 9, 9))
    out = rotate(s, (0.0, 0.0, 0.0))
    assert torch.allclose(out["image"], s["image"], atol=1e-5)
    assert torch.equal(out["tumour"], s["tumour"])
    turned = rotate(s, (90.0, 0.0, 0.0))                       # about the first axis: H and W swap
    assert not torch.allclose(turned["image"], s["image"], atol=1e-3)
    rot = torch.rot90(s["image"], 1, dims=(-2, -1))
    rot_other = torch.rot90(s["image"], -1, dims=(-2, -1))
    assert torch.allclose(turned["image"], rot, atol=1e-4) or torch.allclose(turned["image"], rot_other, atol=1e-4)


def test_intensity_jitter_range():
    s = _sample()
    out = Augment(p_flip=0.0, max_rotation_deg=0.0, scale=(0.9, 1.1), shift=0.1)(s, torch.Generator().manual_seed(1))
    for c in range(2):
        a = torch.linalg.lstsq(torch.stack([s["image"][c].ravel(), torch.ones(s["image"][c].numel())], 1),
                               out["image"][c].ravel()[:, None]).solution.ravel()
        assert 0.9 <= a[0] <= 1.1 and -0.1 <= a[1] <= 0.1
    assert torch.equal(out["tumour"], s["tumour"])


def _table(n=40, sites="AB"):
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)],
                         "site": [sites[i % len(sites)] for i in range(n)],
                         "label": [int(i % 4 == 0) for i in range(n)]})   # 25 % positives


def test_split_by_patient_disjoint_covering_deterministic_stratified():
    t = _table()
    s = split_by_patient(t, seed=4)
    assert s.index.equals(t.index) and set(s) == {"train", "val", "test"}
    assert s.value_counts().to_dict() == {"train": 28, "val": 6, "test": 6}
    assert s.equals(split_by_patient(t, seed=4))
    assert not s.equals(split_by_patient(t, seed=5))
    for name in ("train", "val", "test"):
        frac = t["label"][s == name].mean()
        assert abs(frac - 0.25) <= 0.1                         # stratified: same prevalence in each
    ids = [set(t["patient_id"][s == name]) for name in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) == set(t["patient_id"])


def test_split_by_centre():
    t = _table(60, "ABC")
    s = split_by_centre(t, external=("C",), seed=2)
    assert (s[t["site"] == "C"] == "external").all()
    assert set(s[t["site"] != "C"]) == {"train", "val", "test"}
    assert s.equals(split_by_centre(t, external=("C",), seed=2))
    with pytest.raises(InputError, match="'Z'"):
        split_by_centre(t, external=("Z",))


def test_split_errors():
    t = _table()
    dup = pd.concat([t, t.iloc[:1]])
    with pytest.raises(InputError, match="P000"):
        split_by_patient(dup)
    with pytest.raises(InputError, match="too few|cannot be split"):
        split_by_patient(_table(2))
    with pytest.raises(InputError, match="fractions"):
        split_by_patient(t, fractions=(0.5, 0.5, 0.5))


def test_input_errors(case):
    spec = InputSpec(shape=(16, 16, 16), voxel_mm=12.0)
    wrong_units = dataclasses.replace(case, pet=dataclasses.replace(case.pet, units="kBq/ml"))
    with pytest.raises(InputError, match="'kBq/ml'"):
        case_arrays(wrong_units, spec)
    no_dose = dataclasses.replace(case, pet=dataclasses.replace(case.pet, dose=None))
    with pytest.raises(InputError, match="SUV is unavailable"):
        case_arrays(no_dose, spec)
    with pytest.raises(InputError, match="no t1c"):
        case_arrays(dataclasses.replace(case, t1c=None), spec)
    other = dataclasses.replace(case.flair, meta={**case.flair.meta, "patient_id": "DEMO-B-007"})
    with pytest.raises(InputError, match="DEMO-B-007"):
        case_arrays(dataclasses.replace(case, flair=other), spec)
    with pytest.raises(InputError, match="modality"):
        case_arrays(dataclasses.replace(case, t1c=case.tumour_mask), spec)
    with pytest.raises(InputError, match="'unsure'"):
        case_arrays(dataclasses.replace(case, label="unsure"), spec)
    with pytest.raises(InputError, match="channels"):
        InputSpec(channels=("pet_late", "ct"))


def test_unregistered_mri_and_unknown_labels(case):
    spec = InputSpec(shape=(16, 16, 16), voxel_mm=12.0)
    moved = case.flair.affine.copy()
    moved[:3, 3] += (120.0, 0.0, 0.0)  # 12 cm to the right: another grid, not registered to the PET
    with pytest.raises(InputError, match=r"flair of patient .* covers only \d+% of the head"):
        case_arrays(dataclasses.replace(case, flair=dataclasses.replace(case.flair, affine=moved)), spec)
    unknown = case_arrays(dataclasses.replace(case, label=None, idh=None, codeletion_1p19q=None), spec)
    assert (unknown.label, unknown.idh, unknown.codeletion) == (-1, -1, -1)
