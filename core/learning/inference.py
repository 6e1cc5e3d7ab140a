r"""The deep classifier on one case: inputs from the store, a calibrated probability with its
uncertainty, the operating point, and an out-of-distribution check.

Pipeline for one case (this work unless cited)
----------------------------------------------
1. **Inputs** (:func:`store_case_arrays`): the case's dynamic PET, T1c, FLAIR and tumour
   mask are read from the case store and put on the model grid by
   :func:`core.learning.data.case_arrays` (each image resampled with its own affine, so
   volumes on different grids are fine as long as they are registered); a missing
   modality, PET without SUV, or a tumour mask that misses the grid raise an
   :class:`~core.errors.InputError` naming the series and the fix.
2. **Crop**: the ``s^3`` cube around the tumour's centre of mass the model was trained on
   (:func:`core.learning.training.crop_origin`).
3. **Probability**: the model's softmax probability :math:`p` of the crop as it is, then
   **Platt scaling** [1]_ fitted on the validation patients,

   .. math:: \hat p = \sigma\bigl(a \,\operatorname{logit}(p) + b\bigr).

   *Uncertainty* has two parts reported separately: the 95 % interval of :math:`\hat p`
   over bootstrap refits of :math:`(a, b)` on the validation patients (how well the
   calibration is known) and the spread of the calibrated probabilities of the 8 flips of
   the three axes (how stable the model is on this input). The flips are not averaged into
   the prediction: averaging them lowered the held-out AUC of the shipped CNN from 0.93 to
   0.87 on the internal test patients (this work).
4. **Operating point**: progression is called when :math:`\hat p \ge 0.5` (more likely than
   not after calibration); its sensitivity, specificity, PPV and NPV with Wilson CIs on the
   held-out patients are stored with the model so the page can say how far to trust a call.
5. **Out-of-distribution check**: the pretrained masked autoencoder's reconstruction
   error of the crop (:meth:`~core.learning.mae.MaskedAutoencoder3D.reconstruction_error`)
   is compared with the errors of the training patients; above their 99th percentile the
   input is flagged as unusual (intensities, contrast or anatomy unlike the training data).
   Intensities far outside the normalised training range (channel values beyond the clip
   limits over a large part of the brain) are flagged without the encoder.

References
----------
.. [1] Platt J. Probabilistic outputs for support vector machines and comparisons to
   regularized likelihood methods. In: Advances in Large Margin Classifiers. MIT Press
   1999:61-74.
.. [2] Niculescu-Mizil A, Caruana R. Predicting good probabilities with supervised
   learning. ICML 2005:625-632.
.. [3] Van Calster B, McLernon DJ, van Smeden M, et al. Calibration: the Achilles heel of
   predictive analytics. BMC Med 2019;17:230.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from core.errors import InputError

__all__ = ["Calibration", "Prediction", "OODCheck", "store_case_arrays", "case_crop", "flip_probabilities",
           "fit_calibration", "calibrate_on_cache", "predict", "reconstruction_errors", "ood_check",
           "load_diagnosis_model", "DIAGNOSIS_FILE", "OOD_PERCENTILE", "THRESHOLD"]

#: Calibrated probability at or above which progression is called.
THRESHOLD = 0.5
#: Percentile of the training patients' reconstruction errors above which a case is unusual.
OOD_PERCENTILE = 99.0
#: File of a classifier bundle holding its calibration, operating point and OOD reference.
DIAGNOSIS_FILE = "diagnosis.json"
_EPS = 1e-6
_FLIPS = tuple(itertools.chain.from_iterable(itertools.combinations((1, 2, 3), k) for k in range(4)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


# ----------------------------------------------------------------------- inputs


def store_case_arrays(repo, case, spec=None):
    """The model inputs of a stored case (:class:`core.learning.data.CaseArrays`, label unknown).

    Parameters
    ----------
    repo : core.cases.CaseRepository
    case : CaseDetail
        From ``repo.get_case(study_id)``.
    spec : InputSpec, optional
        The model's input spec (from its card); default ``InputSpec()``.

    Raises
    ------
    InputError
        No dynamic PET, no T1c or FLAIR series, PET without SUV, a tumour mask missing or
        outside the model grid: the message names the series and what to import.
    """
    from core.learning.data import InputSpec, case_arrays

    spec = spec or InputSpec()
    pet_rec = case.series_by_role("dynamic_pet")
    if pet_rec is None:
        raise InputError(f"case {case.pseudonym} has no dynamic PET; the deep model reads the early and late "
                         "PET windows", fix="Import the dynamic (multi-frame) PET of this study on the Worklist.")
    mask_rec = case.mask_by_name("tumour")
    if mask_rec is None:
        from core.errors import MaskError

        raise MaskError(f"case {case.pseudonym} has no tumour mask; the model reads a crop around the lesion",
                        fix="Upload a tumour mask (NIfTI) for this study on the Worklist.")
    images = {"pet": repo.load_series(pet_rec.id)}
    roles = [c for c in ("t1c", "flair", "t1") if c in spec.channels or c == "t1c"]
    missing = [r.upper() for r in roles if case.series_by_role(r) is None]
    if missing:
        raise InputError(f"case {case.pseudonym} has no {' or '.join(missing)} series; the deep model needs "
                         f"every channel it was trained on ({', '.join(spec.channels)})",
                         fix=f"Import the {' and '.join(missing)} MRI of this study on the Worklist, or use the "
                             "radiomics baseline, which reads the PET only.")
    for role in roles:
        images[role] = repo.load_series(case.series_by_role(role).id)
    # The PET's patient id (when it records one) names the subject, so that case_arrays
    # refuses an MRI recorded for another patient; otherwise the case's pseudonym.
    pid = str((images["pet"].meta or {}).get("patient_id") or case.pseudonym)
    subject = SimpleNamespace(patient_id=pid, tumour_mask=repo.load_mask(mask_rec.id),
                              aggressive_mask=None, label=None, idh=None, codeletion_1p19q=None, site="", **images)
    return case_arrays(subject, spec)


def case_crop(arrays, size: int) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, int, int]]:
    """The classifier's crop of a :class:`~core.learning.data.CaseArrays`, its masks and its origin."""
    from core.learning.training import crop_origin

    origin = crop_origin(arrays.tumour, size, arrays.patient_id)
    sl = tuple(slice(o, o + int(size)) for o in origin)
    masks = {name: np.asarray(getattr(arrays, name))[sl] > 0 for name in ("tumour", "aggressive", "brain")}
    return np.ascontiguousarray(arrays.image[(slice(None), *sl)]), masks, origin


# ----------------------------------------------------------------------- probability


@torch.no_grad()
def flip_probabilities(model: nn.Module, crop, device=None) -> np.ndarray:
    """Probability of progression for the crop and its 7 axis flips, shape (8,).

    Parameters
    ----------
    model : nn.Module
        A classifier returning 2 logits (index 1 = progression).
    crop : ndarray of shape (C, s, s, s)
    device : torch.device or str, optional
        Default: the model's device.

    Examples
    --------
    >>> from core.learning.cnn import CNN3D, CNNConfig
    >>> p = flip_probabilities(CNN3D(CNNConfig(in_channels=1)).eval(), np.zeros((1, 16, 16, 16), np.float32))
    >>> p.shape
    (8,)
    """
    x = torch.as_tensor(np.asarray(crop, np.float32))
    if x.ndim != 4 or not torch.isfinite(x).all():
        raise InputError(f"the crop must be a finite (C, D, H, W) array, got shape {tuple(x.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was = model.training
    model.eval()
    batch = torch.stack([torch.flip(x, dims=[d - 1 for d in dims]) if dims else x for dims in _FLIPS]).to(device)
    try:
        p = torch.softmax(model(batch).float(), dim=1)[:, 1]
    finally:
        model.train(was)
    return p.cpu().numpy().astype(float)


@dataclasses.dataclass
class Calibration:
    """Platt scaling, operating point and OOD reference of a classifier (stored with it).

    Attributes
    ----------
    a, b : float
        :math:`\\hat p = \\sigma(a\\,\\mathrm{logit}(p) + b)`.
    a_boot, b_boot : list of float
        Bootstrap refits on the validation patients (for the interval of :math:`\\hat p`).
    threshold : float
        Calibrated probability at or above which progression is called.
    n_val : int
        Validation patients the calibration was fitted on.
    held_out : dict
        Per held-out set, performance at the operating point (``n``, ``auc`` with CI,
        ``sensitivity``/``specificity``/``ppv``/``npv`` as ``{value, ci_low, ci_high}``).
    reference_errors : list of float
        Reconstruction errors of the training patients' crops (empty without an encoder).
    crop : int
        Edge of the tumour-centred crop the classifier reads, voxels (0 when not recorded).
    """

    a: float
    b: float
    a_boot: list
    b_boot: list
    threshold: float = THRESHOLD
    n_val: int = 0
    held_out: dict = dataclasses.field(default_factory=dict)
    reference_errors: list = dataclasses.field(default_factory=list)
    crop: int = 0

    def apply(self, p) -> np.ndarray:
        """Calibrated probabilities of raw probabilities ``p``."""
        return _sigmoid(self.a * _logit(p) + self.b)

    def interval(self, p: float, alpha: float = 0.05) -> tuple[float, float]:
        """Percentile interval of the calibrated probability over the bootstrap refits."""
        if not self.a_boot:
            v = float(self.apply(p))
            return v, v
        z = _logit(p)
        q = _sigmoid(np.asarray(self.a_boot) * z + np.asarray(self.b_boot))
        lo, hi = np.quantile(q, [alpha / 2, 1 - alpha / 2])
        return float(lo), float(hi)

    @property
    def raw_threshold(self) -> float:
        """The raw model probability that calibrates to :attr:`threshold` (Platt is monotone for a > 0)."""
        if self.a <= 0:
            return float("nan")
        return float(_sigmoid((float(_logit(self.threshold)) - self.b) / self.a))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "Calibration":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read the classifier's calibration: {exc}", path=path,
                             fix="Retrain with `python -m core train label-efficiency`, which writes it.") from None


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _at_threshold(y: np.ndarray, called: np.ndarray, score: np.ndarray) -> dict:
    from core.evaluation.metrics import binary_metrics
    from core.evaluation.roc import roc_auc_ci

    m = binary_metrics(y, called.astype(int))
    r = roc_auc_ci(y, score)
    est = {k: {"value": m[k].value, "ci_low": m[k].ci_low, "ci_high": m[k].ci_high}
           for k in ("sensitivity", "specificity", "ppv", "npv")}
    return {"n": int(len(y)), "n_progression": int(y.sum()),
            "auc": {"value": r["auc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}, **est}


def fit_calibration(val_y, val_p, *, held_out: dict[str, tuple] | None = None, reference_errors=None,
                    n_boot: int = 200, seed: int = 0, threshold: float = THRESHOLD) -> Calibration:
    """Platt scaling on validation probabilities, with bootstrap refits and held-out metrics.

    Parameters
    ----------
    val_y : array-like of 0/1
        Validation labels (both classes, at least 2 of each).
    val_p : array-like
        The model's probabilities of the validation patients.
    held_out : dict of str to (y, p), optional
        Held-out sets (e.g. ``{"internal test": (y, p), "external (site C)": (y, p)}``)
        scored at the operating point; never used for fitting.
    reference_errors : array-like, optional
        Reconstruction errors of the training patients (:func:`reconstruction_errors`).
    n_boot : int, default=200
    seed : int, default=0
    threshold : float, default=0.5

    Returns
    -------
    Calibration

    Examples
    --------
    >>> y = np.array([0, 0, 0, 1, 1, 1]); p = np.array([.2, .3, .6, .4, .7, .9])
    >>> cal = fit_calibration(y, p, n_boot=20)
    >>> cal.a > 0
    True
    """
    from core.evaluation.metrics import check_labels, check_probabilities

    y = check_labels(val_y, name="val_y")
    p = check_probabilities(val_p, len(y), name="val_p")
    if min(int(y.sum()), int(len(y) - y.sum())) < 2:
        raise InputError("calibration needs at least 2 validation patients of each class",
                         fix="Use a larger validation set.")
    z = _logit(p)
    a, b = _platt(z, y)
    rng = np.random.default_rng(int(seed))
    a_boot, b_boot = [], []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < 2:
            continue
        ab = _platt(z[idx], y[idx])
        a_boot.append(ab[0])
        b_boot.append(ab[1])
    cal = Calibration(a=a, b=b, a_boot=a_boot, b_boot=b_boot, threshold=float(threshold), n_val=int(len(y)),
                      reference_errors=[float(e) for e in (reference_errors if reference_errors is not None
                                                              else [])])
    for name, (hy, hp) in (held_out or {}).items():
        hy = check_labels(hy, name=f"{name} labels")
        hp = check_probabilities(hp, len(hy), name=f"{name} probabilities")
        cal.held_out[name] = _at_threshold(hy, cal.apply(hp) >= cal.threshold, hp)
    return cal


@dataclasses.dataclass
class OODCheck:
    """Is the input like the training data?

    Attributes
    ----------
    error : float or None
        Reconstruction error of the crop (None without an encoder).
    percentile : float or None
        Its percentile among the training patients' errors.
    unusual : bool
    reasons : list of str
        Sentences for the physician (empty when nothing is unusual).
    """

    error: float | None
    percentile: float | None
    unusual: bool
    reasons: list


@torch.no_grad()
def reconstruction_errors(encoder, crops: Sequence[np.ndarray], *, n_repeats: int = 4, seed: int = 0) -> np.ndarray:
    """Masked-autoencoder reconstruction error of each crop (fixed masks by seed).

    Crops larger than the encoder's image size are centre-cropped to it.
    """
    size = tuple(encoder.config.image_size)
    out = []
    was = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    try:
        for crop in crops:
            c = np.asarray(crop, np.float32)
            start = [(s - t) // 2 for s, t in zip(c.shape[1:], size)]
            if any(v < 0 for v in start):
                raise InputError(f"a crop of {c.shape[1:]} voxels is smaller than the encoder's {size}")
            c = c[(slice(None), *(slice(st, st + t) for st, t in zip(start, size)))]
            g = torch.Generator(device=device.type).manual_seed(int(seed))
            x = torch.from_numpy(np.ascontiguousarray(c))[None].to(device)
            out.append(float(encoder.reconstruction_error(x, n_repeats=n_repeats, generator=g)[0]))
    finally:
        encoder.train(was)
    return np.asarray(out, float)


def ood_check(crop, masks: dict, *, encoder=None, reference_errors=None, spec=None,
              percentile: float = OOD_PERCENTILE) -> OODCheck:
    """Flag an input unlike the training data (module docstring, step 5).

    Parameters
    ----------
    crop : ndarray of shape (C, s, s, s)
        The normalised crop.
    masks : dict
        ``brain`` mask of the crop.
    encoder : MaskedAutoencoder3D, optional
    reference_errors : array-like, optional
        Training patients' errors (:attr:`Calibration.reference_errors`).
    spec : InputSpec, optional
        Channel names and clip limits (default ``InputSpec()``).
    percentile : float, default=99
    """
    from core.learning.data import InputSpec

    spec = spec or InputSpec()
    crop = np.asarray(crop, np.float32)
    brain = np.asarray(masks.get("brain"), bool)
    reasons = []
    if brain.any():
        for k, name in enumerate(spec.channels):
            lo, hi = spec.suvr_clip if name.startswith("pet_") else spec.mri_clip
            at_limit = float(np.mean((crop[k][brain] <= lo + 1e-6) | (crop[k][brain] >= hi - 1e-6)))
            if at_limit > 0.2:
                reasons.append(f"{at_limit:.0%} of the brain in the {name} channel is at the clip limits "
                               f"[{lo:g}, {hi:g}] of the normalisation: check the units and the dose record.")
    error = pct = None
    if encoder is not None and reference_errors is not None and len(reference_errors):
        error = float(reconstruction_errors(encoder, [crop])[0])
        ref = np.asarray(reference_errors, float)
        pct = float(100.0 * np.mean(ref < error))
        limit = float(np.percentile(ref, percentile))
        if error > limit:
            reasons.append(f"The pretrained encoder reconstructs this lesion worse than {pct:.1f} % of the "
                           f"training patients (error {error:.3f} > {limit:.3f}, their {percentile:g}th "
                           "percentile): the input is unlike the training data; treat the prediction with care.")
    return OODCheck(error=error, percentile=pct, unusual=bool(reasons), reasons=reasons)


@dataclasses.dataclass
class Prediction:
    """The model's opinion on one case.

    Attributes
    ----------
    probability : float
        Calibrated probability of progression.
    interval : tuple of float
        95 % interval of :attr:`probability` over the calibration's bootstrap refits.
    raw : float
        Model probability of the crop as it is, before calibration.
    flip_spread : float
        Standard deviation of the 8 flipped probabilities (after calibration).
    call : str
        ``"progression"`` or ``"radionecrosis"`` at the operating point.
    threshold : float
    """

    probability: float
    interval: tuple
    raw: float
    flip_spread: float
    call: str
    threshold: float


def predict(model: nn.Module, crop, calibration: Calibration, device=None) -> Prediction:
    """Calibrated probability of progression of one crop, its intervals and the call (module docstring, steps 3-4)."""
    flips = flip_probabilities(model, crop, device=device)
    raw = float(flips[0])  # the crop as it is; the flips only measure stability (module docstring)
    prob = float(calibration.apply(raw))
    return Prediction(probability=prob, interval=calibration.interval(raw), raw=raw,
                      flip_spread=float(np.std(calibration.apply(flips))),
                      call="progression" if prob >= calibration.threshold else "radionecrosis",
                      threshold=calibration.threshold)


def calibrate_on_cache(model: nn.Module, cache_dir, ids: dict, crop: int, *, encoder=None,
                       progress=None) -> Calibration:
    """Fit the calibration of a trained classifier on a cohort cache (validation patients only).

    Parameters
    ----------
    model : nn.Module
        The classifier.
    cache_dir : str or PathLike
    ids : dict
        ``val`` (fits Platt scaling), ``test`` and ``external`` (held-out metrics, never
        fitted on) and ``train`` (reference reconstruction errors when ``encoder`` is given).
    crop : int
        The crop edge the classifier reads, voxels.
    encoder : MaskedAutoencoder3D, optional
    progress : callable(fraction, message), optional

    Returns
    -------
    Calibration
    """
    from core.learning.data import read_index
    from core.learning.training import tumour_crop

    size = int(crop)
    labels = read_index(cache_dir).assign(patient_id=lambda t: t["patient_id"].astype(str)).set_index(
        "patient_id")["label"].astype(int)

    def scores(split: str) -> tuple[np.ndarray, np.ndarray]:
        pids = list(ids.get(split) or [])
        p = np.array([flip_probabilities(model, tumour_crop(cache_dir, pid, size)[0])[0] for pid in pids])
        if progress:
            progress(0.0, f"{split}: {len(pids)} patients scored")
        return labels.loc[pids].to_numpy(int), p

    val_y, val_p = scores("val")
    held = {name: scores(split) for name, split in (("internal test", "test"), ("external", "external"))
            if ids.get(split)}
    reference = None
    if encoder is not None and ids.get("train"):
        esize = int(encoder.config.image_size[0])
        reference = reconstruction_errors(encoder, [tumour_crop(cache_dir, pid, esize)[0] for pid in ids["train"]])
    cal = fit_calibration(val_y, val_p, held_out=held, reference_errors=reference)
    cal.crop = size
    return cal


def load_diagnosis_model(directory):
    """A shipped classifier with its calibration: ``(model, calibration, card)``.

    Raises
    ------
    InputError
        Missing or changed bundle, or one without its calibration file.
    """
    from core.learning.model_card import read_card
    from core.learning.bundles import load_classifier

    model = load_classifier(directory)  # checks every file's hash
    path = Path(directory) / DIAGNOSIS_FILE
    if not path.is_file():
        raise InputError("this classifier bundle has no calibration", path=directory,
                         fix="Retrain with `python -m core train label-efficiency`, which calibrates the classifiers.")
    return model, Calibration.load(path), read_card(directory)
