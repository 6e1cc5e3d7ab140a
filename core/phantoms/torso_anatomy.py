r"""Anatomy of the therapy torso phantom: smooth analytic shapes rasterised onto any grid.

The torso runs from the hips (z = 0 mm) to the lower head (z = 845 mm), in scanner
millimetres (RAS+: +x to the patient's right, +y anterior, +z superior). Every structure
is an analytic solid:

* :class:`ZTube`, an elliptic cylinder whose centre and semi-axes vary piecewise
  linearly with z (body outline, fat layer, spine, aorta; hollow for ribs and mandible);
* :class:`Ellipsoid`, optionally rotated (organs, tumours, pelvic and shoulder bones).

Structures are painted in order, later ones over earlier ones; everything after the
body outline is painted only inside the body, so organs never leave it. A structure
carries an organ label (what the SPECT sees) and a CT number (what the CT sees); bones are
painted twice, a cortical shell and then a spongiosa core 2.5-4 mm inside it.

Rasterising samples each shape at voxel centres (or at ``s^3`` sub-voxel points with
``supersample=s``, which gives partial-volume fractions); shapes are evaluated only in
their bounding boxes, so a 128 x 128 x 184 grid at ``s = 2`` takes well under a second.

Sizes are those of an adult man and are checked by the tests against reference volumes
(liver 1.2-2 l, kidneys together 250-400 ml, spleen 100-250 ml; ICRP Publication 89,
Basic anatomical and physiological data for use in radiological protection: reference
values, Ann ICRP 2002;32(3-4), reference male organ masses liver 1800 g, kidneys 310 g,
spleen 150 g, at about 1.05 g/ml). Positions, CT numbers and per-patient variation are
(this work, plausible range); see ``core/phantoms/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "LABELS",
    "TUMOUR_LABEL_0",
    "Ellipsoid",
    "ZTube",
    "Structure",
    "TorsoAnatomy",
    "sample_anatomy",
    "rasterise",
    "axis_coordinates",
    "BODY_Z_MM",
]

#: Organ labels of the label maps (0 is outside the body); tumours follow from 10.
LABELS = {0: "background", 1: "body", 2: "lungs", 3: "bone", 4: "liver", 5: "kidneys", 6: "spleen",
          7: "salivary glands", 8: "bladder", 9: "blood pool"}
TUMOUR_LABEL_0 = 10
#: The body spans z = 0-845 mm (hips to lower head).
BODY_Z_MM = (0.0, 845.0)

# Body outline control points: z, half-width a, half-depth b, centre y (mm) (this work).
_BODY = np.array([
    (0, 175, 120, 0), (120, 170, 115, 0), (260, 160, 112, 5), (400, 165, 115, 5), (520, 172, 118, 0),
    (620, 180, 112, -5), (665, 205, 95, -15), (690, 150, 80, -20), (705, 62, 58, -15), (770, 58, 58, -10),
    (790, 68, 75, 0), (845, 78, 95, 5)], dtype=float)


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass(frozen=True)
class Ellipsoid:
    r"""Solid ellipsoid :math:`|R^T (p - c) / s|^2 \le 1`: centre ``c`` and semi-axes ``s`` in mm, rotation ``R``."""

    centre: tuple
    semi: tuple
    rotation: np.ndarray | None = None

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.asarray(self.centre, float), np.asarray(self.semi, float)
        if self.rotation is None:
            return c - s, c + s
        half = np.abs(np.asarray(self.rotation)) @ s  # box of the rotated ellipsoid (safe bound)
        return c - half, c + half

    def inside(self, x, y, z) -> np.ndarray:
        c, s = self.centre, self.semi
        dx, dy, dz = x - c[0], y - c[1], z - c[2]
        if self.rotation is None:
            return (dx / s[0]) ** 2 + (dy / s[1]) ** 2 + (dz / s[2]) ** 2 <= 1.0
        r = np.asarray(self.rotation)
        u = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz
        v = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz
        w = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz
        return (u / s[0]) ** 2 + (v / s[1]) ** 2 + (w / s[2]) ** 2 <= 1.0

    def shrunk(self, mm: float) -> "Ellipsoid":
        return Ellipsoid(self.centre, tuple(max(v - mm, 0.5) for v in self.semi), self.rotation)

    def volume_ml(self) -> float:
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi)) / 1000.0


@dataclass(frozen=True)
class ZTube:
    """Elliptic cylinder along z with centre ``(xc, yc)`` and semi-axes ``(a, b)`` piecewise linear in z.

    ``ctrl`` rows are ``(z, a, b, xc, yc)``; the tube exists for ``z`` within the first and
    last rows. ``wall`` > 0 makes it hollow (a wall of that thickness, mm); ``y_min`` /
    ``y_max`` clip it to a slab in y (absolute mm).
    """

    ctrl: np.ndarray
    wall: float = 0.0
    y_min: float = -np.inf
    y_max: float = np.inf

    def _at(self, z):
        c = self.ctrl
        return [np.interp(z, c[:, 0], c[:, k]) for k in range(1, 5)]

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.ctrl
        lo = np.array([np.min(c[:, 3] - c[:, 1]), max(np.min(c[:, 4] - c[:, 2]), self.y_min), c[0, 0]])
        hi = np.array([np.max(c[:, 3] + c[:, 1]), min(np.max(c[:, 4] + c[:, 2]), self.y_max), c[-1, 0]])
        return lo, hi

    def inside(self, x, y, z) -> np.ndarray:
        a, b, xc, yc = self._at(np.ravel(z))
        shape = (1, 1, -1)
        a, b, xc, yc = (v.reshape(shape) for v in (a, b, xc, yc))
        dx, dy = x - xc, y - yc
        ok = (dx / a) ** 2 + (dy / b) ** 2 <= 1.0
        if self.wall > 0:
            ok &= (dx / np.maximum(a - self.wall, 0.1)) ** 2 + (dy / np.maximum(b - self.wall, 0.1)) ** 2 > 1.0
        ok &= (z >= self.ctrl[0, 0]) & (z <= self.ctrl[-1, 0])
        if np.isfinite(self.y_min) or np.isfinite(self.y_max):
            ok &= (y >= self.y_min) & (y <= self.y_max)
        return ok

    def shrunk(self, mm: float) -> "ZTube":
        c = self.ctrl.copy()
        c[:, 1:3] = np.maximum(c[:, 1:3] - mm, 0.5)
        return ZTube(c, self.wall, self.y_min, self.y_max)


@dataclass(frozen=True)
class Structure:
    """One painted solid: its name, organ label, CT number (HU) and shape."""

    name: str
    label: int
    hu: float
    shape: Ellipsoid | ZTube


@dataclass(frozen=True, eq=False)
class TorsoAnatomy:
    """A sampled torso: the structures in painting order and what they stand for.

    Attributes
    ----------
    structures : tuple of Structure
        Painting order; index + 1 is the structure id of :func:`rasterise`.
    label_names : dict of int to str
        :data:`LABELS` plus ``"tumour 1"``, ... for labels 10, 11, ...
    tumours : list of dict
        Type (``"lymph node"``, ``"bone"``, ``"liver"``), centre (mm), diameter (mm), label.
    params : dict
        The per-patient draws (JSON-serialisable).
    """

    structures: tuple
    label_names: dict
    tumours: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def hu_table(self) -> np.ndarray:
        """CT number per structure id (id 0: air, -1000 HU)."""
        return np.array([-1000.0] + [s.hu for s in self.structures], dtype=np.float32)

    def label_table(self) -> np.ndarray:
        """Organ label per structure id (id 0: background)."""
        return np.array([0] + [s.label for s in self.structures], dtype=np.int16)


def axis_coordinates(shape, affine, supersample: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scanner coordinates (mm) along each axis of an axis-aligned grid, at ``supersample`` points per voxel."""
    affine = np.asarray(affine, float)
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("the torso phantom rasterises onto axis-aligned grids only")
    s = int(supersample)
    offsets = (np.arange(s) + 0.5) / s - 0.5
    out = []
    for a in range(3):
        idx = (np.arange(int(shape[a]))[:, None] + offsets[None, :]).ravel()
        out.append(affine[a, a] * idx + affine[a, 3])
    return tuple(out)


def _index_range(coords: np.ndarray, lo: float, hi: float) -> slice:
    if coords[-1] < coords[0]:  # descending axis
        idx = np.nonzero((coords >= lo) & (coords <= hi))[0]
        return slice(idx.min(), idx.max() + 1) if idx.size else slice(0, 0)
    return slice(int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right")))


def rasterise(anatomy: TorsoAnatomy, shape, affine, supersample: int = 1) -> np.ndarray:
    """Structure ids (int16; 0 = air) at the voxel centres, or at ``supersample^3`` points per voxel.

    Returns an array of shape ``supersample * shape``; structure ``k`` (0-based in
    ``anatomy.structures``) has id ``k + 1``.
    """
    xs, ys, zs = axis_coordinates(shape, affine, supersample)
    ids = np.zeros((xs.size, ys.size, zs.size), dtype=np.int16)
    for k, st in enumerate(anatomy.structures):
        lo, hi = st.shape.bbox()
        si, sj, sk = _index_range(xs, lo[0], hi[0]), _index_range(ys, lo[1], hi[1]), _index_range(zs, lo[2], hi[2])
        if si.stop <= si.start or sj.stop <= sj.start or sk.stop <= sk.start:
            continue
        x = xs[si][:, None, None]
        y = ys[sj][None, :, None]
        z = zs[sk][None, None, :]
        inside = st.shape.inside(x, y, z)
        block = ids[si, sj, sk]
        if k > 0:  # everything after the body outline stays inside the body
            inside &= block > 0
        block[inside] = k + 1
    return ids


# ----------------------------------------------------------------------- sampling


def _body_ctrl(sx: float, sy: float) -> np.ndarray:
    c = _BODY.copy()
    c[:, 1] *= sx
    c[:, 2] *= sy
    out = np.zeros((len(c), 5))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] = c[:, 0], c[:, 1], c[:, 2], 0.0, c[:, 3]
    return out


def _body_at(ctrl: np.ndarray, z: float) -> tuple[float, float, float]:
    """Half-width, half-depth and centre y of the body at height z."""
    return tuple(float(np.interp(z, ctrl[:, 0], ctrl[:, k])) for k in (1, 2, 4))


def _spine_y(ctrl: np.ndarray, z):
    a, b, yc = (np.interp(z, ctrl[:, 0], ctrl[:, k]) for k in (1, 2, 4))
    return yc - 0.42 * b


def _bone(structures: list, name: str, shape, cortical_hu: float, spongiosa_hu: float, cortex_mm: float) -> None:
    structures.append(Structure(f"{name} cortex", 3, cortical_hu, shape))
    structures.append(Structure(f"{name} spongiosa", 3, spongiosa_hu, shape.shrunk(cortex_mm)))


def sample_anatomy(rng: np.random.Generator, n_tumours: int | None = None) -> TorsoAnatomy:
    """Draw one torso: body size, fat layer, organ sizes and positions, 2-5 tumours, CT numbers.

    The draws, in order, come from ``rng`` only (see the module docstring for the
    shapes). ``n_tumours`` overrides the number of tumours (2-5 drawn otherwise).
    """
    u = rng.uniform
    sx, sy = float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1)), float(np.clip(rng.normal(1.0, 0.06), 0.88, 1.12))
    fat_mm = float(u(8.0, 22.0))
    lung_hu = float(u(-850.0, -750.0))
    spongiosa_hu = float(u(200.0, 300.0))
    cortical_hu = float(u(800.0, 1100.0))
    hu = {"muscle": float(u(35.0, 50.0)), "fat": float(u(-110.0, -90.0)), "liver": float(u(50.0, 65.0)),
          "kidney": float(u(28.0, 38.0)), "spleen": float(u(40.0, 50.0)), "salivary": float(u(5.0, 30.0)),
          "urine": float(u(0.0, 12.0)), "blood": float(u(35.0, 45.0))}
    body = _body_ctrl(sx, sy)

    def organ_scale(sd: float, limit: float):
        """Linear scale of an organ (its volume scales with the cube), normal within +-limit."""
        return float(np.clip(rng.normal(1.0, sd), 1.0 - limit, 1.0 + limit))

    def jitter(mm=6.0):
        return rng.normal(0.0, mm, 3).clip(-2 * mm, 2 * mm)

    st: list[Structure] = []
    st.append(Structure("fat", 1, hu["fat"], ZTube(body)))
    inner = body.copy()
    inner[:, 1:3] -= fat_mm
    st.append(Structure("soft tissue", 1, hu["muscle"], ZTube(inner)))

    # organs --------------------------------------------------------------------------------
    lung_s = organ_scale(0.04, 0.08)
    for side in (+1, -1):
        st.append(Structure("lung", 2, lung_hu, Ellipsoid((side * 88 * sx, -5.0, 575.0),
                                                          (62 * sx * lung_s, 82 * sy * lung_s, 120 * lung_s))))
    heart_c = np.array([-25.0, 35.0 * sy, 530.0]) + jitter(5)
    st.append(Structure("heart", 9, hu["blood"], Ellipsoid(tuple(heart_c), (58, 48, 62), _rot_z(-30))))
    za = np.array([150.0, 600.0])
    st.append(Structure("aorta", 9, hu["blood"],
                        ZTube(np.column_stack([za, [12, 12], [12, 12], [-18, -18], _spine_y(body, za) + 33]))))
    liver_s = organ_scale(0.03, 0.06)
    liver_c = np.array([60.0 * sx, 10.0, 455.0]) + jitter(5)
    liver_semi = (86 * liver_s, 72 * liver_s, 63 * liver_s)
    st.append(Structure("liver", 4, hu["liver"], Ellipsoid(tuple(liver_c), liver_semi)))
    spleen_s = organ_scale(0.04, 0.08)
    spleen_c = np.array([-92.0 * sx, -45.0 * sy, 480.0]) + jitter(5)
    st.append(Structure("spleen", 6, hu["spleen"], Ellipsoid(tuple(spleen_c), (30 * spleen_s, 40 * spleen_s,
                                                                              38 * spleen_s), _rot_z(20))))
    kid_s = organ_scale(0.025, 0.05)
    kid_z = 375.0 + float(rng.normal(0, 10))
    for side in (+1, -1):
        c = np.array([side * 72.0, -45.0 * sy, kid_z + (-12.0 if side > 0 else 0.0)]) + jitter(3)
        st.append(Structure("kidney", 5, hu["kidney"], Ellipsoid(tuple(c), (28 * kid_s, 24 * kid_s, 55 * kid_s),
                                                                 _rot_y(side * 10) @ _rot_z(side * 20))))
    blad_s = organ_scale(0.06, 0.12)
    st.append(Structure("bladder", 8, hu["urine"], Ellipsoid((0.0, 45.0 * sy, 75.0), (45 * blad_s, 38 * blad_s,
                                                                                     35 * blad_s))))
    sal_s = organ_scale(0.04, 0.08)
    for side in (+1, -1):
        st.append(Structure("parotid gland", 7, hu["salivary"],
                            Ellipsoid((side * 50.0, -8.0, 818.0), (13 * sal_s, 22 * sal_s, 24 * sal_s))))
        st.append(Structure("submandibular gland", 7, hu["salivary"] + 20.0,
                            Ellipsoid((side * 33.0, 28.0, 790.0), (10 * sal_s, 13 * sal_s, 11 * sal_s))))

    # skeleton ------------------------------------------------------------------------------
    zs = np.arange(40.0, 846.0, 15.0)
    y_sp = _spine_y(body, zs)
    vb_a = np.interp(zs, [40, 430, 450, 690, 710, 845], [25, 25, 18, 18, 11, 11])
    vb_b = np.interp(zs, [40, 430, 450, 690, 710, 845], [18, 18, 15, 15, 9, 9])
    spine = ZTube(np.column_stack([zs, vb_a, vb_b, np.zeros_like(zs), y_sp]))
    _bone(st, "vertebral bodies", spine, cortical_hu, spongiosa_hu, 2.5)
    post = ZTube(np.column_stack([zs, 0.55 * vb_a, 0.7 * vb_b, np.zeros_like(zs), y_sp - vb_b - 0.7 * vb_b - 4]))
    st.append(Structure("posterior vertebral elements", 3, cortical_hu * 0.8, post))
    for zd in np.arange(75.0, 840.0, 30.0):  # intervertebral discs
        a, b = float(np.interp(zd, zs, vb_a)) - 2.5, float(np.interp(zd, zs, vb_b)) - 2.5
        yd = float(_spine_y(body, zd))
        st.append(Structure("disc", 1, 85.0, ZTube(np.array([[zd - 3, a, b, 0, yd], [zd + 3, a, b, 0, yd]]))))
    for zr in np.arange(455.0, 660.0, 24.0):  # ribs: hollow rings, open anteriorly
        a, b, yc = _body_at(body, zr)
        a, b = 0.9 * (a - fat_mm), 0.9 * (b - fat_mm)
        ring = ZTube(np.array([[zr - 5, a, b, 0, yc], [zr + 5, a, b, 0, yc]]), wall=9.0, y_max=yc + 0.55 * b)
        st.append(Structure("rib", 3, 0.8 * cortical_hu, ring))
    a, b, yc = _body_at(body, 600.0)
    st.append(Structure("sternum", 3, 450.0, ZTube(np.array([[540, 16, 7, 0, yc + b - fat_mm - 18],
                                                                 [660, 16, 7, 0, yc + b - fat_mm - 18]]))))
    for side in (+1, -1):  # pelvis-ish: iliac wings, femoral heads; scapulae, clavicles
        _bone(st, "iliac wing", Ellipsoid((side * 105 * sx, -25.0, 150.0), (16, 70, 55), _rot_z(side * 25)),
              cortical_hu, spongiosa_hu, 4.0)
        _bone(st, "femoral head", Ellipsoid((side * 90 * sx, 5.0, 30.0), (24, 24, 24)), cortical_hu, spongiosa_hu, 3.0)
        st.append(Structure("scapula", 3, 0.9 * cortical_hu,
                            Ellipsoid((side * 115 * sx, -85.0 * sy, 610.0), (50, 8, 65), _rot_z(-side * 30))))
        st.append(Structure("clavicle", 3, cortical_hu, Ellipsoid((side * 75 * sx, 45.0 * sy, 688.0), (70, 9, 9),
                                                                   _rot_z(side * 15))))
    _bone(st, "sacrum", Ellipsoid((0.0, -78.0 * sy, 130.0), (45, 20, 50)), cortical_hu, spongiosa_hu, 3.0)
    _bone(st, "pubis", Ellipsoid((0.0, 88.0 * sy, 18.0), (50, 12, 15)), cortical_hu, spongiosa_hu, 3.0)
    st.append(Structure("mandible", 3, 1200.0, ZTube(np.array([[790, 48, 58, 0, 12], [822, 48, 58, 0, 12]]),
                                                        wall=9.0, y_min=5.0)))

    # tumours -------------------------------------------------------------------------------
    n = int(rng.integers(2, 6)) if n_tumours is None else int(n_tumours)
    names = dict(LABELS)
    tumours = []
    for t in range(n):
        kind = ("lymph node", "bone", "liver")[int(rng.choice(3, p=(0.45, 0.4, 0.15)))]
        if kind == "lymph node":
            site = int(rng.integers(3))
            if site == 0:      # para-aortic
                z = float(u(250.0, 420.0))
                c = (float(u(-40.0, 10.0)), float(_spine_y(body, z)) + 40.0, z)
            elif site == 1:    # pelvic (iliac)
                c = (float(rng.choice([-1, 1]) * u(40.0, 70.0)), float(u(-5.0, 25.0)), float(u(100.0, 170.0)))
            else:              # mediastinal
                z = float(u(600.0, 650.0))
                c = (float(u(-20.0, 20.0)), float(_spine_y(body, z)) + 38.0, z)
            diameter = float(u(10.0, 35.0))
            tumour_hu = 40.0
        elif kind == "bone":
            if rng.random() < 0.7:
                z = float(u(110.0, 650.0))
                c = (float(u(-6.0, 6.0)), float(_spine_y(body, z)), z)
            else:
                side = float(rng.choice([-1, 1]))
                c = (side * 105.0 * sx + float(u(-8, 8)), float(u(-50.0, 0.0)), float(u(130.0, 180.0)))
            diameter = float(u(15.0, 40.0))
            tumour_hu = 650.0  # sclerotic (osteoblastic) metastasis (this work)
        else:
            c = tuple(float(liver_c[a] + u(-0.45, 0.45) * liver_semi[a]) for a in range(3))
            diameter = float(u(15.0, 50.0))
            tumour_hu = hu["liver"] - 20.0  # hypodense metastasis
        semi = tuple(0.5 * diameter * float(u(0.85, 1.15)) for _ in range(3))
        label = TUMOUR_LABEL_0 + t
        names[label] = f"tumour {t + 1}"
        st.append(Structure(f"tumour {t + 1}", label, tumour_hu, Ellipsoid(tuple(map(float, c)), semi)))
        tumours.append({"label": label, "name": f"tumour {t + 1}", "type": kind,
                        "centre_mm": [round(v, 2) for v in c], "diameter_mm": round(diameter, 2),
                        "semi_axes_mm": [round(v, 2) for v in semi]})
    params = {"width_scale": sx, "depth_scale": sy, "fat_layer_mm": fat_mm, "lung_hu": lung_hu,
              "spongiosa_hu": spongiosa_hu, "cortical_hu": cortical_hu, "tissue_hu": hu,
              "organ_scales": {"lungs": lung_s, "liver": liver_s, "spleen": spleen_s, "kidneys": kid_s,
                               "bladder": blad_s, "salivary glands": sal_s}}
    return TorsoAnatomy(structures=tuple(st), label_names=names, tumours=tumours, params=params)
