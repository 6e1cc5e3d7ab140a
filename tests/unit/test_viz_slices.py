"""The fused orthogonal figure carries the right planes, ranges and orientation."""

import numpy as np

from core.imaging import Volume
from core.viz.slices import fused_png, fusion_figure, orthogonal_planes, robust_range, window_from_level


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


def _pixels(uri):
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_figure_has_one_fused_image_per_plane_a_colour_bar_and_radiological_axes():
    g = _grid()
    fig = fusion_figure(orthogonal_planes(g, (2, 3, 4), overlay=g), background_range=(0, 7),
                        overlay_range=(0, 14), overlay_threshold=1.0, cursor_mm=g.voxel_to_mm((2, 3, 4)))
    assert [t.type for t in fig.data] == ["image", "image", "image", "heatmap"]
    assert fig.data[3].showscale and (fig.data[3].zmin, fig.data[3].zmax) == (0, 14)
    axial = _pixels(fig.data[0].source)
    assert axial.shape == (12, 10, 3)
    assert tuple(axial[0, 0]) == (0, 0, 0)                 # zero background, overlay below threshold: clear
    assert axial[3, 2, 0] > axial[3, 2, 2]                  # the hot voxel shows the "Hot" colour (red > blue)
    assert fig.layout.xaxis.autorange == "reversed"         # patient right on viewer left
    assert "R" in fig.layout.xaxis.title.text.split("←")[0]
    assert len(fig.layout.shapes) == 6                      # a crosshair per plane


def test_fused_png_blends_with_the_given_opacity():
    background = np.full((2, 2), 100.0)
    overlay = np.array([[0.0, 10.0], [np.nan, 10.0]])
    rgb = _pixels(fused_png(background, (0, 200), overlay, (0, 10), colormap="Greys", opacity=0.5, threshold=5))
    grey = round(0.5 * 255)
    assert tuple(rgb[0, 0]) == (grey,) * 3 and tuple(rgb[1, 0]) == (grey,) * 3   # below threshold / NaN
    # plotly's "Greys" runs white -> black, so the maximum maps to black: (1-a) g + a * 0
    assert tuple(rgb[0, 1]) == (round(0.5 * 127.5),) * 3


def test_ranges():
    assert window_from_level(40, 400) == (-160, 240)
    lo, hi = robust_range(np.array([0, 0, 1, 2, 3, 4, 100.0]), 0, 100)
    assert (lo, hi) == (1.0, 100.0)
    assert robust_range(np.zeros(5)) == (0.0, 1.0)
