"""3D scene: marching-cubes surfaces in scanner mm, face budget, figure traces and target."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from core.errors import InputError, MaskError
from core.imaging.volume import Volume
from core.viz.scene3d import BACKGROUND, SceneStructure, scene_figure, surface_mesh

# Non-trivial affine: axes permuted and flipped, unequal voxel sizes, an offset (left-handed).
AFFINE = np.array([[0.0, -1.5, 0.0, 40.0],
                   [2.0, 0.0, 0.0, -30.0],
                   [0.0, 0.0, 1.25, -20.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _sphere(centre_mm, radius_mm, shape=(40, 40, 48), affine=AFFINE) -> Volume:
    ijk = np.indices(shape).reshape(3, -1).T.astype(float)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    inside = np.linalg.norm(xyz - np.asarray(centre_mm), axis=1) <= radius_mm
    return Volume(inside.reshape(shape).astype(np.uint8), affine, "SEG", "label")


def _outward_fraction(verts, faces, centre):
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    normals = np.cross(b - a, c - a)
    return float(np.mean(np.sum(normals * ((a + b + c) / 3 - centre), axis=1) > 0))


@pytest.mark.parametrize("affine", [AFFINE, np.diag([1.0, 1.5, 2.0, 1.0])], ids=["left-handed", "diagonal"])
def test_sphere_surface_lies_at_its_radius_in_mm(affine):
    # centre chosen inside the grid for both affines: index (20, 20, 24)
    centre = np.array([20.0, 20.0, 24.0]) @ affine[:3, :3].T + affine[:3, 3]
    radius = 14.0
    verts, faces = surface_mesh(_sphere(centre, radius, affine=affine))
    r = np.linalg.norm(verts - centre, axis=1)
    voxel = np.linalg.norm(affine[:3, :3], axis=0).max()
    assert np.all(np.abs(r - radius) <= voxel), (r.min(), r.max())
    assert abs(np.median(r) - radius) < 0.5 * voxel
    assert faces.dtype == np.int64 and faces.min() >= 0 and faces.max() < len(verts)
    assert _outward_fraction(verts, faces, centre) > 0.99          # normals point out of the structure


def test_mask_touching_the_grid_edge_is_closed_and_tiny_masks_still_mesh():
    m = np.zeros((6, 6, 6), np.uint8)
    m[:3, :3, :3] = 1                                               # touches three faces of the grid
    verts, _ = surface_mesh(Volume(m, np.eye(4)))
    assert verts[:, 0].min() < 0.0                                   # the surface closes outside index 0
    one = np.zeros((9, 9, 9), np.uint8)
    one[4, 4, 4] = 1                                                 # one voxel, smoothed below 1/2
    verts, faces = surface_mesh(Volume(one, np.eye(4)), smooth_sigma_mm=2.0)
    assert len(faces) > 0 and np.allclose(verts.mean(axis=0), 4.0, atol=0.2)


def test_brain_size_mask_respects_the_face_budget():
    from core.phantoms.anatomy import load_anatomy

    anatomy = load_anatomy()
    brain = Volume(anatomy.brain.astype(np.uint8), anatomy.affine, "SEG", "label")
    verts, faces = surface_mesh(brain)
    assert 5_000 < len(faces) <= 30_000
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    extent = hi - lo
    assert 120 < extent[0] < 160 and 150 < extent[1] < 200            # an adult brain, mm (L-R, A-P)
    assert abs((lo[0] + hi[0]) / 2) < 5.0                              # symmetric template: centred on x = 0
    _, small = surface_mesh(brain, max_faces=2_000)
    assert len(small) <= 2_000


def test_scene_figure_traces_and_target():
    centre = np.array([20.0, 20.0, 24.0]) @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    brain = _sphere(centre, 18.0)
    tumour = _sphere(centre + [5, 0, 0], 6.0)
    target = (float(centre[0] + 5), float(centre[1]), float(centre[2]))
    fig = scene_figure([SceneStructure("brain", brain, "#cccccc", 0.15),
                        {"name": "tumour", "mask": tumour, "color": "#f28e2b"}],
                       target_mm=target, title="Case 1")
    assert isinstance(fig, go.Figure)
    types = [t.type for t in fig.data]
    assert types == ["mesh3d", "mesh3d", "scatter3d", "scatter3d", "scatter3d", "scatter3d"]
    brain_t, tumour_t, marker = fig.data[0], fig.data[1], fig.data[2]
    assert (brain_t.name, brain_t.opacity, tumour_t.name, tumour_t.opacity) == ("brain", 0.15, "tumour", 1.0)
    assert (marker.x[0], marker.y[0], marker.z[0]) == pytest.approx(target)
    assert marker.name == "biopsy target" and f"x = {target[0]:.1f} mm" in marker.hovertemplate
    for axis, line in enumerate(fig.data[3:]):
        pts = np.column_stack([line.x, line.y, line.z])
        assert np.allclose(pts.mean(axis=0), target)                 # centred on the target
        moved = np.flatnonzero(np.ptp(pts, axis=0) > 0)
        assert moved.tolist() == [axis]                               # one crosshair along each axis
    scene = fig.layout.scene
    assert scene.aspectmode == "data"
    assert (scene.xaxis.title.text, scene.yaxis.title.text, scene.zaxis.title.text) == \
        ("x (mm, R)", "y (mm, A)", "z (mm, S)")
    assert fig.layout.paper_bgcolor == BACKGROUND and fig.layout.showlegend is True
    assert fig.layout.title.text == "Case 1"
    # mesh vertices are the surface in mm: the tumour mesh centre is where the tumour is
    tv = np.column_stack([tumour_t.x, tumour_t.y, tumour_t.z])
    assert np.allclose(tv.mean(axis=0), centre + [5, 0, 0], atol=1.0)


def test_scene_without_target_and_bad_inputs():
    box = np.zeros((10, 10, 10), np.uint8)
    box[3:7, 3:7, 3:7] = 1
    fig = scene_figure([{"name": "box", "mask": Volume(box, np.eye(4))}])
    assert [t.type for t in fig.data] == ["mesh3d"]
    with pytest.raises(MaskError, match="empty"):
        scene_figure([{"name": "tumour", "mask": Volume(np.zeros((5, 5, 5), np.uint8), np.eye(4))}])
    with pytest.raises(MaskError, match="not an image"):
        scene_figure([{"name": "tumour", "mask": box}])
    with pytest.raises(InputError, match="three coordinates"):
        scene_figure([], target_mm=(1.0, 2.0))
    with pytest.raises(InputError, match="opacity"):
        scene_figure([SceneStructure("box", Volume(box, np.eye(4)), opacity=1.5)])
