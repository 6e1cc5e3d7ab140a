"""Tests of core.learning.embedding_regions: dense embeddings, clusters, profiles, comparisons."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import InputError, InvalidVoxelError, MaskError
from core.imaging.volume import Volume
from core.learning.embedding_regions import (
    EmbeddingMap,
    aggressive_cluster,
    cluster_profiles,
    compare_with_kinetic,
    compare_with_truth,
    embedding_biopsy_target,
    embedding_clusters,
    embedding_map,
    evaluate_on_cache,
    labels_on_grid,
    pet_window_clusters,
)
from core.learning.mae import MAEConfig, MaskedAutoencoder3D
from core.learning.training import crop_origin

P = 4
CHANNELS = ("pet_early", "pet_late")


@pytest.fixture(scope="module")
def encoder():
    cfg = MAEConfig(in_channels=2, image_size=8, patch_size=P, embed_dim=12, depth=1, num_heads=2,
                    decoder_dim=12, decoder_depth=1, decoder_heads=2)
    torch.manual_seed(0)
    return MaskedAutoencoder3D(cfg).eval()


def _image(shape=(12, 12, 12), seed=0):
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)


def _tumour(shape=(12, 12, 12)):
    m = np.zeros(shape, bool)
    m[4:8, 4:8, 4:8] = True
    return m


def _planted(shape=(6, 6, 6), dim=12, regions=2, seed=0):
    """An embedding whose voxels split along axis 0 into ``regions`` slabs, each with its own mean."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.int64)
    bounds = np.linspace(0, shape[0], regions + 1).astype(int)
    emb = rng.normal(0.0, 0.05, (*shape, dim))
    for r in range(regions):
        truth[bounds[r]:bounds[r + 1]] = r + 1
        emb[bounds[r]:bounds[r + 1]] += rng.normal(0.0, 2.0, dim)
    return emb.astype(np.float32), truth


def _reference_map(encoder, image, origin, stride):
    """Slow, obviously-correct version of the shift-averaged map (voxel by voxel)."""
    p, s = encoder.config.patch_size, encoder.config.image_size[0]
    padded = np.pad(image, [(0, 0)] + [(p, 0)] * 3)
    out = np.zeros((s, s, s, encoder.config.embed_dim))
    cnt = np.zeros((s, s, s))
    steps = range(0, p, stride)
    g = s // p
    for a in steps:
        for b in steps:
            for c in steps:
                lo = np.asarray(origin) - (a, b, c) + p
                win = padded[:, lo[0]:lo[0] + s, lo[1]:lo[1] + s, lo[2]:lo[2] + s]
                with torch.no_grad():
                    tok = encoder.encode(torch.from_numpy(np.ascontiguousarray(win))[None])[0, 1:].numpy()
                for v in np.ndindex(s, s, s):
                    u = np.asarray(v) + (a, b, c)
                    if np.all(u < s):
                        i, j, k = u // p
                        out[v] += tok[(i * g + j) * g + k]
                        cnt[v] += 1
    return out / cnt[..., None], cnt


# ----------------------------------------------------------------------- embedding_map


def test_embedding_map_shapes_origin_and_coverage(encoder):
    image, tumour = _image(), _tumour()
    emb = embedding_map(encoder, image, tumour=tumour, stride=2, device="cpu")
    assert isinstance(emb, EmbeddingMap)
    assert emb.embedding.shape == (8, 8, 8, 12) and emb.embedding.dtype == np.float32
    assert emb.origin == crop_origin(tumour, 8) == (2, 2, 2)
    assert emb.n_shifts == 8 and emb.coverage.min() == 1 and emb.coverage.max() == 8
    assert emb.coverage[:5, :5, :5].min() == 8  # voxels far from the crop's far faces see every shift
    assert emb.crop(tumour).shape == (8, 8, 8) and emb.crop(tumour).sum() == tumour.sum()
    np.testing.assert_allclose(emb.crop_affine(np.diag([3.0, 3.0, 3.0, 1.0]))[:3, 3], [6.0, 6.0, 6.0])


def test_embedding_map_is_deterministic_and_restores_mode(encoder):
    image = _image()
    encoder.train()
    try:
        a = embedding_map(encoder, image, tumour=_tumour(), stride=2, batch_size=3, device="cpu")
        assert encoder.training
    finally:
        encoder.eval()
    b = embedding_map(encoder, image, tumour=_tumour(), stride=2, batch_size=16, device="cpu")
    np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-5, atol=1e-6)


def test_stride_equal_to_patch_gives_the_plain_token_map(encoder):
    image = _image((8, 8, 8), seed=3)
    emb = embedding_map(encoder, image, stride=P, device="cpu")
    with torch.no_grad():
        tok = encoder.encode(torch.from_numpy(image)[None])[0, 1:].numpy().reshape(2, 2, 2, 12)
    plain = tok.repeat(P, 0).repeat(P, 1).repeat(P, 2)
    assert emb.n_shifts == 1 and emb.origin == (0, 0, 0)
    np.testing.assert_allclose(emb.embedding, plain, rtol=1e-5, atol=1e-6)


def test_shift_average_matches_slow_reference(encoder):
    image = _image((10, 10, 10), seed=4)
    emb = embedding_map(encoder, image, origin=(1, 2, 0), stride=2, device="cpu")
    ref, cnt = _reference_map(encoder, image, (1, 2, 0), 2)
    np.testing.assert_array_equal(emb.coverage, cnt)
    np.testing.assert_allclose(emb.embedding, ref, rtol=1e-4, atol=1e-5)
    # a finer map than the tokens: it changes every `stride` voxels, also inside one patch
    np.testing.assert_allclose(emb.embedding[0, 0, 0], emb.embedding[1, 0, 0])
    assert not np.allclose(emb.embedding[1, 0, 0], emb.embedding[2, 0, 0])


def test_embedding_map_bad_input(encoder):
    image = _image()
    with pytest.raises(InvalidVoxelError, match="NaN"):
        bad = image.copy()
        bad[0, 1, 1, 1] = np.nan
        embedding_map(encoder, bad, device="cpu")
    with pytest.raises(InputError, match="3 channels"):
        embedding_map(encoder, np.zeros((3, 8, 8, 8)), device="cpu")
    with pytest.raises(InputError, match="smaller"):
        embedding_map(encoder, np.zeros((2, 6, 8, 8)), device="cpu")
    for stride in (0, 5, 1.5):
        with pytest.raises(InputError, match="stride"):
            embedding_map(encoder, image, stride=stride, device="cpu")
    with pytest.raises(MaskError, match="empty"):
        embedding_map(encoder, image, tumour=np.zeros((12, 12, 12)), device="cpu")
    with pytest.raises(MaskError, match="shape"):
        embedding_map(encoder, image, tumour=np.ones((12, 12, 11)), device="cpu")
    with pytest.raises(InputError, match="origin"):
        embedding_map(encoder, image, origin=(5, 0, 0), device="cpu")


# ----------------------------------------------------------------------- clusters


def test_clusters_recover_a_planted_two_region_embedding():
    from sklearn.metrics import adjusted_rand_score

    emb, truth = _planted(regions=2)
    mask = np.ones(truth.shape, bool)
    mask[0, 0, 0] = False
    res = embedding_clusters(emb, mask, k_range=(2, 4), seed=0)
    assert res.k == 2 and res.criterion == "silhouette" and set(res.criterion_values) == {2, 3, 4}
    assert res.labels[0, 0, 0] == 0 and set(np.unique(res.labels[mask])) == {1, 2}
    assert adjusted_rand_score(truth[mask], res.labels[mask]) == pytest.approx(1.0)
    assert res.n_components == 4 and 0.9 < res.explained_variance <= 1.0
    again = embedding_clusters(emb, mask, k_range=(2, 4), seed=0)
    np.testing.assert_array_equal(res.labels, again.labels)


def test_clusters_choose_three_when_three_are_planted_and_gmm_agrees():
    from sklearn.metrics import adjusted_rand_score

    emb, truth = _planted(shape=(9, 4, 4), regions=3, seed=1)
    mask = np.ones(truth.shape, bool)
    for method in ("kmeans", "gmm"):
        res = embedding_clusters(emb, mask, k_range=(2, 4), method=method)
        assert res.k == 3, method
        assert adjusted_rand_score(truth.ravel(), res.labels.ravel()) == pytest.approx(1.0)
    sizes = [int((res.labels == c).sum()) for c in (1, 2, 3)]
    assert sizes == sorted(sizes, reverse=True)


def test_clusters_bad_input():
    emb, _ = _planted()
    mask = np.ones((6, 6, 6), bool)
    with pytest.raises(MaskError, match="empty"):
        embedding_clusters(emb, np.zeros((6, 6, 6)))
    with pytest.raises(MaskError, match="shape"):
        embedding_clusters(emb, np.ones((6, 6, 5)))
    with pytest.raises(MaskError, match="binary"):
        embedding_clusters(emb, mask * 2)
    small = np.zeros((6, 6, 6), bool)
    small[0, 0, :5] = True
    with pytest.raises(MaskError, match="too few"):
        embedding_clusters(emb, small)
    bad = emb.copy()
    bad[1, 1, 1, 0] = np.inf
    with pytest.raises(InvalidVoxelError):
        embedding_clusters(bad, mask)
    with pytest.raises(InputError, match="k_range"):
        embedding_clusters(emb, mask, k_range=(1, 3))
    with pytest.raises(InputError, match="method"):
        embedding_clusters(emb, mask, method="dbscan")
    with pytest.raises(InputError, match=r"\(I, J, K, D\)"):
        embedding_clusters(emb[..., 0], mask)


# ----------------------------------------------------------------------- profiles and the aggressive cluster


def _washout_image(shape=(6, 6, 6)):
    """Slab 0:3 early 3, late 1.5 (washout); slab 3:6 early 2, late 2.4 (rising); two MRI channels."""
    img = np.zeros((4, *shape), np.float32)
    img[0, :3], img[1, :3] = 3.0, 1.5
    img[0, 3:], img[1, 3:] = 2.0, 2.4
    img[2, :3], img[3] = 1.0, -0.5
    return img


def test_profiles_and_aggressive_cluster_pick_the_planted_washout_region():
    img = _washout_image()
    emb = np.zeros((6, 6, 6, 5), np.float32)
    emb[:3, ..., 0], emb[3:, ..., 1] = 4.0, 4.0
    emb += np.random.default_rng(2).normal(0, 0.05, emb.shape).astype(np.float32)
    res = embedding_clusters(emb, np.ones((6, 6, 6)), k_range=(2, 3))
    prof = cluster_profiles(res.labels, img, ("pet_early", "pet_late", "t1c", "flair"), voxel_mm=3.0)
    assert list(prof.columns) == ["label", "n_voxels", "volume_ml", "early_suvr", "late_suvr", "late_early_ratio",
                                  "t1c_z", "flair_z"]
    wash = int(res.labels[0, 0, 0])
    row = prof.set_index("label").loc[wash]
    assert row.n_voxels == 108 and row.volume_ml == pytest.approx(108 * 0.027)
    assert row.late_early_ratio == pytest.approx(0.5) and row.t1c_z == pytest.approx(1.0)
    assert prof.set_index("label").loc[int(res.labels[5, 0, 0]), "late_early_ratio"] == pytest.approx(1.2)
    assert aggressive_cluster(prof) == wash


def test_aggressive_cluster_ranks_and_ties():
    # label 3: highest early (rank 1) and second-lowest ratio (rank 2) -> score 3, beats label 1 (2 + 3 = 5)
    prof = pd.DataFrame({"label": [1, 2, 3], "early_suvr": [2.0, 1.0, 3.0], "late_early_ratio": [1.1, 0.6, 0.8]})
    assert aggressive_cluster(prof) == 3
    # a tie of the summed rank goes to the higher early uptake
    tie = pd.DataFrame({"label": [1, 2], "early_suvr": [2.0, 3.0], "late_early_ratio": [0.7, 0.9]})
    assert aggressive_cluster(tie) == 2
    with pytest.raises(InputError, match="columns"):
        aggressive_cluster(pd.DataFrame({"label": [1]}))
    with pytest.raises(InvalidVoxelError):
        aggressive_cluster(pd.DataFrame({"label": [1, 2], "early_suvr": [1.0, np.nan],
                                         "late_early_ratio": [1.0, 1.0]}))


def test_profiles_bad_input():
    img = _washout_image()
    lab = np.ones((6, 6, 6), np.uint8)
    with pytest.raises(InputError, match="channel names"):
        cluster_profiles(lab, img, ("pet_early", "pet_late"))
    with pytest.raises(MaskError, match="shape"):
        cluster_profiles(lab[:5], img)
    with pytest.raises(MaskError, match="no cluster"):
        cluster_profiles(np.zeros_like(lab), img)
    with pytest.raises(InputError, match="pet_late"):
        cluster_profiles(lab, img, ("pet_early", "t1", "t1c", "flair"))


def test_pet_window_baseline_finds_the_washout_region():
    img = _washout_image()[:2]
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    res = pet_window_clusters(img, np.ones((6, 6, 6)), CHANNELS, k_range=(2, 4))
    agg = aggressive_cluster(cluster_profiles(res.labels, img, CHANNELS)) == res.labels
    truth = np.zeros((6, 6, 6), bool)
    truth[:3] = True
    assert res.k == 2 and compare_with_truth(agg, truth)["dice"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="pet_early"):
        pet_window_clusters(img, np.ones((6, 6, 6)), ("t1c", "pet_late"))


# ----------------------------------------------------------------------- comparisons


def test_compare_identical_and_renamed_labelings():
    a = np.zeros((6, 6, 6), np.uint8)
    a[:2], a[2:4], a[4:] = 1, 2, 3
    tumour = np.ones(a.shape, bool)
    same = compare_with_kinetic(a, a, tumour, emb_aggressive=2, kinetic_aggressive=2)
    assert same["ari"] == pytest.approx(1.0) and same["aggressive_dice"] == pytest.approx(1.0)
    np.testing.assert_allclose(same["dice"].to_numpy(), np.eye(3))
    renamed = compare_with_kinetic(a, (4 - a) * (a > 0), tumour, emb_aggressive=3, kinetic_aggressive=1)
    assert renamed["ari"] == pytest.approx(1.0) and renamed["aggressive_dice"] == pytest.approx(1.0)
    assert renamed["dice"].loc[1, 3] == pytest.approx(1.0) and renamed["dice"].loc[1, 1] == 0.0
    other = np.zeros_like(a)
    other[..., :3], other[..., 3:] = 1, 2
    assert abs(compare_with_kinetic(a, other, tumour)["ari"]) < 0.1
    assert np.isnan(compare_with_kinetic(a, a, tumour)["aggressive_dice"])
    with pytest.raises(MaskError, match="different shapes"):
        compare_with_kinetic(a, a[:5], tumour)
    with pytest.raises(MaskError, match="empty"):
        compare_with_kinetic(a, a, np.zeros(a.shape))
    assert compare_with_truth(a == 1, a == 1)["dice"] == pytest.approx(1.0)
    assert compare_with_truth(a == 1, a == 2)["dice"] == 0.0


def test_labels_on_grid_resamples_kinetic_labels_onto_the_model_grid():
    fine = np.zeros((12, 12, 12), np.uint8)
    fine[:6] = 1
    fine[6:] = 2
    vol = Volume(fine, np.diag([1.5, 1.5, 1.5, 1.0]), "SEG", "label")
    coarse = labels_on_grid(vol, (6, 6, 6), np.diag([3.0, 3.0, 3.0, 1.0]))
    assert coarse.shape == (6, 6, 6) and coarse.dtype == np.uint8
    assert set(np.unique(coarse[:3])) == {1} and set(np.unique(coarse[3:])) == {2}
    with pytest.raises(InputError, match="Volume"):
        labels_on_grid(fine, (6, 6, 6), np.eye(4))


def test_biopsy_target_inside_the_mask_and_in_mm():
    m = np.zeros((8, 8, 8), np.uint8)
    m[1:6, 2:7, 1:4] = 1
    m[7, 7, 7] = 1  # a stray voxel: the target lies in the larger part
    affine = np.array([[3.0, 0, 0, -90.0], [0, 3.0, 0, -100.0], [0, 0, 3.0, -80.0], [0, 0, 0, 1]])
    t = embedding_biopsy_target(m, affine, origin=(10, 20, 30))
    assert m[t.ijk] == 1 and t.n_components == 2
    expected = affine[:3, :3] @ (np.asarray(t.ijk) + (10, 20, 30)) + affine[:3, 3]
    np.testing.assert_allclose(t.xyz_mm, expected)
    assert t.depth_mm >= 3.0 and "embeddings" in t.reasons[-1] and "3 x 3 x 3 mm" in t.reasons[-1]
    with pytest.raises(MaskError, match="empty"):
        embedding_biopsy_target(np.zeros((4, 4, 4)), affine)
    with pytest.raises(InputError, match="affine"):
        embedding_biopsy_target(m, np.eye(3))
    with pytest.raises(InputError, match="origin"):
        embedding_biopsy_target(m, affine, origin=(1, 2))


# ----------------------------------------------------------------------- cohort evaluation


def _write_case(directory, pid, image, tumour, aggressive, label=1):
    np.savez_compressed(directory / f"{pid}.npz", image=image.astype(np.float16), tumour=tumour.astype(np.uint8),
                        aggressive=aggressive.astype(np.uint8), brain=np.ones_like(tumour, np.uint8),
                        affine=np.diag([3.0, 3.0, 3.0, 1.0]), label=np.int64(label))


def test_evaluate_on_cache_reports_embedding_next_to_the_pet_baseline(encoder, tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps({"spec": {"channels": list(CHANNELS)}}))
    rng = np.random.default_rng(5)
    tumour = np.zeros((12, 12, 12), bool)
    tumour[3:9, 3:9, 3:9] = True
    truth = tumour.copy()
    truth[6:] = False
    image = np.full((2, 12, 12, 12), 0.5, np.float32)
    image[0][tumour], image[1][tumour] = 2.0, 2.4
    image[0][truth], image[1][truth] = 3.0, 1.5
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    _write_case(tmp_path, "P1", image, tumour, truth)
    _write_case(tmp_path, "P2", image, tumour, np.zeros_like(tumour), label=0)  # no truth: skipped
    table = evaluate_on_cache(encoder, tmp_path, ["P1", "P2"], stride=2, device="cpu")
    assert list(table.patient_id) == ["P1"]
    row = table.iloc[0]
    assert row.n_tumour == 216 and row.n_truth == 108 and row.tumour_in_crop == pytest.approx(216 / 216)
    assert row.dice_pet == pytest.approx(1.0)
    assert 0.0 <= row.dice_emb <= 1.0 and row.time_s > 0 and -1.0 <= row.ari_emb_pet <= 1.0
    with pytest.raises(InputError, match="not in this cache"):
        evaluate_on_cache(encoder, tmp_path, ["nobody"], device="cpu")
    with pytest.raises(InputError, match="no patient"):
        evaluate_on_cache(encoder, tmp_path, [], device="cpu")
