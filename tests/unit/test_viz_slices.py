"""The fused orthogonal figure carries the right planes, ranges and orientation."""

import numpy as np

from core.imaging import Volume
from core.viz.slices import fusion_figure, orthogonal_planes, robust_range, window_from_level


def _grid():
    data = np.zeros((10, 12, 8), np.float32)
    data[2, 3, 4] = 7.0
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-9.0, -11.0, -7.0]
    return Volume(data, aff, "MR")


def test_planes_are_oriented_rows_vertical_columns_horizontal():
    g = _grid()
    planes = orthogonal_planes(g, (2, 3, 4), overlay=g, overlay_scale=2.0)
    ax = planes["axial"]
    assert ax.background.shape == (12, 10)          # rows: y (P->A), columns: x (L->R)
    assert ax.background[3, 2] == 7.0
    assert ax.overlay[3, 2] == 14.0                  # scale applied to the overlay only
    np.testing.assert_allclose(ax.x_mm, -9.0 + 2.0 * np.arange(10))
    assert planes["sagittal"].background.shape == (8, 12)
    assert planes["coronal"].background[4, 2] == 7.0


def test_figure_has_background_and_overlay_per_plane_and_radiological_axes():
    g = _grid()
    fig = fusion_figure(orthogonal_planes(g, (2, 3, 4), overlay=g), background_range=(0, 7),
                        overlay_range=(0, 7), overlay_threshold=1.0, cursor_mm=g.voxel_to_mm((2, 3, 4)))
    assert len(fig.data) == 6
    overlay = fig.data[1]
    assert np.isnan(overlay.z[0, 0]) and overlay.z[3, 2] == 7.0   # below threshold left clear
    assert fig.layout.xaxis.autorange == "reversed"                 # patient right on viewer left
    assert "R" in fig.layout.xaxis.title.text.split("←")[0]


def test_ranges():
    assert window_from_level(40, 400) == (-160, 240)
    lo, hi = robust_range(np.array([0, 0, 1, 2, 3, 4, 100.0]), 0, 100)
    assert (lo, hi) == (1.0, 100.0)
    assert robust_range(np.zeros(5)) == (0.0, 1.0)
