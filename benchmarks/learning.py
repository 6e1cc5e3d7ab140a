"""Benchmark: deep-model throughput and per-case latency, against the models' baselines.

Measured in one run on this machine (``--device``, default ``core.config.device()``):

1. Pretraining throughput (volumes per second) of the 3D ViT masked autoencoder
   (:class:`core.learning.mae.MaskedAutoencoder3D`, ``MAEConfig.small()`` on 64^3 and on
   32^3 crops, 75 % masking), one :func:`~core.learning.mae.pretrain_step` per batch, and
   the baseline: a supervised training step of the 3D CNN trained from scratch
   (:class:`core.learning.cnn.CNN3D`) on the same batches. Throughput does not depend on
   the voxel values, so random tensors of the input's shape are used.
2. Inference latency for one case, as the AI page would run it: the case's channels on the
   model grid (:func:`core.learning.data.case_arrays`), a tumour-centred 32^3 crop, the
   CNN and the ViT forward pass, and an Integrated Gradients map (32 steps); the baseline is
   the radiomics pipeline's per-case cost (:func:`core.radiomics.cohort.case_features`, static
   and dynamic) on the same patient. Aim (issue 5): inference in under 5 s on CPU.

Weights are freshly initialised in sections 1-2: the timings do not depend on training.

3. The shipped, calibrated classifiers on the same case, as the AI diagnosis page runs
   them: 8-flip prediction, out-of-distribution check, saliency and IG maps.
4. The shipped label-efficiency study (``assets/models/label_efficiency``): held-out AUC
   with DeLong CIs per arm and label fraction, next to the radiomics baseline, with the
   training time each run took (``python -m core train label-efficiency`` reruns it).

Run: ``.venv/bin/python benchmarks/learning.py`` (about 1-2 minutes on 2 cores);
``--device cuda`` on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config  # noqa: E402
from core.learning.cnn import CNN3D, CNNConfig  # noqa: E402
from core.learning.mae import MAEConfig, MaskedAutoencoder3D, ViTClassifier, pretrain_step  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(step, batch: torch.Tensor, n_steps: int, device: torch.device) -> float:
    step(batch)  # warm-up (allocations, autotuning)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step(batch)
    _sync(device)
    return n_steps * batch.shape[0] / (time.perf_counter() - t0)


def pretraining(device: torch.device, batch_size: int, n_steps: int) -> None:
    print(f"\n1. Training throughput, batch {batch_size}, {n_steps} steps after one warm-up (volumes/s)")
    print(f"{'input':>12} | {'MAE pretrain (75 % masked)':>27} | {'CNN3D supervised (baseline)':>28}")
    for size in (64, 32):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, 4, size, size, size, generator=g).to(device)
        y = torch.randint(0, 2, (batch_size,), generator=g).to(device)
        mae = MaskedAutoencoder3D(MAEConfig.small(image_size=size)).to(device)
        opt = torch.optim.AdamW(mae.parameters(), lr=1e-3)
        mae_rate = _throughput(lambda b: pretrain_step(mae, b, opt), x, n_steps, device)
        cnn = CNN3D(CNNConfig(in_channels=4)).to(device)
        opt_c = torch.optim.AdamW(cnn.parameters(), lr=1e-3)

        def cnn_step(b):
            opt_c.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(cnn(b), y)
            loss.backward()
            opt_c.step()

        cnn_rate = _throughput(cnn_step, x, n_steps, device)
        print(f"{f'4 x {size}^3':>12} | {mae_rate:27.2f} | {cnn_rate:28.2f}")


def latency(device: torch.device) -> None:
    from core.explain.attributions import attribute
    from core.learning.data import InputSpec, case_arrays
    from core.phantoms.brain_fdopa import generate_patient
    from core.radiomics.cohort import case_features

    print("\n2. One case (DEMO-A-000), seconds")
    case = generate_patient(0)
    t0 = time.perf_counter()
    arrays = case_arrays(case, InputSpec())
    t_arrays = time.perf_counter() - t0
    com = np.round(np.argwhere(arrays.tumour > 0).mean(axis=0)).astype(int)
    lo = np.clip(com - 16, 0, np.array(arrays.tumour.shape) - 32)
    crop = arrays.image[:, lo[0]:lo[0] + 32, lo[1]:lo[1] + 32, lo[2]:lo[2] + 32]
    x = torch.from_numpy(np.ascontiguousarray(crop))[None].float().to(device)
    cnn = CNN3D(CNNConfig(in_channels=4)).to(device).eval()
    vit = ViTClassifier.from_mae(MaskedAutoencoder3D(MAEConfig.small(image_size=32)), 2).to(device).eval()
    rows = [("channels on the model grid (case_arrays)", t_arrays)]
    for name, model in (("CNN3D", cnn), ("ViT (SSL encoder + head)", vit)):
        with torch.inference_mode():
            model(x)
            _sync(device)
            t0 = time.perf_counter()
            model(x).softmax(-1)
            _sync(device)
        rows.append((f"{name} forward", time.perf_counter() - t0))
    t0 = time.perf_counter()
    attribute(cnn, x, "integrated_gradients", target=1, n_steps=32)
    rows.append(("CNN3D Integrated Gradients (32 steps)", time.perf_counter() - t0))
    total = rows[0][1] + rows[1][1] + rows[-1][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        case_features(case.pet, case.tumour_mask)
        t_rad = time.perf_counter() - t0
    for label, seconds in rows:
        print(f"  {label:<45} {seconds:8.3f}")
    print(f"  {'total for a CNN prediction with its IG map':<45} {total:8.3f}   (aim: < 5 s on CPU)")
    print(f"  {'baseline: radiomics features (static+TTP+slope)':<45} {t_rad:8.3f}")


def shipped(device: torch.device) -> None:
    """Per-case latency of the shipped, calibrated classifiers as the AI page runs them."""
    from core.explain.attributions import attribute
    from core.learning.data import InputSpec, case_arrays
    from core.learning.diagnosis import CLASSIFIERS, classifier_path
    from core.learning.inference import case_crop, load_diagnosis_model, ood_check, predict
    from core.learning.model_card import models_dir
    from core.learning.bundles import load_encoder
    from core.phantoms.brain_fdopa import generate_patient

    names = [n for n in CLASSIFIERS if (classifier_path(n) / "card.json").is_file()]
    if not names:
        print("\n3. Shipped classifiers: none in assets/models (run `python -m core train label-efficiency`)")
        return
    print("\n3. Shipped classifiers on one case (DEMO-A-000), seconds: 8-flip calibrated prediction, "
          "OOD check (encoder reconstruction), saliency and Integrated Gradients (32 steps)")
    arrays = case_arrays(generate_patient(0), InputSpec())
    encoder = load_encoder(models_dir() / "ssl_encoder").to(device)
    for name in names:
        model, calibration, _ = load_diagnosis_model(classifier_path(name))
        model = model.to(device)
        crop, masks, _ = case_crop(arrays, calibration.crop)
        predict(model, crop, calibration)  # warm-up
        t0 = time.perf_counter()
        pred = predict(model, crop, calibration)
        t_pred = time.perf_counter() - t0
        t0 = time.perf_counter()
        ood_check(crop, masks, encoder=encoder, reference_errors=calibration.reference_errors)
        t_ood = time.perf_counter() - t0
        x = torch.from_numpy(crop)[None].to(device)
        t0 = time.perf_counter()
        attribute(model, x, "saliency")
        t_sal = time.perf_counter() - t0
        t0 = time.perf_counter()
        attribute(model, x, "integrated_gradients", n_steps=32)
        t_ig = time.perf_counter() - t0
        print(f"  {name:<20} predict {t_pred:6.3f} | OOD {t_ood:6.3f} | saliency {t_sal:6.3f} | IG {t_ig:6.3f} | "
              f"P(progression) {pred.probability:.2f}")


def label_efficiency() -> None:
    """The shipped label-efficiency study: held-out AUCs and the training time of each run."""
    from core.learning.label_efficiency import LabelEfficiency
    from core.learning.model_card import models_dir, read_card, verify_bundle

    directory = models_dir() / "label_efficiency"
    if not (directory / "card.json").is_file():
        print("\n4. Label efficiency: not shipped (run `python -m core train label-efficiency`)")
        return
    verify_bundle(directory)
    card = read_card(directory)
    study = LabelEfficiency.load(directory)
    table = study.table().merge(study.runs[["arm", "fraction", "seed", "seconds"]], on=["arm", "fraction", "seed"])
    print(f"\n4. Label efficiency (shipped study, trained {card.created}, code {card.code_version}; "
          "training seconds as measured then)")
    cols = ["arm", "fraction", "n_labels", "test_auc", "test_ci_low", "test_ci_high", "external_auc",
            "external_drop", "p_vs_radiomics", "seconds"]
    print(table[[c for c in cols if c in table]].round(3).to_string(index=False))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="torch device (default: core.config.device())")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-latency", action="store_true", help="skip the per-case latency section")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else config.device()
    print(f"TheraBoard learning benchmark · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · torch {torch.__version__} ({torch.get_num_threads()} threads) · device {device}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    pretraining(device, args.batch, args.steps)
    if not args.no_latency:
        latency(device)
        shipped(device)
    label_efficiency()
    return 0


if __name__ == "__main__":
    sys.exit(main())
