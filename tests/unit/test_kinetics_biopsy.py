"""Biopsy target: deepest point of the largest part, checked against brute-force distances in mm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from core.errors import InputError, InvalidVoxelError, MaskError
from core.imaging.volume import Volume
from core.kinetics.biopsy import biopsy_target


def _vol(mask, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), rotation=None):
    affine = np.eye(4)
    linear = np.diag(spacing)
    if rotation is not None:
        linear = rotation @ linear
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return Volume(np.asarray(mask).astype(np.uint8), affine, "SEG", "label")


def _brute_depth(component, spacing):
    """Depth (mm) of every voxel of ``component``: distance to the nearest voxel outside it, the
    image edge counting as outside (one empty voxel of padding), by an exhaustive search."""
    padded = np.pad(component, 1)
    inside = np.argwhere(padded)
    outside = np.argwhere(~padded)
    s = np.asarray(spacing)
    depth = np.zeros(component.shape)
    for v in inside:
        d = np.sqrt((((outside - v) * s) ** 2).sum(axis=1)).min()
        depth[tuple(v - 1)] = d
    return depth


def _ball(shape, centre, radius_vox):
    idx = np.indices(shape)
    return sum((idx[a] - centre[a]) ** 2 for a in range(3)) <= radius_vox**2


def test_sphere_gives_its_centre_in_scanner_mm():
    mask = _ball((21, 23, 19), (10, 12, 9), 6)
    target = biopsy_target(_vol(mask, spacing=(2.0, 2.0, 2.0), origin=(-30.0, 5.0, 12.0)))
    assert target.ijk == (10, 12, 9)
    assert target.xyz_mm == pytest.approx((-30.0 + 20.0, 5.0 + 24.0, 12.0 + 18.0))
    assert target.depth_mm == pytest.approx(_brute_depth(mask, (2, 2, 2)).max())
    assert target.n_components == 1 and target.n_deepest == 1
    assert target.component_volume_ml == pytest.approx(mask.sum() * 8.0 / 1000.0)
    assert target.centroid_distance_mm == pytest.approx(0.0, abs=1e-9)


def test_two_blobs_target_lies_in_the_larger():
    mask = _ball((40, 20, 20), (8, 10, 10), 4) | _ball((40, 20, 20), (27, 10, 10), 7)
    target = biopsy_target(_vol(mask))
    assert target.n_components == 2
    assert target.ijk == (27, 10, 10)
    assert "2 separate parts" in target.reasons[0] and "largest" in target.reasons[0]
    larger = _ball((40, 20, 20), (27, 10, 10), 7)
    assert target.component_volume_ml == pytest.approx(larger.sum() / 1000.0)


def test_larger_but_shallower_part_still_wins():
    # a long thin slab (more voxels) and a compact cube (deeper): the target goes to the larger part
    mask = np.zeros((40, 40, 12), bool)
    mask[2:38, 2:38, 5:7] = True          # 36 x 36 x 2 = 2592 voxels, depth 1 voxel
    cube = np.zeros_like(mask)
    cube[10:20, 10:20, 8:11] = True       # not touching the slab (gap at k = 7)
    mask |= cube
    target = biopsy_target(_vol(mask))
    assert mask[target.ijk] and 5 <= target.ijk[2] <= 6


@pytest.mark.parametrize("shape_name", ["L", "C"])
def test_l_and_c_shapes_point_is_inside_at_maximal_depth(shape_name):
    mask = np.zeros((30, 30, 9), bool)
    if shape_name == "L":
        mask[3:27, 3:10, 1:8] = True
        mask[3:10, 3:27, 1:8] = True
    else:
        mask[3:27, 3:9, 1:8] = True
        mask[3:9, 3:27, 1:8] = True
        mask[21:27, 3:27, 1:8] = True
    centroid = np.argwhere(mask).mean(axis=0)
    target = biopsy_target(_vol(mask))
    depth = _brute_depth(mask, (1, 1, 1))
    assert mask[target.ijk]
    assert target.depth_mm == pytest.approx(depth.max())
    assert depth[target.ijk] == pytest.approx(depth.max())
    if shape_name == "C":
        # the centroid of a C lies in its opening, outside the shape
        assert not mask[tuple(np.round(centroid).astype(int))]


def test_anisotropic_voxels_are_measured_in_mm():
    # 11 x 11 x 5 voxels of 1 x 1 x 4 mm: 6 voxels (6 mm) deep in-plane, 3 slices (12 mm) deep across
    mask = np.zeros((13, 13, 7), bool)
    mask[1:12, 1:12, 1:6] = True
    target = biopsy_target(_vol(mask, spacing=(1.0, 1.0, 4.0)))
    assert target.ijk == (6, 6, 3) and target.depth_mm == pytest.approx(6.0)
    assert "1 x 1 x 4 mm" in target.reasons[1]
    # a random blob: the chosen depth equals the brute-force maximum in mm, which differs from voxel counts
    rng = np.random.default_rng(5)
    blob = ndimage.gaussian_filter(rng.random((24, 24, 10)), 2.0) > 0.5
    blob = ndimage.binary_opening(blob)
    spacing = (0.8, 0.8, 3.0)
    target = biopsy_target(_vol(blob, spacing=spacing))
    labels, _ = ndimage.label(blob, np.ones((3, 3, 3)))
    largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    depth = _brute_depth(largest, spacing)
    assert largest[target.ijk] and target.depth_mm == pytest.approx(depth.max())


def test_oblique_affine_uses_column_norms():
    theta = np.deg2rad(30.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    mask = _ball((21, 21, 21), (10, 10, 10), 6)
    vol = _vol(mask, spacing=(2.0, 2.0, 2.0), origin=(1.0, 2.0, 3.0), rotation=rot)
    target = biopsy_target(vol)
    assert target.ijk == (10, 10, 10)
    assert target.xyz_mm == pytest.approx(tuple(vol.voxel_to_mm([10, 10, 10])))
    assert target.depth_mm == pytest.approx(_brute_depth(mask, (2, 2, 2)).max())


def test_ties_broken_by_score_then_centroid():
    mask = np.zeros((12, 12, 12), bool)
    mask[2:10, 2:10, 2:10] = True  # even box: 8 central voxels share the greatest depth
    plain = biopsy_target(_vol(mask))
    assert plain.n_deepest == 8 and plain.ijk == (5, 5, 5)  # all equally close to the centroid: first in order
    score = np.zeros(mask.shape)
    score[6, 5, 6] = 3.0
    score[2, 2, 2] = 10.0  # higher, but not among the deepest voxels
    scored = biopsy_target(_vol(mask), score=score)
    assert scored.ijk == (6, 5, 6) and scored.score == 3.0
    assert any("highest score" in r for r in scored.reasons)
    # an off-centre component: equal depth, equal score -> the one nearest the centroid
    mask2 = np.zeros((20, 9, 9), bool)
    mask2[1:18, 1:8, 1:8] = True
    mask2[1:3, 1:8, 1:8] = False
    t = biopsy_target(_vol(mask2))
    candidates = np.argwhere(_brute_depth(mask2, (1, 1, 1)) >= t.depth_mm - 1e-9)
    centroid = np.argwhere(mask2).mean(axis=0)
    best = candidates[np.argmin(np.linalg.norm(candidates - centroid, axis=1))]
    assert t.ijk == tuple(int(v) for v in best)


def test_score_volume_on_another_grid_and_nan_scores():
    mask = _ball((11, 11, 11), (5, 5, 5), 3)
    region = _vol(mask)
    other = Volume(np.ones((11, 11, 11)), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(MaskError, match="same grid"):
        biopsy_target(region, score=other)
    with pytest.raises(MaskError, match="shape"):
        biopsy_target(region, score=np.ones((5, 5, 5)))
    bad = np.ones((11, 11, 11))
    bad[5, 5, 4] = np.nan
    with pytest.raises(InvalidVoxelError):
        biopsy_target(region, score=bad)


def test_bad_regions_raise():
    with pytest.raises(MaskError, match="empty"):
        biopsy_target(_vol(np.zeros((5, 5, 5))))
    with pytest.raises(MaskError, match="not binary"):
        biopsy_target(Volume(np.full((5, 5, 5), 2, np.uint8), np.eye(4)))
    with pytest.raises(InputError, match="Volume"):
        biopsy_target(np.ones((5, 5, 5)))
    thin = np.zeros((10, 10, 5), bool)
    thin[1:9, 1:9, 2] = True
    with pytest.raises(MaskError, match="1.0 mm"):
        biopsy_target(_vol(thin), min_depth_mm=3.0)
    assert biopsy_target(_vol(thin), min_depth_mm=1.0).depth_mm == pytest.approx(1.0)


def test_image_edge_counts_as_border_and_to_dict_is_json():
    mask = np.ones((7, 7, 7), bool)  # fills the image
    target = biopsy_target(_vol(mask, spacing=(2.0, 2.0, 2.0)))
    assert target.ijk == (3, 3, 3) and target.depth_mm == pytest.approx(8.0)
    d = json.loads(json.dumps(target.to_dict()))
    assert d["ijk"] == [3, 3, 3] and d["depth_mm"] == pytest.approx(8.0) and d["reasons"]
