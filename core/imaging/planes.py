"""Display geometry: a canonical display grid and fast sampling of one plane from any volume.

A viewer shows orthogonal planes of a *display grid* (usually the MRI, reoriented to the
closest RAS+ axes) and draws other volumes (PET) over it. Resampling a whole dynamic
PET onto the MRI grid for every frame would cost seconds; sampling only the plane on
screen costs milliseconds. Each plane voxel centre is mapped to scanner millimetres by
the display affine and back into the other volume's voxel indices by the inverse of its
affine, then interpolated trilinearly (``scipy.ndimage.map_coordinates``, order 1).
Points outside the other volume come back as NaN so that a viewer can leave them clear.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation
from scipy.ndimage import map_coordinates

from core.imaging.volume import Volume

__all__ = ["AXES", "to_canonical", "plane_coordinates_mm", "sample_plane", "sample_point"]

#: Plane name -> the voxel axis held fixed on a canonical (RAS+) grid.
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def to_canonical(volume: Volume) -> Volume:
    """The same image on its closest RAS+ voxel axes (a permutation and flips, no interpolation).

    After this, voxel axis 0 runs left to right, 1 posterior to anterior and
    2 inferior to superior, which is what orthogonal views assume.
    """
    ornt = io_orientation(volume.affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return volume
    spatial_shape = volume.data.shape[:3]
    data = apply_orientation(volume.data, ornt)
    affine = volume.affine @ inv_ornt_aff(ornt, spatial_shape)
    return volume.with_data(np.ascontiguousarray(data), affine=affine)


def plane_coordinates_mm(grid: Volume, plane: str, index: int) -> np.ndarray:
    """Scanner coordinates (mm) of the voxel centres of one plane of ``grid``.

    Returns an array of shape (n_rows, n_cols, 3) where rows and columns are the two
    voxel axes other than the fixed one, in increasing order.
    """
    axis = AXES[plane]
    shape = grid.data.shape[:3]
    if not 0 <= index < shape[axis]:
        raise IndexError(f"{plane} index {index} outside 0..{shape[axis] - 1}")
    other = [a for a in range(3) if a != axis]
    u, v = np.meshgrid(np.arange(shape[other[0]]), np.arange(shape[other[1]]), indexing="ij")
    ijk = np.empty(u.shape + (3,), dtype=float)
    ijk[..., axis] = index
    ijk[..., other[0]] = u
    ijk[..., other[1]] = v
    return grid.voxel_to_mm(ijk)


def sample_plane(volume: Volume, grid: Volume, plane: str, index: int, *, order: int = 1) -> np.ndarray:
    """Values of ``volume`` on one plane of ``grid`` (NaN outside ``volume``).

    Parameters
    ----------
    volume : Volume
        A 3D image in the same scanner space as ``grid`` (any grid, any orientation).
    grid : Volume
        The display grid; only its shape and affine are used.
    plane : {"sagittal", "coronal", "axial"}
    index : int
        Voxel index of the plane along the fixed axis of ``grid``.
    order : int, default=1
        Interpolation order (0 nearest, for masks; 1 trilinear).

    Returns
    -------
    ndarray of shape (n_rows, n_cols)
        Same layout as :func:`plane_coordinates_mm`.
    """
    if volume.data.ndim != 3:
        raise ValueError(f"sample_plane needs a 3D volume, got shape {volume.data.shape}")
    if volume is grid or (volume.data.shape == grid.data.shape and np.allclose(volume.affine, grid.affine)):
        axis = AXES[plane]
        return np.take(volume.data, index, axis=axis).astype(np.float32, copy=False)
    ijk = volume.mm_to_voxel(plane_coordinates_mm(grid, plane, index))
    coords = np.moveaxis(ijk, -1, 0)
    values = map_coordinates(volume.data.astype(np.float32, copy=False), coords, order=order,
                             mode="constant", cval=np.nan)
    # map_coordinates blends NaN padding into edge voxels; keep only points really inside.
    shape = np.asarray(volume.data.shape, dtype=float)
    inside = np.all((ijk >= -0.5) & (ijk <= shape - 0.5), axis=-1)
    values = np.where(inside, values, np.nan)
    if order == 1:
        edge = inside & np.isnan(values)
        if edge.any():
            nearest = map_coordinates(volume.data.astype(np.float32, copy=False), coords, order=0,
                                      mode="nearest")
            values = np.where(edge, nearest, values)
    return values.astype(np.float32, copy=False)


def sample_point(volume: Volume, xyz_mm, *, order: int = 1) -> float:
    """Value of ``volume`` at scanner position ``xyz_mm`` (NaN outside the volume)."""
    ijk = volume.mm_to_voxel(np.asarray(xyz_mm, dtype=float).reshape(1, 3))
    shape = np.asarray(volume.data.shape[:3], dtype=float)
    if not np.all((ijk >= -0.5) & (ijk <= shape - 0.5)):
        return float("nan")
    ijk = np.clip(ijk, 0, shape - 1)
    return float(map_coordinates(volume.data.astype(np.float32, copy=False), ijk.T, order=order,
                                 mode="nearest")[0])
