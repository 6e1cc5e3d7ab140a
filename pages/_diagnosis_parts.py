"""Pieces of the AI diagnosis page: cached loads, the opinion, explanations, radiomics and cohort panels.

Not a page (``app.py`` registers pages explicitly).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import InputError
from core.learning.diagnosis import CLASSIFIERS, SANITY_FILE, classifier_path, load_diagnosis
from core.viz.evaluation import format_estimate, format_p

METHOD_NAMES = {"integrated_gradients": "Integrated Gradients", "gradient_shap": "GradientSHAP",
                "occlusion": "Occlusion (8-voxel windows)", "grad_cam": "Grad-CAM", "lrp": "LRP (epsilon rule)",
                "saliency": "Saliency (gradient)"}
CHANNEL_NAMES = {"pet_early": "PET early 0-10 min (SUVR)", "pet_late": "PET late 10-30 min (SUVR)",
                 "t1c": "T1c (z-score)", "flair": "FLAIR (z-score)", "t1": "T1 (z-score)"}


@st.cache_resource(max_entries=8, show_spinner="Loading the stored diagnosis…")
def diagnosis_of(db_url: str, study_id: int, result_id: int):
    """A stored diagnosis (read-only, shared across reruns)."""
    from core.learning.diagnosis import DIAGNOSIS_KIND
    from pages._shared import repository

    repo = repository()
    record = next(r for r in repo.list_results(study_id, DIAGNOSIS_KIND) if r.id == result_id)
    return load_diagnosis(repo, record)


@st.cache_data(show_spinner=False)
def sanity_of(model: str) -> dict:
    """The cohort-level sanity study shipped with a classifier (``{}`` when it has none)."""
    path = classifier_path(model) / SANITY_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def sanity_verdicts(model: str) -> dict[str, dict]:
    """Per method: ``passed`` (True/False/None), the sentence for the physician and the similarities."""
    from core.explain.study import SanityStudy

    stored = sanity_of(model)
    if not stored:
        return {}
    table = SanityStudy.from_dict(stored).table()
    return {r["method"]: {"passed": r["passed"], "verdict": r["verdict"], "similarity": r["mean_similarity"],
                          "label_similarity": r["label_similarity"], "n": r["n"]}
            for r in table.to_dict("records")}


@st.cache_data(show_spinner=False)
def encoder_metric(prefix: str) -> dict:
    """The shipped encoder card's metric whose name starts with ``prefix`` (``{}`` when absent)."""
    from core.learning.model_card import models_dir, read_card

    try:
        metrics = read_card(models_dir() / "ssl_encoder").metrics or {}
    except InputError:
        return {}
    return next((v for k, v in metrics.items() if k.startswith(prefix)), {})


@st.cache_data(show_spinner=False)
def encoder_history() -> list:
    """The shipped encoder's pretraining history (``[]`` when no encoder is shipped)."""
    from core.learning.model_card import load_bundle, models_dir

    directory = models_dir() / "ssl_encoder"
    if not (directory / "card.json").is_file():
        return []
    _, objects = load_bundle(directory)
    return list(objects["encoder.joblib"].get("history", []))


def shipped_models() -> dict[str, str]:
    """The classifiers of :data:`CLASSIFIERS` that are shipped (their bundle exists)."""
    return {k: v for k, v in CLASSIFIERS.items() if (classifier_path(k) / "card.json").is_file()}


def opinion_panel(diag) -> None:
    """Calibrated probability, call, uncertainty, operating point and held-out performance."""
    p = diag.prediction
    lo, hi = p["interval"]
    left, mid, right = st.columns(3)
    left.metric("P(progression), calibrated", f"{p['probability']:.2f}",
                help="The model's probability after Platt scaling on the validation patients.")
    mid.metric("Call at the operating point", p["call"],
               help=f"Progression when the calibrated probability is at least {p['threshold']:.2f}.")
    right.metric("Calibration interval", f"{lo:.2f}-{hi:.2f}",
                 help="95 % interval of the calibrated probability over bootstrap refits of the calibration.")
    st.caption(f"Model probability before calibration {p['raw']:.2f}. Stability: the calibrated probability of the "
               f"8 mirrored inputs varies by {p['flip_spread']:.3f} (SD): "
               f"{'stable' if p['flip_spread'] < 0.05 else 'unstable — the model depends on the orientation'}.")
    rows = []
    for name, m in diag.held_out.items():
        rows.append({"Held-out patients": name, "n (progression)": f"{m['n']} ({m['n_progression']})",
                     "AUC": format_estimate(m["auc"]["value"], m["auc"]["ci_low"], m["auc"]["ci_high"]),
                     **{k.upper() if len(k) == 3 else k.capitalize():
                        format_estimate(m[k]["value"], m[k]["ci_low"], m[k]["ci_high"])
                        for k in ("sensitivity", "specificity", "ppv", "npv")}})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="held_out_table")
        st.caption("How far to trust the call: the model's performance at this operating point on patients it "
                   "never saw (95 % CIs: DeLong for the AUC, Wilson for proportions). Synthetic cohort.")


def ood_panel(diag) -> None:
    """The out-of-distribution check."""
    ood = diag.ood
    if ood["unusual"]:
        for reason in ood["reasons"]:
            st.warning(reason, icon=":material/warning:")
    elif ood["percentile"] is not None:
        st.caption(f"Input check: the encoder's reconstruction error of this lesion is at the "
                   f"{ood['percentile']:.0f}th percentile of the training patients' (flagged above the 99th); "
                   "intensities within the normalisation range.")


def method_label(method: str, verdicts: dict) -> str:
    v = verdicts.get(method, {})
    flag = {True: " ✓ passes sanity", False: " ✗ fails sanity"}.get(v.get("passed"), "")
    return METHOD_NAMES.get(method, method) + flag


def explanation_panel(diag, model: str) -> None:
    """Attribution over fused slices with the sanity verdict, region summary and channel shares."""
    from core.viz.diagnosis import AXES, attribution_slice_figure

    verdicts = sanity_verdicts(model)
    method = st.selectbox("Attribution method", diag.methods, key="method",
                          format_func=lambda m: method_label(m, verdicts))
    verdict = verdicts.get(method)
    if verdict is None:
        st.info("No cohort sanity check is shipped for this method and model.", icon=":material/info:")
    else:
        detail = (f"Rank correlation with the map of the fully randomised model {verdict['similarity']:.2f} "
                  f"(mean of {verdict['n']} test patients; passes below 0.5)")
        label_sim = verdict["label_similarity"]
        if label_sim is not None and np.isfinite(label_sim):
            detail += (f"; with a model trained on shuffled labels {label_sim:.2f}"
                       + (" — the data-randomisation check fails: the map looks much the same when the labels "
                          "carry no information" if label_sim >= 0.5 else " (data-randomisation check passes)"))
        if verdict["passed"] is False:
            st.warning(f"Sanity check FAILED — {verdict['verdict']}. {detail}. Do not read this map as the model's "
                       "reasoning.", icon=":material/gpp_bad:")
        else:
            st.success(f"Sanity check passed — {verdict['verdict']}. {detail}.", icon=":material/verified:")
    st.markdown(f"**Where the evidence lies:** {diag.evidence[method]}")
    c1, c2, c3 = st.columns(3)
    channel = c1.selectbox("Background", diag.channels, index=diag.channels.index("pet_late")
                           if "pet_late" in diag.channels else 0, key="background",
                           format_func=lambda c: CHANNEL_NAMES.get(c, c))
    axis = c2.radio("Plane", list(AXES), index=2, format_func=AXES.get, horizontal=True, key="axis")
    n = diag.image.shape[1 + axis]
    counts = diag.masks["tumour"].sum(axis=tuple(a for a in range(3) if a != axis))
    index = c3.slider("Slice", 0, n - 1, int(np.argmax(counts)), key="slice")
    k = diag.channels.index(channel)
    st.plotly_chart(attribution_slice_figure(diag.image[k], diag.maps[method], diag.masks["tumour"], axis=axis,
                                             index=index, background_name=CHANNEL_NAMES.get(channel, channel),
                                             method=METHOD_NAMES.get(method, method),
                                             voxel_mm=float(abs(diag.affine[0, 0]))), key="attribution_slice")
    st.caption("Red: evidence for progression, blue: against; white outline: tumour. The map lives on the "
               "model's grid (PET and MRI co-registered, 3 mm), the crop the model read.")
    left, right = st.columns(2)
    with left:
        regions = pd.DataFrame(diag.regions[method])
        st.dataframe(regions, hide_index=True, key="region_table")
    with right:
        shares = pd.DataFrame({"Channel": [CHANNEL_NAMES.get(c, c) for c in diag.channel_share[method]],
                               "Share of |attribution|": [round(v, 3) for v in diag.channel_share[method].values()]})
        st.dataframe(shares, hide_index=True, key="channel_table")


def scene_panel(diag, method: str):
    """3D: tumour (translucent) and the voxels of strongest positive evidence."""
    from core.imaging.volume import Volume
    from core.viz.diagnosis import evidence_mask
    from core.viz.scene3d import scene_figure

    top = evidence_mask(diag.maps[method], within=diag.masks["brain"], top_fraction=0.05)
    structures = [{"name": "tumour", "mask": Volume(diag.masks["tumour"].astype(np.uint8), diag.affine),
                   "color": "#c8c8c8", "opacity": 0.35}]
    if top.any():
        structures.append({"name": f"strongest evidence ({METHOD_NAMES.get(method, method)}, top 5 %)",
                           "mask": Volume(top.astype(np.uint8), diag.affine), "color": "#e15759", "opacity": 0.9})
    return scene_figure(structures, smooth_sigma_mm=1.5)


def radiomics_panel(repo, case, diag) -> None:
    """The radiomics baseline on the same case, its SHAP explanation and whether the two agree."""
    from core.radiomics.cases import case_radiomics, stored_case_radiomics
    from core.viz.evaluation import model_label
    from pages._cohort_parts import shipped_baseline

    try:
        baseline = shipped_baseline()
    except InputError as err:
        st.error(str(err))
        return
    features = stored_case_radiomics(repo, case.study_id)
    if features is None:
        st.caption("The radiomics features of this case are not computed yet (about 6 s).")
        if not st.button("Compute radiomics for this case", key="compute_radiomics"):
            return
        try:
            with st.spinner("Extracting IBSI features…"):
                features = case_radiomics(repo, case.study_id)
        except InputError as err:
            st.error(str(err), icon=":material/error:")
            return
    row = pd.DataFrame([features], index=[case.study_id])
    try:
        pred = baseline.predict(row).iloc[0]
    except InputError as err:
        st.error(str(err), icon=":material/error:")
        return
    agree = pred["call"] == diag.prediction["call"]
    st.metric(f"{model_label(baseline.best)}: P(progression)", f"{pred['probability']:.2f}",
              help=f"Call at its training threshold {pred['threshold']:.2f}: {pred['call']}.")
    (st.success if agree else st.warning)(
        f"The radiomics baseline calls **{pred['call']}**; the deep model calls **{diag.prediction['call']}**: "
        f"{'they agree' if agree else 'they disagree — review the images and both explanations'}.")
    from core.viz.evaluation import shap_waterfall_figure

    e = baseline.explain(row)
    st.plotly_chart(shap_waterfall_figure(e.values[0], baseline.shap_inputs(row)[0], list(e.feature_names),
                                          e.base_value, output=e.output), key="radiomics_waterfall")
    st.caption(f"SHAP contributions on the {e.output} scale (Lundberg & Lee 2017); feature values are z-scores.")


@st.cache_data(show_spinner="Loading the label-efficiency study…")
def label_efficiency_table() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The shipped study's table and scores, or None when it is not shipped."""
    from core.learning.label_efficiency import LabelEfficiency
    from core.learning.model_card import models_dir, verify_bundle

    directory = models_dir() / "label_efficiency"
    if not (directory / "card.json").is_file():
        return None
    verify_bundle(directory)
    study = LabelEfficiency.load(directory)
    return study.table(), study.scores


def cohort_panel() -> None:
    """ROC curves of the three arms at 100 % labels with DeLong tests, and the label-efficiency plot."""
    from core.evaluation import model_curves
    from core.learning.label_efficiency import ARM_TITLES
    from core.viz.diagnosis import label_efficiency_figure
    from core.viz.evaluation import roc_figure

    loaded = label_efficiency_table()
    if loaded is None:
        st.info("The label-efficiency study is not shipped: run `python -m core train label-efficiency`.")
        return
    table, scores = loaded
    full = scores[np.isclose(scores["fraction"], 1.0) & (scores["seed"] == scores["seed"].min())]
    split = st.radio("Held-out patients", ["test", "external"], horizontal=True, key="cohort_split",
                     format_func={"test": "Internal test", "external": "External site (C)"}.get)
    part = full[full["split"] == split]
    wide = part.pivot(index="patient_id", columns="arm", values="score")
    y = part.drop_duplicates("patient_id").set_index("patient_id").loc[wide.index, "y"].to_numpy(int)
    curves = model_curves(y, {a: wide[a].to_numpy() for a in wide.columns}, n_boot=300)
    named = {ARM_TITLES.get(a, a): c for a, c in curves["roc"].items()}
    st.plotly_chart(roc_figure(named), key=f"cohort_roc_{split}")
    rows = table[np.isclose(table["fraction"], 1.0) & (table["seed"] == table["seed"].min())]
    st.dataframe(pd.DataFrame({
        "Model": [ARM_TITLES.get(a, a) for a in rows["arm"]],
        "Labelled patients": rows["n_labels"],
        "AUC internal test": [format_estimate(r.test_auc, r.test_ci_low, r.test_ci_high) for r in rows.itertuples()],
        "AUC external": [format_estimate(r.external_auc, r.external_ci_low, r.external_ci_high)
                         for r in rows.itertuples()],
        "Drop (internal - external)": rows["external_drop"].round(3),
        "DeLong p vs radiomics": [format_p(v) if pd.notna(v) else "" for v in rows.get("p_vs_radiomics", [])],
    }), hide_index=True, key="cohort_table")
    st.caption("The shipped models (100 % of the labels, training seed 0), trained on the same patients and scored "
               "once on the same held-out patients; DeLong's paired test on the internal test patients.")
    st.plotly_chart(label_efficiency_figure(table, split=split, titles=ARM_TITLES), key=f"label_eff_{split}")
    history = encoder_history()
    if history:
        from core.viz.diagnosis import loss_curve_figure

        with st.expander("Self-supervised pretraining of the encoder"):
            st.plotly_chart(loss_curve_figure(history), key="pretraining_curve")
            st.caption("Masked-autoencoder loss on the removed patches (75 % of 8^3-voxel patches) of training "
                       "and unlabelled volumes, and of the validation patients; the shipped weights are the best "
                       "epoch's.")
    n_seeds = int(table["seed"].nunique())
    spread = ("the line joins the mean over " f"{n_seeds} training seeds (each seed a dot), bars span the seeds"
              if n_seeds > 1 else "bars: DeLong 95 % CI (one training seed)")
    st.caption("Label efficiency: AUC when training on 10, 25, 50 and 100 % of the training labels (nested "
               f"subsets, the same for every arm; the validation labels are counted); {spread}.")


def subregions_panel(diag) -> None:
    """Tumour sub-regions from the encoder's embeddings: an alternative biopsy target with its evidence."""
    from core.viz.diagnosis import AXES, label_slice_figure

    info = diag.subregions
    if not info:
        st.info("No self-supervised encoder is shipped, so there are no embedding sub-regions.")
        return
    target = info["target"]
    x, y, z = target["xyz_mm"]
    st.markdown(f"**Alternative biopsy target (embedding sub-regions):** x {x:.1f}, y {y:.1f}, z {z:.1f} mm "
                f"(scanner RAS), {target['depth_mm']:.1f} mm deep inside cluster {info['aggressive_cluster']} "
                f"of {info['k']}.")
    for reason in target["reasons"]:
        st.caption(f"ⓘ {reason}")
    base = info["pet_baseline"]
    kin = info["kinetic"]
    lines = [f"Against PET-only clusters of the same crop (early SUVR and late/early ratio): Dice of the two "
             f"aggressive regions {base['dice_with_embedding']:.2f}, adjusted Rand index "
             f"{base['ari_with_embedding']:.2f}."]
    if kin is None:
        lines.append("The kinetic sub-regions of this case are not computed yet: open PET kinetics to compare with "
                     "the kinetic clusters and their target.")
    else:
        lines.append(f"Against the kinetic clusters of the PET engine: adjusted Rand index {kin['ari']:.2f}, Dice of "
                     f"the aggressive regions {kin['aggressive_dice']:.2f}; "
                     f"{kin['embedding_inside_kinetic']:.0%} of the embedding's aggressive region lies in the "
                     "kinetic one.")
        if kin.get("kinetic_target_mm"):
            kx, ky, kz = kin["kinetic_target_mm"]
            d = float(np.linalg.norm(np.subtract((x, y, z), (kx, ky, kz))))
            lines.append(f"The kinetic target is {d:.0f} mm away (x {kx:.1f}, y {ky:.1f}, z {kz:.1f} mm).")
    st.markdown("\n".join(f"- {line}" for line in lines))
    cohort = encoder_metric("embedding sub-regions")
    if cohort:
        emb = cohort["Dice, embedding aggressive cluster vs truth (mean, SD)"]
        pet = cohort["Dice, PET-only clusters vs truth (mean, SD)"]
        p = format_p(cohort["Wilcoxon signed-rank p (paired)"])
        st.caption(f"On {cohort['patients']} held-out synthetic progression patients the embedding's aggressive "
                   f"cluster matched the true aggressive region with Dice {emb[0]:.2f} ± {emb[1]:.2f}, the PET-only "
                   f"clusters with {pet[0]:.2f} ± {pet[1]:.2f} (paired Wilcoxon p {p}; "
                   "encoder model card). Research evidence beside the kinetic target of the PET kinetics page.")
    left, right = st.columns([2, 1])
    with left:
        axis = st.radio("Plane", list(AXES), index=2, format_func=AXES.get, horizontal=True, key="region_axis")
        k = diag.channels.index("pet_late") if "pet_late" in diag.channels else 0
        ijk = np.asarray(target["ijk"])  # voxel of the crop (the mm position includes the crop's origin)
        st.plotly_chart(label_slice_figure(diag.image[k], diag.region_maps["embedding_clusters"],
                                           highlight=diag.region_maps["embedding_aggressive"], target_ijk=ijk,
                                           axis=axis, index=int(ijk[axis]),
                                           title="Embedding clusters, aggressive one outlined, target ×",
                                           voxel_mm=float(abs(diag.affine[0, 0]))), key="region_slice")
    with right:
        st.dataframe(pd.DataFrame(info["profiles"]).round(3), hide_index=True, key="region_profiles")
        st.caption("Per cluster: size and mean channel values on the model grid; the aggressive cluster has the "
                   "highest early uptake and the strongest washout (lowest late/early ratio).")


def signature_panel(diag) -> None:
    """The encoder's IDH signature on this case and the tumour areas that drive it."""
    from core.learning.diagnosis import SIGNATURE_MAP
    from core.viz.diagnosis import attribution_slice_figure

    sig = diag.signature
    if not sig:
        st.info("No image-signature study is shipped with the encoder (`python -m core explain signatures`).")
        return
    h = sig["held_out"]
    st.metric(f"{sig['marker']} signature (research)", f"{sig['probability']:.2f}",
              help="Logistic model on the encoder's features of progressing lesions; not calibrated for other "
                   "cohorts and not a molecular test.")
    st.caption(f"Fitted on {h['n_pos'] + h['n_neg']} held-out synthetic progression patients ({h['n_pos']} "
               f"IDH-mutant): cross-validated AUC {format_estimate(h['auc'], h['ci_low'], h['ci_high'])}, "
               f"permutation p {format_p(h['perm_p'])}; {h['n_significant']} encoder features significant after "
               "Benjamini-Hochberg correction. Meaningful for progressing lesions only.")
    st.markdown(f"**What drives the signature here:** {sig['evidence']}")
    k = diag.channels.index("pet_early") if "pet_early" in diag.channels else 0
    st.plotly_chart(attribution_slice_figure(diag.image[k], diag.maps[SIGNATURE_MAP], diag.masks["tumour"],
                                             background_name="PET early 0-10 min (SUVR)",
                                             method="Integrated Gradients of the IDH signature",
                                             voxel_mm=float(abs(diag.affine[0, 0]))), key="signature_slice")
