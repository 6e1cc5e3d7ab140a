"""Small synthetic volumes shared by the imaging tests (not a conftest: imported explicitly)."""

from __future__ import annotations

import numpy as np

from core.imaging.volume import DynamicVolume, PetDose, Volume

#: 18F half-life used throughout the tests, s (NNDC: 109.77 min).
F18_HALF_LIFE_S = 6586.2


def make_affine(spacing=(2.0, 2.0, 3.0), origin=(-15.0, -20.0, 10.0), rotation_deg: float = 0.0) -> np.ndarray:
    """RAS affine with voxel size ``spacing`` (mm), optionally rotated about z by ``rotation_deg``."""
    a = np.deg2rad(rotation_deg)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = r @ np.diag(spacing)
    out[:3, 3] = origin
    return out


def smooth_data(shape=(16, 16, 8), seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Positive smooth random field (sum of Gaussian blobs) as float32."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    out = np.full(shape, 0.05)
    for _ in range(4):
        c = rng.uniform(-0.6, 0.6, 3)
        w = rng.uniform(0.2, 0.5, 3)
        out += rng.uniform(0.5, 1.0) * np.exp(-0.5 * sum(((g - ci) / wi) ** 2 for g, ci, wi in zip(grids, c, w)))
    return (out * scale).astype(np.float32)


def pet_dose(decay_interval_s: float = 0.0) -> PetDose:
    return PetDose(injected_activity_bq=200e6, body_weight_kg=70.0, half_life_s=F18_HALF_LIFE_S,
                   decay_interval_s=decay_interval_s, radionuclide="18F", tracer="FDOPA")


def pet_dynamic(shape=(16, 16, 8), seed: int = 0, affine=None) -> DynamicVolume:
    """Dynamic 18F PET in Bq/ml, decay-corrected to injection, 6 frames over 30 min."""
    starts = np.array([0.0, 60.0, 120.0, 300.0, 600.0, 1200.0])
    durs = np.array([60.0, 60.0, 180.0, 300.0, 600.0, 600.0])
    base = smooth_data(shape, seed, 8000.0)
    curve = np.array([0.3, 0.8, 1.0, 0.9, 0.8, 0.7], dtype=np.float32)
    data = base[..., None] * curve
    return DynamicVolume(data=data, affine=make_affine() if affine is None else affine, modality="PT",
                         units="Bq/ml", dose=pet_dose(0.0), frame_start_s=starts, frame_duration_s=durs,
                         decay_corrected=True, decay_reference="injection")


def pet_static(shape=(16, 16, 8), seed: int = 1, scan_start_s: float = 3600.0) -> Volume:
    """Static 18F PET in Bq/ml decay-corrected to the scan start (60 min p.i., 10 min frame)."""
    return Volume(smooth_data(shape, seed, 6000.0), make_affine(), "PT", "Bq/ml", pet_dose(scan_start_s),
                  meta={"frame_start_s": scan_start_s, "frame_duration_s": 600.0})


def mr_volume(shape=(16, 16, 8), seed: int = 2, rotation_deg: float = 0.0) -> Volume:
    return Volume(smooth_data(shape, seed, 900.0), make_affine((1.5, 1.5, 2.5), (-12.0, -8.0, 4.0), rotation_deg),
                  "MR", "a.u.")


def ct_volume(shape=(16, 16, 8), seed: int = 3) -> Volume:
    data = np.round(smooth_data(shape, seed, 1500.0) - 1000.0).astype(np.float32)
    return Volume(data, make_affine((0.9, 0.9, 3.0), (-7.0, -7.0, -12.0)), "CT", "HU")
