"""Figures of the AI diagnosis page: slice overlay, evidence mask, label-efficiency plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.viz.diagnosis import attribution_slice_figure, evidence_mask, label_efficiency_figure


def _volumes():
    bg = np.random.default_rng(0).normal(size=(10, 12, 14))
    attr = np.zeros_like(bg)
    attr[5, 6, 7] = 4.0
    attr[2, 2, 2] = -2.0
    tumour = np.zeros(bg.shape, bool)
    tumour[4:7, 5:8, 6:9] = True
    return bg, attr, tumour


def test_slice_defaults_to_the_largest_tumour_slice_and_scales_signed_evidence():
    bg, attr, tumour = _volumes()
    fig = attribution_slice_figure(bg, attr, tumour, axis=2, method="saliency")
    base, heat, outline = fig.data
    assert "slice 6" in fig.layout.title.text  # tumour planes z = 6..8 tie; the first is taken
    assert np.asarray(base.z).shape == (12, 10)  # rows along y, columns along x
    z = np.asarray(heat.z)
    assert z.max() <= 1 and z.min() >= -1 and heat.zmin == -1 and heat.zmax == 1
    fig0 = attribution_slice_figure(bg, attr, tumour, axis=0, index=5)
    assert np.asarray(fig0.data[1].z).max() == 1.0  # the voxel of strongest evidence, clipped at the quantile
    assert np.asarray(fig0.data[2].z).sum() == 9  # the tumour outline's plane


def test_slice_refuses_mismatched_grids_and_bad_slices():
    bg, attr, tumour = _volumes()
    with pytest.raises(InputError, match="one\n?.*3D grid|3D grid"):
        attribution_slice_figure(bg, attr[:-1], tumour)
    with pytest.raises(InputError, match="outside"):
        attribution_slice_figure(bg, attr, tumour, axis=1, index=12)
    with pytest.raises(InputError, match="axis"):
        attribution_slice_figure(bg, attr, tumour, axis=3)


def test_evidence_mask_keeps_the_strongest_positive_voxels_in_the_brain():
    a = np.arange(-50.0, 50.0).reshape(4, 5, 5)
    top = evidence_mask(a, top_fraction=0.1)
    assert top.sum() == 5 and a[top].min() == 45.0
    brain = np.zeros(a.shape, bool)
    brain[:2] = True  # only negative values inside
    assert not evidence_mask(a, within=brain).any()
    with pytest.raises(InputError):
        evidence_mask(a, top_fraction=0)


def test_label_efficiency_plot_has_one_line_per_arm_with_asymmetric_cis():
    t = pd.DataFrame({"arm": ["cnn_scratch", "cnn_scratch", "radiomics", "radiomics"], "seed": 0,
                      "n_labels": [40, 180, 40, 180], "test_auc": [0.7, 0.9, 0.8, 0.95],
                      "test_ci_low": [0.6, 0.85, 0.7, 0.9], "test_ci_high": [0.75, 0.93, 0.85, 0.97]})
    fig = label_efficiency_figure(t, titles={"cnn_scratch": "CNN"})
    assert [tr.name for tr in fig.data] == ["CNN", "radiomics"]
    np.testing.assert_allclose(fig.data[0].error_y.array, [0.05, 0.03])
    np.testing.assert_allclose(fig.data[0].error_y.arrayminus, [0.1, 0.05])
    with pytest.raises(InputError, match="lacks"):
        label_efficiency_figure(t, split="external")


def test_label_efficiency_plot_with_seeds_shows_their_mean_range_and_points():
    t = pd.DataFrame({"arm": "cnn_scratch", "seed": [0, 1, 2, 0, 1, 2], "n_labels": [40] * 3 + [180] * 3,
                      "test_auc": [0.7, 0.8, 0.9, 0.9, 0.92, 0.94], "test_ci_low": 0.5, "test_ci_high": 1.0})
    line, points = label_efficiency_figure(t).data
    np.testing.assert_allclose(line.y, [0.8, 0.92])
    np.testing.assert_allclose(line.error_y.array, [0.1, 0.02])
    np.testing.assert_allclose(line.error_y.arrayminus, [0.1, 0.02])
    assert len(points.y) == 6


def test_label_slice_draws_each_cluster_the_aggressive_outline_and_the_target():
    from core.viz.diagnosis import label_slice_figure

    bg = np.zeros((6, 6, 6))
    lab = np.zeros((6, 6, 6), int)
    lab[1:5, 1:5, 3] = 1
    lab[2:4, 2:4, 3] = 2
    fig = label_slice_figure(bg, lab, highlight=lab == 2, target_ijk=(2, 3, 3))
    assert [t.name for t in fig.data] == ["PET late (SUVR)", "cluster 1", "cluster 2", "aggressive", "target"]
    assert "slice 3" in fig.layout.title.text
    assert list(fig.data[-1].x) == [6.0] and list(fig.data[-1].y) == [9.0]
    off = label_slice_figure(bg, lab, target_ijk=(2, 3, 1), index=3)
    assert list(off.data[-1].x) == []  # the target is in another slice
    with pytest.raises(InputError, match="highlight"):
        label_slice_figure(bg, lab, highlight=np.zeros((5, 5, 5), bool))


def test_loss_curve_marks_the_best_validation_epoch():
    from core.viz.diagnosis import loss_curve_figure

    h = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": abs(e - 3) + 0.5} for e in range(1, 6)]
    fig = loss_curve_figure(h)
    assert list(fig.data[2].x) == [3] and list(fig.data[2].y) == [0.5]
    with pytest.raises(InputError, match="no epochs"):
        loss_curve_figure([])
