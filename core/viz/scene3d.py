r"""Interactive 3D scene of a case: brain surface, tumour, aggressive sub-region, biopsy target.

Pure functions, data in and figure out: masks (:class:`~core.imaging.volume.Volume`) become
triangle meshes in scanner millimetres, meshes become ``plotly`` ``Mesh3d`` traces, and
a target point becomes a marker with crosshairs. Nothing here reads files or session
state.

Surfaces
--------
A binary mask :math:`M` is padded by one empty voxel (so that structures touching the
edge of the grid close), smoothed by a Gaussian whose width is given in millimetres and
turned into voxels per axis from the affine (:math:`\sigma_i = \sigma_\mathrm{mm} / \Delta_i`),
and its iso-surface at level 1/2 is extracted by marching cubes (Lorensen & Cline 1987;
the Lewiner et al. 2003 variant of ``skimage.measure.marching_cubes``). The level-1/2
surface of a smoothed step lies on the mask boundary where the boundary is flat; on a
sphere of radius :math:`R` it moves inward by about :math:`\sigma^2/R`, a fraction of a
voxel for the default 1 mm. Vertices are mapped from voxel indices to RAS+ millimetres
through the affine,

.. math::

    \mathbf{x}_\mathrm{mm} = A_{3\times 3}\,(\mathbf{ijk} - \mathbf{1}) + \mathbf{t}

(the :math:`-\mathbf{1}` undoes the padding). Faces are wound so that their normals point
out of the structure whatever the handedness of the affine. To stay light in a browser a
surface is limited to ``max_faces`` triangles (default 30 000, this work) by marching
over every :math:`s`-th voxel (``step_size``), :math:`s` growing until the budget holds:
the face count falls roughly as :math:`1/s^2`.

Display (this work): dark background matching Streamlit's dark theme, axes in scanner
millimetres labelled with the RAS+ direction each increases towards, equal scaling of
the three axes (``aspectmode="data"``), one legend entry per structure.

References
----------
Lorensen WE, Cline HE. Marching cubes: a high resolution 3D surface construction
algorithm. Comput Graph (SIGGRAPH) 1987;21:163-169.
Lewiner T, Lopes H, Vieira AW, Tavares G. Efficient implementation of marching cubes'
cases with topological guarantees. J Graph Tools 2003;8:1-15.

Examples
--------
>>> import numpy as np
>>> from core.imaging.volume import Volume
>>> m = np.zeros((20, 20, 20), np.uint8); m[5:15, 5:15, 5:15] = 1
>>> fig = scene_figure([SceneStructure("box", Volume(m, np.eye(4), "SEG", "label"), "#e4572e", 1.0)],
...                    target_mm=(10.0, 10.0, 10.0))
>>> [t.type for t in fig.data]
['mesh3d', 'scatter3d', 'scatter3d', 'scatter3d', 'scatter3d']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from scipy import ndimage

from core.errors import InputError, MaskError
from core.imaging.volume import Volume

__all__ = ["SceneStructure", "surface_mesh", "scene_figure", "DEFAULT_COLORS", "BACKGROUND", "MAX_FACES"]

#: Most triangles per surface (this work): a brain stays fluid in a browser.
MAX_FACES = 30_000
#: Page and scene background: Streamlit's dark theme background colour.
BACKGROUND = "#0e1117"
_FOREGROUND = "#fafafa"
_GRID = "#3a3f4b"
#: Colours given to structures without one, in order.
DEFAULT_COLORS = ("#c8c8c8", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948")
_TARGET_COLOR = "#00e5ff"


@dataclass(frozen=True, eq=False)
class SceneStructure:
    """One structure of the scene.

    Attributes
    ----------
    name : str
        Legend label (for example ``"brain"``, ``"tumour"``).
    mask : Volume
        Binary mask (non-zero voxels are inside); any grid, placed by its affine.
    color : str, optional
        CSS colour; default from :data:`DEFAULT_COLORS`.
    opacity : float, default=1.0
        0 (invisible) to 1 (opaque); about 0.15 suits a brain surface around a tumour.
    """

    name: str
    mask: Volume
    color: str | None = None
    opacity: float = 1.0


def _check_structure_mask(mask, name: str) -> np.ndarray:
    if not isinstance(mask, Volume):
        raise MaskError(f"the {name} mask is a {type(mask).__name__}, not an image with a position in the scanner",
                        fix="Pass a Volume (data and affine), as read from NIfTI or DICOM.")
    data = np.asarray(mask.data)
    if data.ndim != 3:
        raise MaskError(f"the {name} mask must be 3D, it has shape {data.shape}", path=mask.source,
                        fix="Export the mask as a single 3D label image.")
    inside = data != 0
    if not inside.any():
        raise MaskError(f"the {name} mask is empty: no voxel is set", path=mask.source,
                        fix="Draw or export the region again.")
    return inside


def surface_mesh(mask: Volume, *, smooth_sigma_mm: float = 1.0,
                 max_faces: int = MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    r"""Triangle surface of a binary mask, in scanner millimetres.

    Parameters
    ----------
    mask : Volume
        Binary mask; voxels that are not zero are inside.
    smooth_sigma_mm : float, default=1.0
        Gaussian smoothing before the surface is extracted, mm (0: none, a blocky
        surface). Converted to voxels per axis from the affine.
    max_faces : int, default=30000
        Most triangles returned; larger surfaces are extracted on a coarser step.

    Returns
    -------
    vertices : ndarray of shape (V, 3)
        RAS+ millimetres.
    faces : ndarray of int64 of shape (F, 3)
        Vertex indices of each triangle, wound counter-clockwise seen from outside.

    Raises
    ------
    MaskError
        A mask that is not a 3D Volume or has no voxel set.

    Examples
    --------
    >>> import numpy as np
    >>> from core.imaging.volume import Volume
    >>> m = np.zeros((12, 12, 12), bool); m[3:9, 3:9, 3:9] = True
    >>> v, f = surface_mesh(Volume(m, np.diag([2.0, 2.0, 2.0, 1.0])))
    >>> bool(v[:, 0].min() > 4.0 and v[:, 0].max() < 18.0), f.shape[1]
    (True, 3)
    """
    from skimage.measure import marching_cubes

    inside = _check_structure_mask(mask, getattr(mask, "meta", {}).get("label_name", "structure"))
    sigma_mm = float(smooth_sigma_mm)
    if not (math.isfinite(sigma_mm) and sigma_mm >= 0):
        raise InputError(f"smooth_sigma_mm must be a number >= 0, got {smooth_sigma_mm!r}")
    max_faces = int(max_faces)
    if max_faces < 4:
        raise InputError(f"max_faces must be at least 4, got {max_faces}")
    field = np.pad(inside.astype(np.float32), 1)
    if sigma_mm > 0:
        spacing = np.asarray(mask.spacing, dtype=float)
        field = ndimage.gaussian_filter(field, sigma_mm / spacing, mode="constant")
    # A structure thinner than the smoothing may never reach 1/2: use half its peak.
    level = min(0.5, 0.5 * float(field.max()))
    step = 1
    while True:
        verts, faces, _, _ = marching_cubes(field, level=level, step_size=step, allow_degenerate=False)
        if len(faces) <= max_faces or step >= max(field.shape):
            break
        step = max(step + 1, int(math.ceil(step * math.sqrt(len(faces) / max_faces))))
    affine = np.asarray(mask.affine, dtype=float)
    xyz = (verts - 1.0) @ affine[:3, :3].T + affine[:3, 3]
    faces = faces.astype(np.int64)
    # In index space skimage winds the faces of a "values above level" object so that their
    # right-hand normals point inward; reverse them, unless a left-handed affine mirrors
    # the mesh (which reverses the winding once more).
    if np.linalg.det(affine[:3, :3]) > 0:
        faces = faces[:, ::-1]
    return xyz, np.ascontiguousarray(faces)


def _as_structure(item, k: int) -> SceneStructure:
    if isinstance(item, SceneStructure):
        s = item
    elif isinstance(item, dict):
        unknown = set(item) - {"name", "mask", "color", "opacity"}
        if "mask" not in item or unknown:
            raise InputError(f"scene structure {k + 1} must be a dict with 'name', 'mask', and optionally 'color' "
                             f"and 'opacity'; got keys {sorted(item)}")
        s = SceneStructure(str(item.get("name", f"structure {k + 1}")), item["mask"], item.get("color"),
                           float(item.get("opacity", 1.0)))
    else:
        raise InputError(f"scene structure {k + 1} is a {type(item).__name__}; give a SceneStructure or a dict")
    if not (math.isfinite(s.opacity) and 0 <= s.opacity <= 1):
        raise InputError(f"the opacity of {s.name!r} must lie in [0, 1], got {s.opacity!r}")
    return s


def _axis(title: str) -> dict:
    return dict(title=dict(text=title, font=dict(color=_FOREGROUND)), backgroundcolor=BACKGROUND,
                gridcolor=_GRID, zerolinecolor=_GRID, color=_FOREGROUND, showbackground=True)


def scene_figure(structures, *, target_mm=None, target_label: str = "biopsy target", title: str | None = None,
                 smooth_sigma_mm: float = 1.0, max_faces: int = MAX_FACES,
                 crosshair_mm: float = 10.0) -> go.Figure:
    """Interactive 3D figure of structures and an optional target point.

    Parameters
    ----------
    structures : list of SceneStructure or dict
        Each becomes a ``go.Mesh3d`` named after it (dicts take the keys ``name``,
        ``mask``, ``color``, ``opacity``). Typical: a translucent brain (opacity 0.15),
        an opaque tumour and aggressive sub-region.
    target_mm : sequence of 3 floats, optional
        RAS+ millimetres of the target; drawn as a marker with three crosshair lines.
    target_label : str, default="biopsy target"
        Legend and hover label of the target.
    title : str, optional
    smooth_sigma_mm, max_faces
        Passed to :func:`surface_mesh`.
    crosshair_mm : float, default=10.0
        Half-length of each crosshair line, mm.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces in order: one ``mesh3d`` per structure, then the target marker and its
        x, y and z crosshair lines (``scatter3d``).

    Raises
    ------
    MaskError
        An empty or non-3D mask.
    InputError
        A malformed structure, opacity outside [0, 1], or a target that is not three
        finite numbers.
    """
    items = [_as_structure(item, k) for k, item in enumerate(structures or [])]
    fig = go.Figure()
    for k, s in enumerate(items):
        color = s.color or DEFAULT_COLORS[k % len(DEFAULT_COLORS)]
        try:
            verts, faces = surface_mesh(s.mask, smooth_sigma_mm=smooth_sigma_mm, max_faces=max_faces)
        except MaskError as err:
            raise MaskError(f"{s.name}: {err.problem}", path=err.path, fix=err.fix) from None
        fig.add_trace(go.Mesh3d(
            x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
            name=s.name, color=color, opacity=s.opacity, showlegend=True, flatshading=False,
            lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
            hovertemplate=f"{s.name}<br>x %{{x:.1f}} mm<br>y %{{y:.1f}} mm<br>z %{{z:.1f}} mm<extra></extra>",
        ))
    if target_mm is not None:
        try:
            p = np.asarray(target_mm, dtype=float).reshape(3)
        except (TypeError, ValueError):
            raise InputError(f"the target must be three coordinates in mm (x, y, z), got {target_mm!r}") from None
        if not np.all(np.isfinite(p)):
            raise InputError(f"the target coordinates must be finite numbers, got {p.tolist()}")
        hover = (f"{target_label}<br>x = {p[0]:.1f} mm (R)<br>y = {p[1]:.1f} mm (A)<br>"
                 f"z = {p[2]:.1f} mm (S)<extra></extra>")
        fig.add_trace(go.Scatter3d(
            x=[p[0]], y=[p[1]], z=[p[2]], mode="markers", name=target_label, legendgroup="target",
            marker=dict(size=6, color=_TARGET_COLOR, symbol="diamond", line=dict(color=_FOREGROUND, width=1)),
            hovertemplate=hover))
        h = float(crosshair_mm)
        for axis, letter in enumerate("xyz"):
            seg = np.repeat(p[None, :], 2, axis=0)
            seg[0, axis] -= h
            seg[1, axis] += h
            fig.add_trace(go.Scatter3d(
                x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", name=f"{target_label} ({letter})",
                legendgroup="target", showlegend=False, line=dict(color=_TARGET_COLOR, width=4),
                hovertemplate=hover))
    fig.update_layout(
        title=dict(text=title, font=dict(color=_FOREGROUND)) if title else None,
        paper_bgcolor=BACKGROUND, plot_bgcolor=BACKGROUND, font=dict(color=_FOREGROUND),
        showlegend=True, legend=dict(bgcolor="rgba(0,0,0,0)", font=dict(color=_FOREGROUND)),
        margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        scene=dict(aspectmode="data", bgcolor=BACKGROUND,
                   xaxis=_axis("x (mm, R)"), yaxis=_axis("y (mm, A)"), zaxis=_axis("z (mm, S)")),
    )
    return fig
