"""The AI opinion on one stored case, computed once and stored: radionecrosis versus progression.

:func:`diagnose_case` runs a shipped classifier (:mod:`core.learning.inference`) on a case
of the store and keeps everything the AI diagnosis page shows as one Result of kind
``"learning.diagnosis"``:

* the calibrated probability of progression, its interval, the flip spread, the call at
  the model's operating point and the model's held-out performance at that point;
* the out-of-distribution check (clip limits; the masked autoencoder's reconstruction
  error against the training patients');
* attribution maps of every method that applies to the architecture
  (:func:`core.explain.study.applicable_methods`), summed over channels, with the
  per-channel share of the evidence and a region summary (tumour, aggressive
  sub-region when the case has one, rest of the brain);
* the crop of the model grid they live on (channels, masks, voxel-to-scanner affine), so
  the page draws them over the fused PET/MRI without recomputing anything.

The Result's parameters name the model (bundle and the SHA-256 of its weights), the input
series and the tumour mask's hash: a new model, new images or a new mask give a new
Result; a revisit costs a database look-up (:func:`find_diagnosis`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import InputError

__all__ = ["DIAGNOSIS_KIND", "CLASSIFIERS", "CaseDiagnosis", "diagnose_case", "find_diagnosis", "load_diagnosis",
           "classifier_path", "SANITY_FILE"]

DIAGNOSIS_KIND = "learning.diagnosis"
#: Shipped classifier bundles (under ``assets/models``) and how they are named to a reader.
CLASSIFIERS = {"classifier_ssl": "ViT fine-tuned from the self-supervised encoder",
               "classifier_scratch": "3D CNN trained from scratch"}
#: File of a classifier bundle with its cohort-level attribution sanity study.
SANITY_FILE = "sanity.json"
#: File of the encoder bundle with the signature study (``python -m core explain signatures``).
SIGNATURES_FILE = "signatures.json"
#: Key of the signature's attribution map in :attr:`CaseDiagnosis.maps`.
SIGNATURE_MAP = "signature:idh"
_ENCODER = "ssl_encoder"
Progress = Callable[[float, str], None]


def classifier_path(name: str) -> Path:
    """Folder of a shipped classifier bundle."""
    from core.learning.model_card import models_dir

    if name not in CLASSIFIERS:
        raise InputError(f"unknown classifier {name!r}", fix=f"Use one of {list(CLASSIFIERS)}.")
    return models_dir() / name


@dataclasses.dataclass
class CaseDiagnosis:
    """A stored AI opinion on one case (see the module docstring).

    Attributes
    ----------
    study_id : int
    model : str
        Bundle name.
    prediction : dict
        ``probability, interval, raw, flip_spread, call, threshold``.
    held_out : dict
        The model's performance at its operating point on held-out patients.
    ood : dict
        ``error, percentile, unusual, reasons``.
    methods : list of str
    maps : dict of str to ndarray (D, H, W)
        Channel-summed attribution per method, on the crop.
    channel_share : dict of str to dict
        Per method, the share of the absolute attribution in each input channel.
    regions : dict of str to list of dict
        Per method, :func:`core.explain.study.attribution_regions` rows.
    evidence : dict of str to str
        Per method, where the evidence lies, in one sentence.
    image : ndarray (C, D, H, W)
        The model's input crop.
    masks : dict of str to ndarray (D, H, W) bool
    channels : list of str
    affine : ndarray (4, 4)
        Voxel-to-scanner (RAS mm) affine of the crop.
    timings_s : dict
    subregions : dict
        Sub-regions from the encoder's embeddings (:func:`_subregions`): cluster profiles,
        the aggressive cluster, its biopsy target, the PET-only baseline and, when the case's
        kinetic analysis is stored, the comparison with the kinetic clusters. Empty without
        a shipped encoder.
    signature : dict
        The encoder's IDH signature (progression subgroup) on this case: score, the
        logistic model's probability, its held-out figures, and where the evidence lies
        (its Integrated Gradients map is ``maps["signature:idh"]``). Empty without a
        shipped signature study.
    region_maps : dict of str to ndarray (D, H, W)
        ``embedding_clusters``, ``embedding_aggressive``, ``pet_aggressive`` and, when
        available, ``kinetic_clusters``/``kinetic_aggressive`` on the crop.
    result_id : int or None
    """

    study_id: int
    model: str
    prediction: dict
    held_out: dict
    ood: dict
    methods: list
    maps: dict
    channel_share: dict
    regions: dict
    evidence: dict
    image: np.ndarray
    masks: dict
    channels: list
    affine: np.ndarray
    timings_s: dict
    subregions: dict = dataclasses.field(default_factory=dict)
    region_maps: dict = dataclasses.field(default_factory=dict)
    signature: dict = dataclasses.field(default_factory=dict)
    result_id: int | None = None

    def summary(self) -> dict:
        return {"model": self.model, "prediction": self.prediction, "held_out": self.held_out, "ood": self.ood,
                "methods": self.methods, "channel_share": self.channel_share, "regions": self.regions,
                "evidence": self.evidence, "channels": self.channels, "subregions": self.subregions,
                "signature": self.signature,
                "timings_s": self.timings_s}


def _parameters(case, model: str, model_sha: str) -> dict:
    tumour = case.mask_by_name("tumour")
    series = {role: (rec.id if rec else None) for role in ("dynamic_pet", "t1c", "flair")
              for rec in [case.series_by_role(role)]}
    return {"model": model, "model_sha256": model_sha, "series": series,
            "tumour_mask_sha256": tumour.sha256 if tumour else None}


def _model_sha(directory: Path) -> str:
    from core.learning.model_card import read_card
    from core.learning.bundles import CLASSIFIER_FILE

    return read_card(directory).files.get(CLASSIFIER_FILE, "")


def find_diagnosis(repo, study_id: int, model: str = "classifier_ssl"):
    """The stored diagnosis of a case by this model on its current inputs (this code version), or None."""
    import core

    case = repo.get_case(study_id)
    return repo.find_result(study_id, DIAGNOSIS_KIND, _parameters(case, model, _model_sha(classifier_path(model))),
                            code_version=core.__version__)


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(fraction), message)


def _channel_share(values: np.ndarray, channels: list[str]) -> dict:
    mag = np.abs(values).reshape(values.shape[0], -1).sum(axis=1)
    total = float(mag.sum())
    return {c: (float(m) / total if total > 0 else float("nan")) for c, m in zip(channels, mag)}


def diagnose_case(repo, study_id: int, model: str = "classifier_ssl", *, methods=None, store: bool = True,
                  user: str = "local", progress: Progress | None = None) -> CaseDiagnosis:
    """Run a shipped classifier on a stored case, explain it and store the result.

    Parameters
    ----------
    repo : CaseRepository
    study_id : int
    model : str, default="classifier_ssl"
        A key of :data:`CLASSIFIERS`.
    methods : sequence of str, optional
        Attribution methods; default every method that applies to the model.
    store : bool, default=True
    user : str, default="local"
    progress : callable(fraction, message), optional

    Returns
    -------
    CaseDiagnosis

    Raises
    ------
    InputError
        The case lacks a modality, a mask or SUV information (the message says which), or
        the model bundle is missing or changed.
    """
    from core.explain.attributions import attribute, channel_sum
    from core.explain.study import applicable_methods, attribution_regions, where_evidence_lies
    from core.learning.data import InputSpec
    from core.learning.inference import case_crop, load_diagnosis_model, ood_check, predict, store_case_arrays
    from core.learning.model_card import models_dir
    from core.learning.bundles import load_encoder

    t0 = time.perf_counter()
    directory = classifier_path(model)
    _report(progress, 0.02, "Loading the model")
    net, calibration, card = load_diagnosis_model(directory)
    spec = InputSpec.from_dict(_spec_of(card))
    case = repo.get_case(study_id)
    _report(progress, 0.1, "Putting the PET and MRI on the model grid")
    arrays = store_case_arrays(repo, case, spec)
    crop, masks, origin = case_crop(arrays, calibration.crop)
    timings = {"inputs": time.perf_counter() - t0}
    _report(progress, 0.3, "Predicting (8 flips)")
    t1 = time.perf_counter()
    prediction = predict(net, crop, calibration)
    encoder_dir = models_dir() / _ENCODER
    encoder = load_encoder(encoder_dir) if (encoder_dir / "card.json").is_file() else None
    ood = ood_check(crop, masks, encoder=encoder, reference_errors=calibration.reference_errors, spec=spec)
    timings["prediction"] = time.perf_counter() - t1
    available = applicable_methods(net)
    methods = list(methods) if methods is not None else available
    bad = [m for m in methods if m not in available]
    if bad:
        raise InputError(f"attribution methods {bad} do not apply to this model", fix=f"Use some of {available}.")
    regions_masks = masks  # tumour, aggressive (empty unless the case has one), brain: attribution_regions
    maps, shares, regions, evidence = {}, {}, {}, {}
    for k, method in enumerate(methods):
        _report(progress, 0.4 + 0.55 * k / max(len(methods), 1), f"Attribution: {method}")
        t2 = time.perf_counter()
        attr = attribute(net, crop, method, target=1)
        maps[method] = channel_sum(attr).astype(np.float32)
        shares[method] = _channel_share(attr.values, list(spec.channels))
        table = attribution_regions(attr, regions_masks)
        regions[method] = table.replace({np.nan: None}).to_dict("records")
        evidence[method] = where_evidence_lies(table)
        timings[f"attribution {method}"] = time.perf_counter() - t2
    affine = np.asarray(arrays.affine, float).copy()
    affine[:3, 3] = affine[:3, :3] @ np.asarray(origin, float) + affine[:3, 3]
    subregions, region_maps, signature = {}, {}, {}
    if encoder is not None and (encoder_dir / SIGNATURES_FILE).is_file():
        _report(progress, 0.9, "Image signature of the molecular status")
        t4 = time.perf_counter()
        signature, maps[SIGNATURE_MAP] = _signature(encoder_dir, encoder, crop, regions_masks)
        timings["signature"] = time.perf_counter() - t4
    if encoder is not None:
        _report(progress, 0.93, "Sub-regions from the encoder's embeddings")
        t3 = time.perf_counter()
        subregions, region_maps = _subregions(repo, study_id, encoder, arrays, crop, masks, affine, spec)
        timings["sub-regions"] = time.perf_counter() - t3
    result = CaseDiagnosis(study_id=study_id, model=model, prediction=dataclasses.asdict(prediction),
                           held_out=calibration.held_out, ood=dataclasses.asdict(ood), methods=methods, maps=maps,
                           channel_share=shares, regions=regions, evidence=evidence, image=crop, masks=masks,
                           channels=list(spec.channels), affine=affine, subregions=subregions, signature=signature,
                           region_maps=region_maps, timings_s={**timings, "total": time.perf_counter() - t0})
    if store:
        _report(progress, 0.97, "Saving")
        result = _store(repo, case, result, _model_sha(directory), user)
    _report(progress, 1.0, "Done")
    return result


def _spec_of(card) -> dict:
    import json

    raw = (card.inputs or {}).get("spec (core.learning.data.InputSpec)")
    if not raw:
        raise InputError("the model card does not record the input spec", fix="Retrain the classifier.")
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _store(repo, case, result: CaseDiagnosis, model_sha: str, user: str) -> CaseDiagnosis:
    with tempfile.TemporaryDirectory(prefix="theraboard-diagnosis-") as tmp:
        path = Path(tmp) / "diagnosis.npz"
        np.savez_compressed(path, image=result.image.astype(np.float32), affine=result.affine,
                            **{f"mask__{k}": v.astype(np.uint8) for k, v in result.masks.items()},
                            **{f"map__{k}": v for k, v in result.maps.items()},
                            **{f"region__{k}": v.astype(np.uint8) for k, v in result.region_maps.items()})
        record = repo.add_result(case.study_id, DIAGNOSIS_KIND, _parameters(case, result.model, model_sha),
                                 result.summary(), artefact=path, user=user)
    return dataclasses.replace(result, result_id=record.id)


def load_diagnosis(repo, record) -> CaseDiagnosis:
    """Rebuild a :class:`CaseDiagnosis` from its stored result record."""
    s = record.summary
    with np.load(repo.resolve(record.artefact_path)) as npz:
        image, affine = npz["image"], npz["affine"]
        masks = {k[6:]: npz[k] > 0 for k in npz.files if k.startswith("mask__")}
        maps = {k[5:]: npz[k] for k in npz.files if k.startswith("map__")}
        region_maps = {k[8:]: npz[k] for k in npz.files if k.startswith("region__")}
    return CaseDiagnosis(study_id=record.study_id, model=s["model"], prediction=s["prediction"],
                         held_out=s["held_out"], ood=s["ood"], methods=s["methods"], maps=maps,
                         channel_share=s["channel_share"], regions=s["regions"], evidence=s["evidence"], image=image,
                         masks=masks, channels=s["channels"], affine=affine, timings_s=s["timings_s"],
                         subregions=s.get("subregions", {}), region_maps=region_maps,
                         signature=s.get("signature", {}), result_id=record.id)


def _subregions(repo, study_id: int, encoder, arrays, crop, masks, affine, spec) -> tuple[dict, dict]:
    """Embedding sub-regions of the tumour on the crop, their aggressive one and its biopsy target.

    The shift-averaged embedding (:func:`core.learning.embedding_regions.embedding_map`) of
    the crop is clustered inside the tumour; the aggressive cluster is named from the two PET
    windows; the PET-only clusters of the same crop are the baseline; when the case's kinetic
    analysis (default settings) is stored, its clusters are put on the crop and compared.
    """
    from core.kinetics.analysis import find_analysis, load_analysis
    from core.learning import embedding_regions as er

    channels = list(spec.channels)
    voxel_mm = (float(spec.voxel_mm),) * 3
    emb = er.embedding_map(encoder, arrays.image, tumour=arrays.tumour)
    tumour = emb.crop(arrays.tumour) > 0
    clusters = er.embedding_clusters(emb, tumour)
    image = emb.crop(arrays.image)
    profiles = er.cluster_profiles(clusters.labels, image, channels, voxel_mm=voxel_mm)
    aggressive = er.aggressive_cluster(profiles)
    emb_mask = clusters.labels == aggressive
    target = er.embedding_biopsy_target(emb_mask, arrays.affine, origin=emb.origin)
    pet = er.pet_window_clusters(image, tumour, channels)
    pet_profiles = er.cluster_profiles(pet.labels, image, channels, voxel_mm=voxel_mm)
    pet_mask = pet.labels == er.aggressive_cluster(pet_profiles)
    info = {"k": int(clusters.k), "aggressive_cluster": int(aggressive),
            "profiles": profiles.replace({np.nan: None}).to_dict("records"),
            "target": target.to_dict(), "origin": [int(v) for v in emb.origin],
            "pet_baseline": {"k": int(pet.k),
                             "dice_with_embedding": er.compare_with_truth(emb_mask, pet_mask)["dice"],
                             "ari_with_embedding": er.compare_with_kinetic(clusters.labels, pet.labels,
                                                                           tumour)["ari"]},
            "kinetic": None}
    maps = {"embedding_clusters": clusters.labels.astype(np.uint8), "embedding_aggressive": emb_mask,
            "pet_aggressive": pet_mask}
    record = find_analysis(repo, study_id)
    if record is not None:
        analysis = load_analysis(repo, record)
        crop_affine = emb.crop_affine(arrays.affine)
        kin = er.labels_on_grid(analysis.maps["mask_clusters"], tumour.shape, crop_affine)
        kin_aggr = er.labels_on_grid(analysis.maps["mask_aggressive"], tumour.shape, crop_affine) > 0
        cmp = er.compare_with_kinetic(clusters.labels, kin, tumour)
        overlap = er.compare_with_truth(emb_mask, kin_aggr & tumour)
        info["kinetic"] = {"result_id": record.id, "ari": cmp["ari"], "aggressive_dice": overlap["dice"],
                           "embedding_inside_kinetic": overlap["fraction_inside"],
                           "kinetic_target_mm": analysis.target.get("xyz_mm")}
        maps["kinetic_clusters"] = kin
        maps["kinetic_aggressive"] = kin_aggr
    return info, maps


def _signature(encoder_dir: Path, encoder, crop, regions_masks) -> tuple[dict, np.ndarray]:
    """The IDH signature of the progression subgroup on this crop, with its Integrated Gradients map."""
    import json
    from types import SimpleNamespace

    import torch

    from core.explain.attributions import attribute, channel_sum
    from core.explain.study import attribution_regions, where_evidence_lies
    from core.learning.signatures import SignatureNet

    study = json.loads((encoder_dir / SIGNATURES_FILE).read_text(encoding="utf-8"))["progression"]
    w = study["weights"]["idh"]
    net = SignatureNet(encoder, SimpleNamespace(weights=np.asarray(w["weights"]), intercept=w["intercept"]),
                       pool=study["settings"]["pool"]).eval()
    with torch.no_grad():
        score = float(net(torch.from_numpy(np.ascontiguousarray(crop))[None])[0, 1])
    attr = attribute(net, crop, "integrated_gradients", target=1)
    table = attribution_regions(attr, regions_masks)
    held = study["markers"]["idh"]
    info = {"marker": "IDH mutation", "subgroup": "progression", "score": score,
            "probability": float(1.0 / (1.0 + np.exp(-score))),
            "held_out": {k: held[k] for k in ("auc", "ci_low", "ci_high", "perm_p", "n_pos", "n_neg",
                                              "n_significant")},
            "regions": table.replace({np.nan: None}).to_dict("records"), "evidence": where_evidence_lies(table)}
    return info, channel_sum(attr).astype(np.float32)
