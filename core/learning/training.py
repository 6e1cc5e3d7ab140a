r"""Training of the deep models: MAE pretraining, classifiers (3D CNN from scratch, ViT linear
probe or fine-tuning), prediction and label subsets (bundles: :mod:`core.learning.bundles`).

Inputs come from a cohort cache (:func:`core.learning.data.build_cohort_cache`). The
classifiers of tumour progression (1) vs radiation necrosis (0) read a cube of ``crop``
voxels centred on the tumour's centre of mass (:func:`tumour_crop`, this work): the whole
64^3 grid is mostly healthy brain, and a lesion-centred field of view is the usual input
of lesion-level classifiers.

Optimisation
------------
* MAE pretraining [1]_: AdamW (betas 0.9, 0.95; weight decay 0.05), learning rate warmed
  up linearly over the first 10 % of the steps (at least one) then decayed on a half
  cosine to 0,

  .. math::

      \eta_t = \eta \frac{t + 1}{T_w} \ (t < T_w), \qquad
      \eta_t = \frac{\eta}{2}\Bigl(1 + \cos\frac{\pi (t - T_w)}{T - T_w}\Bigr) \ (t \ge T_w).

  The default ``lr=1e-3`` is a plain constant (this work), not MAE's linear scaling rule
  :math:`1.5\cdot 10^{-4} \cdot B / 256` [1]_, which at ``B = 4`` gives 2.3e-6, far too
  small to train a small model from scratch on a small cohort in a few epochs. Validation
  loss each epoch on fixed patches with fixed masks (the same every epoch), early stopping
  on it, best weights restored.
* Classifiers: weighted cross-entropy with class weights :math:`w_c = n / (K n_c)` from
  the training labels (the "balanced" weights of scikit-learn), AdamW, the same schedule,
  early stopping on the validation AUC (ties: lower validation loss), best weights
  restored. Default learning rates (this work): 1e-3 for the CNN and the linear probe,
  3e-4 for ViT fine-tuning.
* Mixed precision on CUDA only (``torch.autocast`` float16 + ``GradScaler``), float32 on
  CPU. Data loaders use ``num_workers=0`` (the development machine has 2 cores; loading a
  compressed ``.npz`` is cheap compared with a 3D forward/backward pass) and a seeded
  generator; the weights are seeded with ``torch.manual_seed(seed)``, so a CPU run is
  repeatable.

References
----------
.. [1] He K, Chen X, Xie S, Li Y, Dollar P, Girshick R. Masked autoencoders are scalable
   vision learners. CVPR 2022:16000-16009.
.. [2] Loshchilov I, Hutter F. Decoupled weight decay regularization. ICLR 2019.
.. [3] Loshchilov I, Hutter F. SGDR: stochastic gradient descent with warm restarts. ICLR 2017.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from core.errors import InputError
from core.learning.cnn import CNN3D, CNNConfig
from core.learning.data import Augment, CohortDataset, InputSpec, read_index
from core.learning.mae import MAEConfig, MaskedAutoencoder3D, ViTClassifier

__all__ = [
    "n_channels",
    "tumour_crop",
    "crop_origin",
    "crop_case",
    "CropDataset",
    "PretrainResult",
    "ClassifierResult",
    "mae_validation_loss",
    "pretrain_mae",
    "train_classifier",
    "predict_proba",
    "label_subset",
    "cpu_state",
]

Progress = Callable[[float, str], None]



# ----------------------------------------------------------------------- crops


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise InputError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _load_case(cache_dir, patient_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    path = Path(cache_dir) / f"{patient_id}.npz"
    if not path.is_file():
        raise InputError(f"patient {patient_id!r} is not in this cache", path=path,
                         fix="Use ids from index.csv, or rebuild the cache with more patients.")
    with np.load(path) as z:
        return z["image"].astype(np.float32), z["tumour"] > 0, int(z["label"])


def _crop_start(centre: np.ndarray, shape: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.round(centre).astype(int) - size // 2, 0, shape - size)


def crop_origin(mask, size: int, patient_id: str = "") -> tuple[int, int, int]:
    """First voxel of the ``size``^3 cube the classifiers read around a tumour mask (this work).

    The mask's centre of mass is rounded to a voxel; the cube starts ``size // 2`` voxels
    before it along each axis and is clamped to ``[0, shape - size]``. The one crop rule
    of :func:`tumour_crop`, the image signatures and the embedding sub-regions.

    Parameters
    ----------
    mask : ndarray of shape (I, J, K)
        Non-empty tumour mask on the model grid.
    size : int or tuple of 3 int
        Cube edge (or edges), voxels, at most the grid size.
    patient_id : str, optional
        Named in the error of an empty mask.

    Returns
    -------
    tuple of 3 int

    Examples
    --------
    >>> m = np.zeros((10, 10, 10), bool); m[8, 1, 5] = True
    >>> crop_origin(m, 4)
    (6, 0, 3)
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 3:
        raise InputError(f"the tumour mask has shape {mask.shape}, expected a 3D grid")
    shape = np.asarray(mask.shape)
    sizes = np.broadcast_to(np.asarray(size), (3,))
    for edge, dim in zip(sizes, shape):
        _check_size(edge, (dim,))
    return tuple(int(v) for v in _crop_start(_tumour_centre(mask, patient_id), shape, sizes.astype(int)))


def crop_case(cache_dir, patient_id: str, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The classifier crop of a cached patient with its masks cut the same way.

    Parameters
    ----------
    cache_dir : str or PathLike
    patient_id : str
    size : int
        Crop edge, voxels.

    Returns
    -------
    image : ndarray of float32, shape (C, size, size, size)
        Identical to ``tumour_crop(cache_dir, patient_id, size)[0]``.
    masks : dict of str to bool ndarray of shape (size, size, size)
        ``tumour``, ``aggressive``, ``brain``.
    """
    path = Path(cache_dir) / f"{patient_id}.npz"
    image, tumour, _ = _load_case(cache_dir, str(patient_id))
    start = np.asarray(crop_origin(tumour, size, str(patient_id)))
    with np.load(path) as z:
        stack = np.stack([z[k] > 0 for k in ("tumour", "aggressive", "brain")])
    cut = _cut(stack, start, int(size))
    return _cut(image, start, int(size)), {"tumour": cut[0], "aggressive": cut[1], "brain": cut[2]}


def _cut(image: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    sl = tuple(slice(int(s), int(s) + size) for s in start)
    return np.ascontiguousarray(image[(slice(None), *sl)])


def _tumour_centre(tumour: np.ndarray, patient_id: str) -> np.ndarray:
    if not tumour.any():
        raise InputError(f"the tumour mask of patient {patient_id!r} is empty in the cache",
                         fix="Rebuild the cohort cache (build_cohort_cache refuses empty masks).")
    return np.asarray(ndimage.center_of_mass(tumour), dtype=float)


def _check_size(size, shape) -> int:
    size = _check_int(size, "crop size", 1)
    if size > min(shape):
        raise InputError(f"crop size {size} is larger than the cached grid {tuple(int(s) for s in shape)}",
                         fix="Use a crop no larger than the grid (InputSpec.shape).")
    return size


def tumour_crop(cache_dir, patient_id: str, size: int) -> tuple[np.ndarray, int]:
    """A cube of ``size``^3 voxels centred on the tumour's centre of mass (this work).

    The centre of mass of the cached tumour mask is rounded to a voxel; the cube starts
    ``size // 2`` voxels before it along each axis and is shifted to lie inside the volume
    (clamped) near an edge. Deterministic: the evaluation input of the classifiers.

    Parameters
    ----------
    cache_dir : str or PathLike
        A cohort cache.
    patient_id : str
    size : int
        Edge of the cube, voxels (<= the grid size).

    Returns
    -------
    image : ndarray of float32, shape (C, size, size, size)
    label : int
        1 progression, 0 radionecrosis.

    Examples
    --------
    >>> image, label = tumour_crop("/tmp/cache", "DEMO-A-S1-000", 32)     # doctest: +SKIP
    >>> image.shape                                                        # doctest: +SKIP
    (4, 32, 32, 32)
    """
    image, tumour, label = _load_case(cache_dir, str(patient_id))
    start = np.asarray(crop_origin(tumour, size, str(patient_id)))
    return _cut(image, start, int(size)), label


class CropDataset(torch.utils.data.Dataset):
    """Tumour-centred crops of a cohort cache, with optional jitter and augmentation.

    Item ``i`` is a dict: ``image`` float32 tensor (C, s, s, s), ``label`` long scalar,
    ``patient_id`` str. The crop centre is the tumour's centre of mass plus an integer
    shift drawn uniformly in ``[-jitter_vox, jitter_vox]`` per axis (then clamped into the
    volume); :class:`~core.learning.data.Augment` is applied to the crop. Randomness of
    item ``i`` in epoch ``e`` comes from ``SeedSequence([seed, e, i])`` (:meth:`set_epoch`),
    so items repeat exactly. Without jitter and augmentation an item equals
    :func:`tumour_crop`.

    Parameters
    ----------
    cache_dir : str or PathLike
    ids : sequence of str
    size : int
        Crop edge, voxels.
    augment : Augment, optional
    jitter_vox : int, default=0
    seed : int, default=0
    labels : dict of str to int, optional
        Labels to use instead of the cached ones (label-randomisation check).

    Examples
    --------
    >>> ds = CropDataset("/tmp/cache", ["DEMO-A-S1-000"], 32, jitter_vox=2)   # doctest: +SKIP
    >>> ds[0]["image"].shape                                                   # doctest: +SKIP
    torch.Size([4, 32, 32, 32])
    """

    def __init__(self, cache_dir, ids: Sequence[str], size: int, augment: Augment | None = None,
                 jitter_vox: int = 0, seed: int = 0, labels: dict[str, int] | None = None):
        self.labels = None if labels is None else {str(k): int(v) for k, v in labels.items()}
        self.cache_dir = Path(cache_dir)
        index = read_index(self.cache_dir)
        ids = [str(i) for i in ids]
        missing = sorted(set(ids) - set(index["patient_id"]))
        if missing:
            raise InputError(f"patients {missing[:5]} are not in this cache", path=self.cache_dir,
                             fix="Use ids from index.csv, or rebuild the cache with more patients.")
        if not ids:
            raise InputError("no patient ids given", fix="Pass at least one patient id.")
        self.ids = ids
        self.size = _check_int(size, "crop size", 1)
        self.jitter_vox = _check_int(jitter_vox, "jitter_vox", 0)
        self.augment, self.seed, self.epoch = augment, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (jitter, augmentation) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} patients")
        i = int(i) % len(self)
        pid = self.ids[i]
        image, tumour, label = _load_case(self.cache_dir, pid)
        if self.labels is not None:
            label = self.labels[pid]
        shape = np.asarray(image.shape[-3:])
        size = _check_size(self.size, shape)
        ss = np.random.SeedSequence([self.seed, self.epoch, i])
        centre = _tumour_centre(tumour, pid)
        if self.jitter_vox:
            rng = np.random.default_rng(ss.spawn(1)[0])
            centre = np.round(centre) + rng.integers(-self.jitter_vox, self.jitter_vox + 1, size=3)
        sample = {"image": torch.from_numpy(_cut(image, _crop_start(centre, shape, size), size))}
        if self.augment is not None:
            gen = torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            sample = self.augment(sample, gen)
        return {"image": sample["image"].float().contiguous(), "label": torch.tensor(label, dtype=torch.long),
                "patient_id": pid}


# ----------------------------------------------------------------------- shared pieces


def _device(device) -> torch.device:
    if device is None:
        from core.config import device as default_device

        return default_device()
    return torch.device(device)


def _cache_spec(cache_dir) -> dict | None:
    path = Path(cache_dir) / "spec.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["spec"]


def n_channels(cache_dir) -> int:
    """Number of input channels of a cohort cache (its spec; the default spec when it has none)."""
    spec = _cache_spec(cache_dir)
    return len(spec["channels"]) if spec else len(InputSpec().channels)


def _check_ids(ids, name: str) -> list[str]:
    ids = [str(i) for i in ids]
    if not ids:
        raise InputError(f"{name} is empty", fix=f"Give at least one patient in {name}.")
    if len(set(ids)) != len(ids):
        raise InputError(f"{name} lists a patient more than once", fix="Give each patient once.")
    return ids


def _check_disjoint(train_ids: list[str], val_ids: list[str]) -> None:
    both = sorted(set(train_ids) & set(val_ids))
    if both:
        raise InputError(f"patients {both[:5]} are in both the training and the validation set",
                         fix="Split by patient (core.learning.data.split_by_patient).")


def _schedule(optimizer, total_steps: int, warmup_frac: float = 0.1):
    """Linear warm-up over 10 % of the steps (at least 1), then half cosine to 0 (this work; [1]_, [3]_)."""
    warm = max(1, int(round(warmup_frac * total_steps)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cpu_state(model: nn.Module) -> dict:
    """A copy of the model's state dict on CPU (for best-epoch snapshots and bundles)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _loader(dataset, batch_size: int, shuffle: bool, seed: int):
    # A shuffled (training) loader drops a last batch of one sample (it breaks BatchNorm's
    # batch statistics); the dropped sample differs every epoch.
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0,
                                       drop_last=bool(shuffle and len(dataset) > 1 and len(dataset) % batch_size == 1),
                                       generator=torch.Generator().manual_seed(int(seed)))


def _scaler(device: torch.device):
    return torch.amp.GradScaler("cuda") if device.type == "cuda" else None


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    import contextlib

    return contextlib.nullcontext()


# ----------------------------------------------------------------------- MAE pretraining


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain_mae`.

    Attributes
    ----------
    model : MaskedAutoencoder3D
        With the weights of the best epoch (lowest validation loss), in eval mode.
    history : list of dict
        Per epoch: ``epoch`` (from 1), ``train_loss``, ``val_loss``, ``seconds``.
    best_epoch : int
    volumes_per_second : float
        Training volumes (patches) processed per second of training, all epochs.
    settings : dict
        The arguments of the run and the cache's input spec.
    """

    model: MaskedAutoencoder3D
    history: list[dict]
    best_epoch: int
    volumes_per_second: float
    settings: dict = field(default_factory=dict)


def _mae_patch(config: MAEConfig) -> int:
    size = config.image_size
    if len(set(size)) != 1:
        raise InputError(f"MAE pretraining uses cubic patches; image_size={size} is not a cube",
                         fix="Use an MAEConfig with equal sides, e.g. image_size=32.")
    return int(size[0])


def _val_batches(cache_dir, ids, patch: int, p_tumour: float, seed: int, batch_size: int) -> list[torch.Tensor]:
    ds = CohortDataset(cache_dir, ids, patch=patch, p_tumour=p_tumour, seed=seed)
    images = [ds[i]["image"] for i in range(len(ds))]
    return [torch.stack(images[k:k + batch_size]) for k in range(0, len(images), batch_size)]


@torch.no_grad()
def _mae_loss_on(model: MaskedAutoencoder3D, batches: list[torch.Tensor], seed: int, device) -> float:
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    total, n = 0.0, 0
    for x in batches:
        total += float(model(x.to(device), generator=gen).loss) * x.shape[0]
        n += x.shape[0]
    model.train(was_training)
    return total / n


def mae_validation_loss(model: MaskedAutoencoder3D, cache_dir, val_ids: Sequence[str], *, seed: int = 0,
                        p_tumour: float = 0.5, batch_size: int = 4, device=None) -> float:
    """The validation loss of :func:`pretrain_mae`: fixed patches, fixed masks, eval mode, float32.

    Patches come from :class:`~core.learning.data.CohortDataset` (no augmentation, epoch 0,
    ``seed + 1``); masks from a generator seeded with ``seed + 2`` at each call; the loss is
    the batch-size-weighted mean of the masked MSE [1]_.

    Parameters
    ----------
    model : MaskedAutoencoder3D
    cache_dir : str or PathLike
    val_ids : sequence of str
    seed, p_tumour, batch_size
        As given to :func:`pretrain_mae`.
    device : torch.device, optional
        Default: the model's device.

    Returns
    -------
    float
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    batches = _val_batches(cache_dir, _check_ids(val_ids, "val_ids"), _mae_patch(model.config), p_tumour,
                           seed + 1, batch_size)
    return _mae_loss_on(model.to(device), batches, seed + 2, device)


def pretrain_mae(cache_dir, train_ids: Sequence[str], val_ids: Sequence[str], config: MAEConfig, *,
                 epochs: int = 10, batch_size: int = 4, lr: float = 1e-3, weight_decay: float = 0.05, seed: int = 0,
                 device=None, p_tumour: float = 0.5, patience: int = 3,
                 progress: Progress | None = None) -> PretrainResult:
    """Self-supervised pretraining of a :class:`MaskedAutoencoder3D` on a cohort cache [1]_.

    Each epoch draws one random patch of ``config.image_size`` (a cube) per training
    patient (:class:`~core.learning.data.CohortDataset`, centred on a tumour voxel with
    probability ``p_tumour``, with :class:`~core.learning.data.Augment`), trains with
    AdamW, warm-up and cosine decay (module docstring), then computes the validation loss
    (:func:`mae_validation_loss`). Stops after ``patience`` epochs without a lower
    validation loss; the best weights are restored.

    Parameters
    ----------
    cache_dir : str or PathLike
    train_ids, val_ids : sequence of str
        Disjoint patient ids of the cache.
    config : MAEConfig
        ``in_channels`` must match the cache; ``image_size`` a cube no larger than the grid.
    epochs : int, default=10
    batch_size : int, default=4
    lr : float, default=1e-3
        Peak learning rate; a plain constant for the small preset (this work, module docstring).
    weight_decay : float, default=0.05
        AdamW weight decay [1]_, [2]_.
    seed : int, default=0
    device : torch.device or str, optional
        Default :func:`core.config.device`.
    p_tumour : float, default=0.5
    patience : int, default=3
    progress : callable(fraction, message), optional

    Returns
    -------
    PretrainResult

    Examples
    --------
    >>> cfg = MAEConfig(image_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2,
    ...                 decoder_dim=24, decoder_depth=1, decoder_heads=2)             # doctest: +SKIP
    >>> res = pretrain_mae("/tmp/cache", train, val, cfg, epochs=2)                   # doctest: +SKIP
    >>> len(res.history)                                                              # doctest: +SKIP
    2
    """
    train_ids, val_ids = _check_ids(train_ids, "train_ids"), _check_ids(val_ids, "val_ids")
    _check_disjoint(train_ids, val_ids)
    epochs, batch_size = _check_int(epochs, "epochs", 1), _check_int(batch_size, "batch_size", 1)
    patience = _check_int(patience, "patience", 1)
    if not (math.isfinite(float(lr)) and lr > 0):
        raise InputError(f"lr must be a positive number, got {lr!r}")
    channels = n_channels(cache_dir)
    if config.in_channels != channels:
        raise InputError(f"config.in_channels={config.in_channels} but the cache has {channels} channels",
                         path=cache_dir, fix=f"Use MAEConfig(in_channels={channels}, ...).")
    patch = _mae_patch(config)
    device = _device(device)
    torch.manual_seed(int(seed))
    model = MaskedAutoencoder3D(config).to(device)
    train_ds = CohortDataset(cache_dir, train_ids, augment=Augment(), patch=patch, p_tumour=p_tumour, seed=seed)
    val_batches = _val_batches(cache_dir, val_ids, patch, p_tumour, seed + 1, batch_size)
    loader = _loader(train_ds, batch_size, True, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(lr), betas=(0.9, 0.95),
                                  weight_decay=float(weight_decay))
    scheduler = _schedule(optimizer, epochs * len(loader))
    scaler = _scaler(device)
    mask_gen = torch.Generator().manual_seed(int(seed) + 3)
    history, best, best_state, stale = [], (math.inf, 0), cpu_state(model), 0
    n_volumes, train_seconds = 0, 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        model.train()
        losses = []
        for batch in loader:
            x = batch["image"].to(device)
            losses.append(_mae_step(model, x, optimizer, mask_gen, scaler) * x.shape[0])
            scheduler.step()
            n_volumes += x.shape[0]
        train_seconds += time.perf_counter() - t0
        val_loss = _mae_loss_on(model, val_batches, seed + 2, device)
        row = {"epoch": epoch, "train_loss": float(sum(losses) / len(train_ds)), "val_loss": val_loss,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if val_loss < best[0]:
            best, best_state, stale = (val_loss, epoch), cpu_state(model), 0
        else:
            stale += 1
        if progress:
            progress(epoch / epochs, f"epoch {epoch}: train {row['train_loss']:.4f}, val {val_loss:.4f}")
        if stale >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": float(lr), "weight_decay": float(weight_decay),
                "seed": int(seed), "p_tumour": float(p_tumour), "patience": patience, "device": str(device),
                "n_train": len(train_ids), "n_val": len(val_ids), "spec": _cache_spec(cache_dir),
                "schedule": "AdamW (0.9, 0.95), linear warm-up 10 % of steps, cosine to 0"}
    return PretrainResult(model=model, history=history, best_epoch=best[1] or 1,
                          volumes_per_second=n_volumes / max(train_seconds, 1e-9), settings=settings)


def _mae_step(model, x, optimizer, generator, scaler) -> float:
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x.device):
        loss = model(x, generator=generator).loss
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


# ----------------------------------------------------------------------- classifiers


@dataclass
class ClassifierResult:
    """Outcome of :func:`train_classifier`.

    Attributes
    ----------
    model : torch.nn.Module
        :class:`~core.learning.cnn.CNN3D` or :class:`~core.learning.mae.ViTClassifier` with
        the weights of the best epoch, in eval mode.
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_auc`` (NaN when the
        validation set has one class), ``seconds``.
    best_epoch : int
    settings : dict
        ``arch``, ``mode``, ``crop``, ``lr``, ``epochs``, ``batch_size``, ``seed``,
        ``class_weights``, ... and the cache's input spec.
    """

    model: nn.Module
    history: list[dict]
    best_epoch: int
    settings: dict = field(default_factory=dict)


def _labels(cache_dir, ids: list[str]) -> np.ndarray:
    index = read_index(cache_dir).set_index("patient_id")
    missing = sorted(set(ids) - set(index.index))
    if missing:
        raise InputError(f"patients {missing[:5]} are not in this cache", path=cache_dir,
                         fix="Use ids from index.csv, or rebuild the cache with more patients.")
    return index.loc[ids, "label"].to_numpy(dtype=int)


def _class_weights(y: np.ndarray, n_classes: int = 2) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise InputError(f"the training set has class counts {counts.tolist()} (0 radionecrosis, 1 progression)",
                         fix="Train on patients of both classes.")
    return torch.tensor(len(y) / (n_classes * counts), dtype=torch.float32)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    from core.evaluation.roc import roc_auc_ci

    return float(roc_auc_ci(y, p)["auc"])


def _build_classifier(arch: str, encoder, mode: str, crop: int, channels: int) -> nn.Module:
    if arch == "cnn":
        config = CNNConfig(in_channels=channels)
        if crop < config.min_input_size:
            raise InputError(f"crop={crop} is smaller than the CNN's minimum input of {config.min_input_size} voxels",
                             fix=f"Use crop >= {config.min_input_size}.")
        return CNN3D(config)
    if encoder is None:
        raise InputError('arch="vit" needs a pretrained encoder (a MaskedAutoencoder3D)',
                         fix="Pretrain one with pretrain_mae or load one with load_encoder.")
    size = tuple(encoder.config.image_size)
    if size != (crop,) * 3:
        raise InputError(f"crop={crop} does not match the encoder's image size {size}",
                         fix=f"Use crop={size[0]} for this encoder.")
    if encoder.config.in_channels != channels:
        raise InputError(f"the encoder takes {encoder.config.in_channels} channels, the cache has {channels}")
    model = ViTClassifier.from_mae(encoder, n_classes=2).float()
    return model.freeze_encoder(mode == "linear")


def _set_train_mode(model: nn.Module, mode: str) -> None:
    model.train()
    if isinstance(model, ViTClassifier) and mode == "linear":
        model.encoder.eval()  # a frozen encoder stays deterministic (no dropout in ViTEncoder3D anyway)


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    out = []
    for k in range(0, images.shape[0], batch_size):
        with _autocast(device):
            out.append(model(images[k:k + batch_size].to(device)).float().cpu())
    return torch.cat(out)


def _crops(cache_dir, ids: Sequence[str], crop: int) -> tuple[torch.Tensor, np.ndarray]:
    pairs = [tumour_crop(cache_dir, pid, crop) for pid in ids]
    return torch.from_numpy(np.stack([p[0] for p in pairs])), np.array([p[1] for p in pairs], dtype=int)


def train_classifier(cache_dir, train_ids: Sequence[str], val_ids: Sequence[str], *, arch: str = "cnn",
                     encoder: MaskedAutoencoder3D | None = None, mode: str = "finetune", crop: int = 32,
                     epochs: int = 30, batch_size: int = 8, lr: float | None = None, weight_decay: float = 0.01,
                     jitter_vox: int | None = None, seed: int = 0, device=None, patience: int = 5,
                     shuffle_labels_seed: int | None = None, progress: Progress | None = None) -> ClassifierResult:
    """Train a progression-vs-radionecrosis classifier on tumour-centred crops.

    Weighted cross-entropy (class weights :math:`w_c = n / (K n_c)` of the training
    labels), AdamW with warm-up and cosine decay, training crops from :class:`CropDataset`
    (jitter and :class:`~core.learning.data.Augment`), validation on the deterministic
    :func:`tumour_crop`; early stopping on the validation AUC (ties: lower validation
    loss) after ``patience`` epochs without improvement; best weights restored.

    Parameters
    ----------
    cache_dir : str or PathLike
    train_ids, val_ids : sequence of str
        Disjoint; the training set needs both classes.
    arch : {"cnn", "vit"}, default="cnn"
        ``"cnn"``: :class:`~core.learning.cnn.CNN3D` (``CNNConfig(in_channels=C)``) from
        scratch; ``"vit"``: :class:`~core.learning.mae.ViTClassifier` from ``encoder``.
    encoder : MaskedAutoencoder3D, optional
        Required for ``"vit"``; its ``image_size`` must be ``(crop,) * 3``. Not modified.
    mode : {"finetune", "linear"}, default="finetune"
        ``"linear"``: frozen encoder, only the head trains (linear probe [1]_). Ignored for the CNN.
    crop : int, default=32
        Crop edge, voxels.
    epochs : int, default=30
    batch_size : int, default=8
    lr : float, optional
        Default (this work): 1e-3 for the CNN and the linear probe, 3e-4 for fine-tuning.
    weight_decay : float, default=0.01
        AdamW's default.
    jitter_vox : int, optional
        Random shift of the training crops; default ``crop // 8`` (this work).
    seed : int, default=0
    device : torch.device or str, optional
        Default :func:`core.config.device`.
    patience : int, default=5
    shuffle_labels_seed : int, optional
        Permute the training labels with this seed (validation labels stay true): the
        model of the data-randomisation sanity check of Adebayo et al. (NeurIPS 2018),
        which should learn nothing an explanation could show.
    progress : callable(fraction, message), optional

    Returns
    -------
    ClassifierResult

    Examples
    --------
    >>> res = train_classifier("/tmp/cache", train, val, arch="cnn", crop=16, epochs=2)   # doctest: +SKIP
    >>> [round(h["val_auc"], 2) for h in res.history]                                    # doctest: +SKIP
    [0.5, 0.75]
    """
    if arch not in ("cnn", "vit"):
        raise InputError(f'arch must be "cnn" or "vit", got {arch!r}')
    if mode not in ("finetune", "linear"):
        raise InputError(f'mode must be "finetune" or "linear", got {mode!r}')
    train_ids, val_ids = _check_ids(train_ids, "train_ids"), _check_ids(val_ids, "val_ids")
    _check_disjoint(train_ids, val_ids)
    epochs, batch_size = _check_int(epochs, "epochs", 1), _check_int(batch_size, "batch_size", 1)
    patience, crop = _check_int(patience, "patience", 1), _check_int(crop, "crop", 1)
    if lr is None:
        lr = 3e-4 if (arch == "vit" and mode == "finetune") else 1e-3
    if not (math.isfinite(float(lr)) and lr > 0):
        raise InputError(f"lr must be a positive number, got {lr!r}")
    jitter_vox = max(0, crop // 8) if jitter_vox is None else _check_int(jitter_vox, "jitter_vox", 0)
    device = _device(device)
    y_train = _labels(cache_dir, train_ids)
    if shuffle_labels_seed is not None:
        y_train = np.random.default_rng(int(shuffle_labels_seed)).permutation(y_train)
    train_labels = dict(zip(train_ids, y_train.tolist())) if shuffle_labels_seed is not None else None
    weights = _class_weights(y_train)
    torch.manual_seed(int(seed))
    model = _build_classifier(arch, encoder, mode, crop, n_channels(cache_dir)).to(device)
    train_ds = CropDataset(cache_dir, train_ids, crop, augment=Augment(), jitter_vox=jitter_vox, seed=seed,
                           labels=train_labels)
    val_x, val_y = _crops(cache_dir, val_ids, crop)
    loader = _loader(train_ds, batch_size, True, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
    scheduler = _schedule(optimizer, epochs * len(loader))
    scaler = _scaler(device)
    w = weights.to(device)
    history, best_key, best_epoch, best_state, stale = [], None, 1, cpu_state(model), 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        _set_train_mode(model, mode)
        total = 0.0
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = F.cross_entropy(model(x).float(), y, weight=w)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * x.shape[0]
        model.eval()
        logits = _logits(model, val_x, device, batch_size)
        val_loss = float(F.cross_entropy(logits, torch.from_numpy(val_y), weight=weights))
        val_auc = _auc(val_y, torch.softmax(logits, dim=1)[:, 1].numpy())
        history.append({"epoch": epoch, "train_loss": total / len(train_ds), "val_loss": val_loss,
                        "val_auc": val_auc, "seconds": time.perf_counter() - t0})
        key = (-math.inf if math.isnan(val_auc) else val_auc, -val_loss)
        if best_key is None or key > best_key:
            best_key, best_epoch, best_state, stale = key, epoch, cpu_state(model), 0
        else:
            stale += 1
        if progress:
            progress(epoch / epochs, f"epoch {epoch}: val AUC {val_auc:.3f}, val loss {val_loss:.4f}")
        if stale >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    settings = {"arch": arch, "mode": mode if arch == "vit" else "scratch", "crop": crop, "lr": float(lr),
                "weight_decay": float(weight_decay), "epochs": epochs, "batch_size": batch_size, "seed": int(seed),
                "patience": patience, "jitter_vox": jitter_vox, "class_weights": weights.tolist(),
                "n_train": len(train_ids), "n_val": len(val_ids), "device": str(device),
                "shuffled_labels_seed": shuffle_labels_seed,
                "spec": _cache_spec(cache_dir)}
    return ClassifierResult(model=model, history=history, best_epoch=best_epoch, settings=settings)


def predict_proba(model: nn.Module, cache_dir, ids: Sequence[str], crop: int, device=None,
                  batch_size: int = 8) -> np.ndarray:
    """P(progression) of each patient from its :func:`tumour_crop`, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Two logits per input (class 1 = progression); put in eval mode.
    cache_dir : str or PathLike
    ids : sequence of str
    crop : int
    device : torch.device or str, optional
        Default :func:`core.config.device`.
    batch_size : int, default=8

    Returns
    -------
    ndarray of float64, shape (len(ids),)
        Softmax probability of class 1, in [0, 1].

    Examples
    --------
    >>> p = predict_proba(result.model, "/tmp/cache", ["DEMO-A-S1-000"], 32)   # doctest: +SKIP
    """
    ids = _check_ids(ids, "ids")
    device = _device(device)
    model = model.to(device).eval()
    x, _ = _crops(cache_dir, ids, crop)
    logits = _logits(model, x, device, _check_int(batch_size, "batch_size", 1))
    return torch.softmax(logits.double(), dim=1)[:, 1].numpy()


# ----------------------------------------------------------------------- label subsets


def label_subset(table: pd.DataFrame, ids: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """A stratified, nested subset of ``ids`` keeping ``fraction`` of the labels (this work).

    For each class (sorted), the class's ids are permuted once with
    ``numpy.random.default_rng(seed)``; the subset takes the first
    ``max(min(2, n_c), round(fraction * n_c))`` of each permutation. Prefixes of fixed
    permutations make the subsets nested: for one seed the 10 % subset lies inside the
    25 % subset, and so on.

    Parameters
    ----------
    table : DataFrame
        With ``patient_id`` and ``label`` (e.g. :func:`~core.learning.data.read_index`).
    ids : sequence of str
        The training ids.
    fraction : float
        In (0, 1].
    seed : int, default=0

    Returns
    -------
    list of str
        In the order of ``ids``.

    Examples
    --------
    >>> t = pd.DataFrame({"patient_id": [f"P{i}" for i in range(20)], "label": [0, 1] * 10})
    >>> ids = t["patient_id"].tolist()
    >>> len(label_subset(t, ids, 0.5)), set(label_subset(t, ids, 0.25)) <= set(label_subset(t, ids, 0.5))
    (10, True)
    """
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"fraction must be a number in (0, 1], got {fraction!r}") from None
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}", fix="Use e.g. 0.1, 0.25, 0.5 or 1.0.")
    for col in ("patient_id", "label"):
        if col not in table.columns:
            raise InputError(f"the patient table has no {col!r} column", fix="Use the cache index (read_index).")
    ids = _check_ids(ids, "ids")
    labels = (table.assign(patient_id=table["patient_id"].astype(str)).drop_duplicates("patient_id")
              .set_index("patient_id")["label"])
    missing = sorted(set(ids) - set(labels.index))
    if missing:
        raise InputError(f"patients {missing[:5]} are not in the table", fix="Pass ids of the table.")
    y = labels.loc[ids].to_numpy()
    rng = np.random.default_rng(int(seed))
    keep: set[str] = set()
    for c in sorted(np.unique(y).tolist()):
        members = [pid for pid, lab in zip(ids, y) if lab == c]
        order = rng.permutation(len(members))
        k = max(min(2, len(members)), int(round(fraction * len(members))))
        keep.update(members[j] for j in order[:k])
    return [pid for pid in ids if pid in keep]
