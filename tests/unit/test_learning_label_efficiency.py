"""Label-efficiency study on a tiny cohort cache: every arm, nested subsets, held-out scores, paired tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.learning.data import InputSpec, build_cohort_cache, read_index
from core.learning.label_efficiency import (ARMS, SCORED_SPLITS, LabelEfficiency, epochs_for,
                                            run_label_efficiency)
from core.learning.mae import MAEConfig, MaskedAutoencoder3D

TINY = MAEConfig(image_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_dim=16,
                 decoder_depth=1, decoder_heads=2)
FAST = {"vit_options": {"epochs": 1, "patience": 1}, "cnn_options": {"crop": 16, "epochs": 1, "patience": 1}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    directory = tmp_path_factory.mktemp("le_cache")
    build_cohort_cache(directory, n=18, seed=9, spec=InputSpec(shape=(24, 24, 24), voxel_mm=8.0))
    index = read_index(directory)
    pos = index.loc[index.label == 1, "patient_id"].tolist()
    neg = index.loc[index.label == 0, "patient_id"].tolist()
    split = {"train": pos[:3] + neg[:3], "val": pos[3:5] + neg[3:5], "test": pos[5:7] + neg[5:7],
             "external": pos[7:9] + neg[7:9]}
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"patient_id": index.patient_id, "site": index.site,
                          "label": np.where(index.label == 1, "progression", "radionecrosis"),
                          "signal": index.label * 3.0 + rng.normal(0, 0.1, len(index)),
                          "noise_a": rng.normal(size=len(index)), "noise_b": rng.normal(size=len(index))})
    return directory, index, split, table


@pytest.fixture(scope="module")
def study(cohort):
    directory, _, split, table = cohort
    import torch

    torch.manual_seed(0)
    return run_label_efficiency(directory, split, encoder=MaskedAutoencoder3D(TINY), radiomics_table=table,
                                fractions=(1.0, 0.5), device="cpu", **FAST)


def test_epochs_grow_with_fewer_labels_up_to_four_times():
    assert [epochs_for(20, f) for f in (1.0, 0.5, 0.25, 0.1)] == [20, 40, 80, 80]
    assert epochs_for(5, 0.3) == 17


def test_every_arm_and_fraction_is_scored_on_the_same_held_out_patients(cohort, study):
    _, index, split, _ = cohort
    runs = study.runs
    assert sorted(zip(runs.arm, runs.fraction)) == sorted((a, f) for a in ARMS for f in (0.5, 1.0))
    half = runs[runs.fraction == 0.5]
    assert (half.n_train_labels == 4).all() and (runs[runs.fraction == 1.0].n_train_labels == 6).all()
    assert (runs.n_labels == runs.n_train_labels + 4).all()
    # deep arms at 50 %: epochs stretched to 2
    assert set(half.loc[half.arm != "radiomics", "best_epoch"]) <= {1, 2}
    labels = index.set_index("patient_id")["label"]
    for run in runs.itertuples():
        for s in SCORED_SPLITS:
            sc = study.scores_of(run.arm, run.fraction, run.seed, s)
            assert sorted(sc.patient_id) == sorted(split[s])
            np.testing.assert_array_equal(sc.y.to_numpy(), labels.loc[sc.patient_id].to_numpy())
            assert ((sc.score >= 0) & (sc.score <= 1)).all()
    assert set(study.models) == {(a, 1.0, 0) for a in ARMS}


def test_table_has_cis_external_drop_and_paired_tests(study):
    table = study.table()
    assert len(table) == 6
    for col in ("test_auc", "test_ci_low", "test_ci_high", "external_auc", "external_drop"):
        assert table[col].notna().all(), col
    assert np.allclose(table.external_drop, table.test_auc - table.external_auc)
    assert (table.test_ci_low <= table.test_auc).all() and (table.test_auc <= table.test_ci_high).all()
    deep = table[table.arm != "radiomics"]
    assert deep["p_vs_radiomics"].between(0, 1).all()
    assert table.loc[table.arm == "radiomics", "p_vs_radiomics"].isna().all()
    assert table.loc[table.arm == "ssl_vit", "p_vs_cnn_scratch"].between(0, 1).all()
    # the planted radiomics feature separates the held-out patients perfectly
    assert (table.loc[table.arm == "radiomics", "test_auc"] == 1.0).all()


def test_save_and_load_round_trip(study, tmp_path):
    study.save(tmp_path)
    back = LabelEfficiency.load(tmp_path)
    pd.testing.assert_frame_equal(back.table(), study.table())
    with pytest.raises(InputError, match="cannot read"):
        LabelEfficiency.load(tmp_path / "missing")


def test_bad_input_is_refused(cohort):
    directory, _, split, table = cohort
    enc = MaskedAutoencoder3D(TINY)
    with pytest.raises(InputError, match="unknown arms"):
        run_label_efficiency(directory, split, arms=("svm",))
    with pytest.raises(InputError, match="needs the pretrained encoder"):
        run_label_efficiency(directory, split, arms=("ssl_vit",))
    with pytest.raises(InputError, match="needs the radiomics feature table"):
        run_label_efficiency(directory, split, arms=("radiomics",))
    with pytest.raises(InputError, match="not in \\(0, 1\\]"):
        run_label_efficiency(directory, split, encoder=enc, arms=("ssl_vit",), fractions=(0.0,))
    with pytest.raises(InputError, match="in both"):
        run_label_efficiency(directory, {**split, "test": split["train"][:1] + split["test"]},
                             radiomics_table=table, arms=("radiomics",))
    with pytest.raises(InputError, match="no \\['external'\\]"):
        run_label_efficiency(directory, {**split, "external": []}, radiomics_table=table, arms=("radiomics",))
    flipped = table.assign(label=np.where(table.label == "progression", "radionecrosis", "progression"))
    with pytest.raises(InputError, match="disagree"):
        run_label_efficiency(directory, split, radiomics_table=flipped, arms=("radiomics",))
    with pytest.raises(InputError, match="no radiomics features"):
        run_label_efficiency(directory, split, radiomics_table=table.iloc[2:], arms=("radiomics",))
    with pytest.raises(InputError, match="not in the cache"):
        run_label_efficiency(directory, {**split, "val": split["val"] + ["NOBODY"]}, radiomics_table=table,
                             arms=("radiomics",))


def test_command_line_writes_the_study_and_the_classifier_bundles(cohort, tmp_path):
    import argparse

    from core.learning import cli
    from core.learning.model_card import read_card
    from core.learning.bundles import load_classifier, save_encoder

    directory = cohort[0]
    save_encoder(MaskedAutoencoder3D(TINY), tmp_path / "ssl_encoder")
    argv = ["--cache", str(directory), "--split", "own", "--val-fraction", "0.4", "--test-fraction", "0.3",
            "--fractions", "1,0.5", "--vit-epochs", "1", "--cnn-epochs", "1", "--crop", "16",
            "--encoder", str(tmp_path / "ssl_encoder"), "--out", str(tmp_path / "le")]
    args = cli.add_arguments(argparse.ArgumentParser(), "label-efficiency").parse_args(argv)
    assert cli.label_efficiency(args) == 0
    study = LabelEfficiency.load(tmp_path / "le")
    assert set(study.runs.arm) == {"ssl_vit", "cnn_scratch"}  # these patients have no radiomics features
    card = read_card(tmp_path / "le")
    assert "--fractions 1,0.5" in card.reproduce and len(card.metrics) == 4
    from core.learning.inference import load_diagnosis_model

    for name, crop in (("classifier_ssl", 16), ("classifier_scratch", 16)):
        model = load_classifier(tmp_path / name)
        assert "label-efficiency" in read_card(tmp_path / name).reproduce and not model.training
        _, calibration, card = load_diagnosis_model(tmp_path / name)
        assert calibration.crop == crop and calibration.n_val == 5 and len(calibration.reference_errors) == 3
        assert set(calibration.held_out) == {"internal test", "external"}
        assert "operating point (calibrated p >= 0.5), held out" in card.metrics
    # the sanity checks of both shipped classifiers, stored in their bundles
    sanity_argv = argv[:8] + ["--models-dir", str(tmp_path), "--patients", "2"]
    assert cli.sanity(cli.add_arguments(argparse.ArgumentParser(), "sanity").parse_args(sanity_argv)) == 0
    from core.explain.study import SanityStudy
    from core.learning.diagnosis import SANITY_FILE

    for name, methods in (("classifier_ssl", {"integrated_gradients", "saliency"}),
                          ("classifier_scratch", {"grad_cam", "lrp"})):
        study = SanityStudy.from_dict(json.loads((tmp_path / name / SANITY_FILE).read_text()))
        table = study.table().set_index("method")
        assert methods <= set(table.index[table.applicable]) and (table.loc[list(methods), "n"] == 2).all()
        assert table.loc[list(methods), "label_similarity"].notna().all()  # shuffled-label arm ran
        card = load_diagnosis_model(tmp_path / name)[2]  # the rewritten bundle still verifies
        assert SANITY_FILE in card.files and any("sanity" in k for k in card.metrics)
    bad = cli.add_arguments(argparse.ArgumentParser(), "label-efficiency").parse_args(argv[:8] + ["--fractions", "a"])
    with pytest.raises(InputError, match="comma-separated"):
        cli.label_efficiency(bad)
