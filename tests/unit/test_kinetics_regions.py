"""Brain mask, mid-sagittal plane, contralateral background and template regions on the demo patient."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import InputError, MaskError
from core.imaging.resample import resample_to, rigid_matrix
from core.imaging.volume import Volume
from core.kinetics.regions import (MidPlane, TemplateRegions, brain_mask, contralateral_background, late_image,
                                   midsagittal_plane, mirror_mask, template_regions)


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _centroid_mm(mask: Volume) -> np.ndarray:
    return mask.voxel_to_mm(np.argwhere(mask.data).mean(axis=0))


@pytest.fixture(scope="module")
def demo():
    """Demo patient 0 (lesion at x = -20 mm) and the phantom's true brain and striatum on the PET grid."""
    from core.phantoms.anatomy import load_anatomy
    from core.phantoms.brain_fdopa import generate_patient

    case = generate_patient(0)
    anatomy = load_anatomy()
    ref = case.pet.frame(0)

    def on_pet(mask):
        return resample_to(Volume(mask.astype(np.float32), anatomy.affine), ref, "linear").data > 0.5

    return {"case": case, "brain": on_pet(anatomy.brain), "striatum": on_pet(anatomy.striatum),
            "late": late_image(case.pet)}


@pytest.fixture(scope="module")
def pet_brain(demo):
    return brain_mask(demo["case"].pet)


@pytest.fixture(scope="module")
def regions(demo):
    return template_regions(demo["case"].pet)


# --------------------------------------------------------------------------- brain


def test_brain_mask_matches_phantom_brain(demo, pet_brain):
    # measured: Dice 0.963 from the PET, 0.961 from the T1 (the MNI152 mask includes sulcal CSF)
    assert pet_brain.data.dtype == np.uint8 and pet_brain.shape == demo["brain"].shape
    np.testing.assert_array_equal(pet_brain.affine, demo["case"].pet.affine)
    assert _dice(pet_brain.data, demo["brain"]) > 0.94
    assert pet_brain.meta["volume_ml"] == pytest.approx(pet_brain.data.sum() * 2.5**3 / 1000.0)
    from_t1 = brain_mask(demo["case"].pet, t1=demo["case"].t1)
    assert from_t1.shape == demo["brain"].shape
    assert _dice(from_t1.data, demo["brain"]) > 0.94


def test_brain_mask_refuses_an_empty_image():
    with pytest.raises(InputError, match="cannot find the brain"):
        brain_mask(Volume(np.zeros((8, 8, 8), np.float32), np.eye(4), "PT", "Bq/ml"))


# --------------------------------------------------------------------------- plane


def test_midplane_of_demo_is_x0(demo, pet_brain):
    plane = midsagittal_plane(demo["case"].pet, brain=pet_brain)
    assert abs(plane.offset_mm) < 1.0
    assert np.degrees(np.arccos(plane.normal[0])) < 2.0
    assert plane.normal[0] > 0 and np.linalg.norm(plane.normal) == pytest.approx(1.0)
    assert 0.5 < plane.symmetry <= 1.0


def test_midplane_follows_a_moved_head(demo):
    move = rigid_matrix((0.0, 4.0, 6.0), (5.0, -3.0, 2.0), center_mm=(0.0, -20.0, 10.0))
    moved = resample_to(demo["late"], demo["late"], "linear", transform=move)
    plane = midsagittal_plane(moved)
    expected_normal = move[:3, :3] @ np.array([1.0, 0.0, 0.0])
    assert np.degrees(np.arccos(min(1.0, abs(expected_normal @ plane.normal)))) < 1.0
    assert plane.yaw_deg == pytest.approx(6.0, abs=1.0)
    assert plane.roll_deg == pytest.approx(4.0, abs=1.0)
    for point in ([0.0, -20.0, 10.0], [0.0, 30.0, 40.0], [0.0, -70.0, -10.0]):   # on the original plane
        assert abs(plane.signed_distance_mm(move[:3, :3] @ point + move[:3, 3])) < 1.0


def test_midplane_geometry():
    plane = MidPlane(point_mm=[2.0, 0.0, 0.0], normal=[-2.0, 0.0, 0.0])       # normal flipped to +x
    np.testing.assert_allclose(plane.normal, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(plane.reflect_points([[5.0, 1.0, 2.0], [2.0, 3.0, 4.0]]), [[-1.0, 1.0, 2.0],
                                                                                          [2.0, 3.0, 4.0]])
    tilted = MidPlane(point_mm=[1.0, 2.0, 3.0], normal=rigid_matrix((0, 7.0, -12.0))[:3, :3] @ [1.0, 0.0, 0.0])
    assert tilted.yaw_deg == pytest.approx(-12.0) and tilted.roll_deg == pytest.approx(7.0)
    pts = np.random.default_rng(5).normal(0.0, 50.0, (20, 3))
    np.testing.assert_allclose(tilted.reflect_points(tilted.reflect_points(pts)), pts, atol=1e-9)
    homog = np.c_[pts, np.ones(20)] @ tilted.reflection_matrix.T
    np.testing.assert_allclose(homog[:, :3], tilted.reflect_points(pts), atol=1e-9)
    np.testing.assert_allclose(tilted.signed_distance_mm(tilted.reflect_points(pts)),
                               -tilted.signed_distance_mm(pts), atol=1e-9)
    back = MidPlane.from_dict(json.loads(json.dumps(tilted.to_dict())))
    np.testing.assert_array_equal(back.normal, tilted.normal)
    np.testing.assert_array_equal(back.point_mm, tilted.point_mm)
    with pytest.raises(InputError, match="non-zero normal"):
        MidPlane([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])


# -------------------------------------------------------------------------- mirror


def test_mirror_mask_flips_across_the_central_plane():
    rng = np.random.default_rng(6)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10.0, 0.0, 0.0]                                          # x from -10 to +10 mm
    data = (rng.random((11, 6, 5)) < 0.3).astype(np.uint8)
    mask = Volume(data, affine, "SEG", "label", meta={"label_name": "blob"})
    out = mirror_mask(mask, MidPlane([0.0, 0.0, 0.0], [1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(out.data, data[::-1])
    assert out.meta["label_name"] == "blob (mirrored)"
    # an oblique plane: mirroring twice gives the mask back (up to interpolation at the edge)
    big = np.zeros((40, 40, 40), np.uint8)
    big[8:18, 10:25, 12:20] = 1
    vol = Volume(big, np.diag([2.0, 2.0, 2.0, 1.0]), "SEG", "label")
    plane = MidPlane([40.0, 40.0, 40.0], rigid_matrix((0, 5.0, 10.0))[:3, :3] @ [1.0, 0.0, 0.0])
    once = mirror_mask(vol, plane)
    assert abs(int(once.data.sum()) - int(big.sum())) < 0.1 * big.sum()
    assert _dice(mirror_mask(once, plane).data, big) > 0.9
    centre = vol.voxel_to_mm(np.argwhere(big).mean(axis=0))
    np.testing.assert_allclose(_centroid_mm(once), plane.reflect_points(centre), atol=1.0)


def test_mirror_outside_the_image():
    data = np.zeros((5, 5, 5), np.uint8)
    data[0, 2, 2] = 1
    with pytest.raises(MaskError, match="outside the image"):
        mirror_mask(Volume(data, np.eye(4), "SEG", "label"), MidPlane([30.0, 0.0, 0.0], [1.0, 0.0, 0.0]))


# ---------------------------------------------------------------------- background


def test_contralateral_background_on_demo(demo, pet_brain, regions):
    case = demo["case"]
    tumour = case.tumour_mask.data > 0
    bg = contralateral_background(case.tumour_mask, case.pet, brain=pet_brain, exclude=(regions["striatum"],))
    region = bg.data > 0
    volume_ml = region.sum() * 2.5**3 / 1000.0
    assert bg.meta["volume_ml"] == pytest.approx(volume_ml)
    assert 10.0 < volume_ml < 40.0                                             # measured 22.8 ml
    assert _dice(region & demo["brain"], region) > 0.97                      # inside the true brain
    assert np.sign(_centroid_mm(bg)[0]) == -np.sign(_centroid_mm(case.tumour_mask)[0])
    assert np.all(case.pet.voxel_to_mm(np.argwhere(region))[:, 0] * np.sign(_centroid_mm(bg)[0]) >= 5.0 - 1e-6)
    assert not (region & tumour).any()
    assert not (region & demo["striatum"]).any()
    from scipy import ndimage
    gap_mm = ndimage.distance_transform_edt(~tumour, sampling=2.5)[region].min()
    assert gap_mm > 10.0
    # a curved band near the surface: every voxel within 12 mm of the brain's edge
    depth = ndimage.distance_transform_edt(pet_brain.data > 0, sampling=2.5)
    assert depth[region].max() <= 12.0 + 1e-6
    # RAS+: x > 0 is the patient's left (the tumour of patient 0 lies at x = -20 mm, the patient's right)
    assert bg.meta["side"] == "left"


def test_background_refuses_a_midline_tumour(demo, pet_brain):
    case = demo["case"]
    xyz = case.pet.voxel_to_mm(np.indices(pet_brain.shape).reshape(3, -1).T).reshape(pet_brain.shape + (3,))
    midline = (np.linalg.norm(xyz - [0.0, -10.0, 20.0], axis=-1) <= 10.0).astype(np.uint8)
    plane = MidPlane([0.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    with pytest.raises(MaskError, match="mid-sagittal plane.*[Dd]raw a background mask"):
        contralateral_background(midline, case.pet, plane=plane, brain=pet_brain)
    # nothing left once the whole brain is excluded
    with pytest.raises(MaskError, match="only 0.0 ml.*[Dd]raw a background mask"):
        contralateral_background(case.tumour_mask, case.pet, plane=plane, brain=pet_brain, exclude=(pet_brain,))
    with pytest.raises(MaskError, match="tumour mask.*empty"):
        contralateral_background(np.zeros(pet_brain.shape, np.uint8), case.pet, plane=plane, brain=pet_brain)


# ------------------------------------------------------------------------ template


def test_template_regions_on_demo(demo, regions):
    # the demo patient lives in MNI space: the registration should be the identity
    assert isinstance(regions, TemplateRegions) and regions.target == "pet"
    assert sorted(regions) == ["brain", "cerebellum", "occipital_cortex", "striatum"]
    np.testing.assert_allclose(regions.transform_ras[:3, :3], np.eye(3), atol=0.02)
    np.testing.assert_allclose(regions.transform_ras[:3, 3], 0.0, atol=1.5)
    assert regions.info["seconds"] < 10.0
    for mask in regions.values():
        assert mask.shape == demo["brain"].shape and mask.data.dtype == np.uint8
    # striatum: the template ellipsoids against the phantom's (measured Dice 0.96, 0.95-0.96 on patients 0-3)
    assert _dice(regions["striatum"].data, demo["striatum"]) > 0.9
    assert _dice(regions["brain"].data, demo["brain"]) > 0.95
    vols = regions.volumes_ml()
    assert 8.0 < vols["striatum"] < 16.0 and 40.0 < vols["cerebellum"] < 90.0
    assert 25.0 < vols["occipital_cortex"] < 60.0
    cereb, occ = _centroid_mm(regions["cerebellum"]), _centroid_mm(regions["occipital_cortex"])
    assert cereb[2] < -25.0 and -85.0 < cereb[1] < -45.0 and abs(cereb[0]) < 5.0
    assert occ[1] < -75.0 and occ[2] > 0.0
    for name in ("striatum", "cerebellum", "occipital_cortex"):                # both hemispheres
        x = regions[name].voxel_to_mm(np.argwhere(regions[name].data))[:, 0]
        assert 0.35 < np.mean(x > 0) < 0.65


def test_template_follows_a_moved_pet(demo, regions):
    move = rigid_matrix((0.0, 0.0, 5.0), (6.0, -4.0, 5.0), center_mm=(0.0, -20.0, 10.0))
    moved = resample_to(demo["late"], demo["late"], "linear", transform=move)
    shifted = template_regions(moved)
    np.testing.assert_allclose(shifted.transform_ras, move @ regions.transform_ras, atol=0.6)
    expected = move[:3, :3] @ _centroid_mm(regions["striatum"]) + move[:3, 3]
    np.testing.assert_allclose(_centroid_mm(shifted["striatum"]), expected, atol=1.0)


def test_template_registered_to_t1(demo):
    with_t1 = template_regions(demo["case"].pet, t1=demo["case"].t1)
    assert with_t1.target == "t1"
    np.testing.assert_allclose(with_t1.transform_ras, np.eye(4), atol=0.3)
    assert _dice(with_t1["striatum"].data, demo["striatum"]) > 0.9
