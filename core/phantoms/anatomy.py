r"""Head anatomy of the brain phantoms, from the MNI152 templates that nilearn ships.

Source images (in the nilearn wheel, no download): the symmetric ICBM 2009a nonlinear
MNI152 T1, grey- and white-matter probability templates (Fonov et al. 2009, 2011),
loaded with :func:`nilearn.datasets.load_mni152_template` & co. at 2 mm. The grid is
the MRI grid of every synthetic patient; its affine (RAS+, mm) is the scanner space
that the PET grid shares. Because the template is symmetric, the mid-sagittal plane is
x = 0 mm and the hemisphere opposite a lesion is a healthy mirror image.

Tissue fractions per voxel (they sum to one inside the head):

* grey matter, white matter: the template probabilities; cerebrospinal fluid
  :math:`1 - GM - WM` inside the brain mask.
* caudate and putamen (the FDOPA-avid striatum): ellipsoids at their MNI positions
  intersected with the grey-matter template (GM >= 0.25); all tissue inside is
  striatal. Centres and semi-axes (mm) were placed on the ICBM 2009a GM template and
  agree with the centres of mass of the AAL labels (Tzourio-Mazoyer et al. 2002):
  caudate head (+-12, 13, 9), semi-axes (5, 10, 10); caudate body (+-15, -4, 18),
  (4, 12, 5); putamen (+-26, 3, 1), (6, 15, 10). This gives 2.6 ml of caudate and
  3.3 ml of putamen per side, somewhat below adult MRI volumetry (caudate ~3.5 ml,
  putamen ~5 ml; e.g. Fischl et al. 2002) because the template's deep grey matter is
  blurred; the lateral ventricles and internal capsule are kept out.
* extracranial shells built from the distance to the smoothed brain envelope:
  subarachnoid CSF 0-2 mm, skull (bone) 2-8 mm, scalp (soft tissue) 8-14 mm; adult
  skull thickness is 5-8 mm and scalp about 5-7 mm.

References
----------
Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average
age-appropriate brain templates from birth to adulthood. NeuroImage 2009;47:S102.
Fonov V, Evans AC, Botteron K, et al. Unbiased average age-appropriate atlases for
pediatric studies. NeuroImage 2011;54:313-327.
Tzourio-Mazoyer N, Landeau B, Papathanassiou D, et al. Automated anatomical labeling of
activations in SPM using a macroscopic anatomical parcellation of the MNI MRI
single-subject brain. NeuroImage 2002;15:273-289.
Fischl B, Salat DH, Busa E, et al. Whole brain segmentation: automated labeling of
neuroanatomical structures in the human brain. Neuron 2002;33:341-355.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Anatomy", "load_anatomy", "STRIATUM_ELLIPSOIDS_MM", "TISSUES"]

#: (name, centre_mm for the left side (x < 0), semi_axes_mm); mirrored to the right.
STRIATUM_ELLIPSOIDS_MM = (
    ("caudate", (-12.0, 13.0, 9.0), (5.0, 10.0, 10.0)),
    ("caudate", (-15.0, -4.0, 18.0), (4.0, 12.0, 5.0)),
    ("putamen", (-26.0, 3.0, 1.0), (6.0, 15.0, 10.0)),
)

#: Normal tissue classes of the phantom, in a fixed order.
TISSUES = ("csf", "grey_matter", "white_matter", "caudate", "putamen", "bone", "scalp")

_SHELL_MM = {"csf": 2.0, "bone": 8.0, "scalp": 14.0}


@dataclass(frozen=True, eq=False)
class Anatomy:
    """The template head on the 2 mm MNI grid.

    Attributes
    ----------
    affine : ndarray (4, 4)
        Voxel to RAS+ mm.
    t1 : ndarray of float32
        MNI152 T1 template scaled to [0, 1] (brain only).
    fractions : dict of str to ndarray of float32
        Tissue fractions for :data:`TISSUES`, summing to 1 inside ``head``.
    brain : ndarray of bool
        Brain mask.
    head : ndarray of bool
        Brain, CSF, skull and scalp.
    brain_depth_mm : ndarray of float32
        Distance from the brain surface inward (0 outside the brain).
    """

    affine: np.ndarray
    t1: np.ndarray
    fractions: dict
    brain: np.ndarray
    head: np.ndarray
    brain_depth_mm: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.t1.shape)

    @property
    def voxel_size_mm(self) -> float:
        return float(abs(self.affine[0, 0]))

    def coordinates_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z (mm) of every voxel, as three broadcastable 1D-shaped arrays."""
        i, j, k = (np.arange(n, dtype=np.float32) for n in self.shape)
        a = self.affine
        return ((a[0, 0] * i + a[0, 3])[:, None, None],
                (a[1, 1] * j + a[1, 3])[None, :, None],
                (a[2, 2] * k + a[2, 3])[None, None, :])

    @property
    def striatum(self) -> np.ndarray:
        return (self.fractions["caudate"] + self.fractions["putamen"]) > 0.5


def _ellipsoid(x, y, z, centre, semi) -> np.ndarray:
    return (((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
            + ((z - centre[2]) / semi[2]) ** 2) <= 1.0


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Build (once per process) the template head; no network access is needed."""
    from nilearn import datasets  # heavy import, only here

    t1_img = datasets.load_mni152_template(resolution=2)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=2).get_fdata(), dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=2).get_fdata(), dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=2).get_fdata()) > 0.5
    affine = np.asarray(t1_img.affine, dtype=float)
    t1 = np.clip(np.asarray(t1_img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    vox = float(abs(affine[0, 0]))

    gm = np.clip(gm, 0, 1) * brain
    wm = np.clip(wm, 0, 1) * brain
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)

    i, j, k = (np.arange(n, dtype=np.float32) for n in t1.shape)
    x = (affine[0, 0] * i + affine[0, 3])[:, None, None]
    y = (affine[1, 1] * j + affine[1, 3])[None, :, None]
    z = (affine[2, 2] * k + affine[2, 3])[None, None, :]
    deep = {}
    for name, (cx, cy, cz), semi in STRIATUM_ELLIPSOIDS_MM:
        for sx in (1.0, -1.0):
            inside = _ellipsoid(x, y, z, (sx * cx, cy, cz), semi) & (gm >= 0.25)
            deep[name] = deep.get(name, np.zeros(t1.shape, bool)) | inside
    tissue = gm + wm
    caudate = np.where(deep["caudate"], tissue, 0.0).astype(np.float32)
    putamen = np.where(deep["putamen"] & ~deep["caudate"], tissue, 0.0).astype(np.float32)
    in_striatum = deep["caudate"] | deep["putamen"]
    gm = np.where(in_striatum, 0.0, gm).astype(np.float32)
    wm = np.where(in_striatum, 0.0, wm).astype(np.float32)

    # Extracranial shells from the distance to a smoothed brain envelope.
    envelope = ndimage.gaussian_filter(brain.astype(np.float32), 2.0) > 0.25
    envelope = ndimage.binary_fill_holes(envelope | brain)
    outside_mm = ndimage.distance_transform_edt(~envelope) * vox
    shell_csf = envelope & ~brain | (~envelope & (outside_mm <= _SHELL_MM["csf"]))
    bone = ~envelope & (outside_mm > _SHELL_MM["csf"]) & (outside_mm <= _SHELL_MM["bone"])
    scalp = ~envelope & (outside_mm > _SHELL_MM["bone"]) & (outside_mm <= _SHELL_MM["scalp"])
    csf = np.where(shell_csf, 1.0, csf).astype(np.float32)
    head = brain | shell_csf | bone | scalp
    depth = (ndimage.distance_transform_edt(brain) * vox).astype(np.float32)

    fractions = {
        "csf": csf,
        "grey_matter": gm,
        "white_matter": wm,
        "caudate": caudate,
        "putamen": putamen,
        "bone": bone.astype(np.float32),
        "scalp": scalp.astype(np.float32),
    }
    for arr in fractions.values():
        arr.setflags(write=False)
    for arr in (t1, brain, head, depth):
        arr.setflags(write=False)
    return Anatomy(affine=affine, t1=t1, fractions=fractions, brain=brain, head=head, brain_depth_mm=depth)
