"""Cohort sanity study: a model that learnt a planted region passes for saliency, inapplicable methods are
reported as such on a ViT, the table/curves/JSON agree with the per-case curves, verdicts read right,
region shares add up and the sentence names the right region, and bad input raises InputError."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import InputError, MaskError
from core.explain.attributions import METHODS
from core.explain.sanity import randomisable_layers
from core.explain.study import (MethodSanity, SanityStudy, applicable_methods, attribution_regions,
                                inapplicable_reasons, label_randomisation, sanity_study, where_evidence_lies)
from core.learning.cnn import CNN3D
from core.learning.mae import MAEConfig, ViTClassifier
from tests.support.planted_cnn import train_planted_cnn

_BOX = (slice(4, 9),) * 3


def _batch(n: int, g: torch.Generator):
    """Class 1: a bright box in a known place (channel 0) on noise; class 0: noise only."""
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, 16, 16, 16, generator=g)
    x[(y == 1).nonzero()[:, 0][:, None], 0, _BOX[0], _BOX[1], _BOX[2]] += 2.0
    return x, y


def _train(seed: int = 0, steps: int = 40, shuffle_labels: bool = False) -> CNN3D:
    return train_planted_cnn(_batch, 2, seed=seed, steps=steps, shuffle_labels=shuffle_labels)


@pytest.fixture(scope="module")
def trained():
    return _train()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(99)
    out = []
    for _ in range(3):
        x = torch.randn(2, 16, 16, 16, generator=g)
        x[0, _BOX[0], _BOX[1], _BOX[2]] += 2.0
        out.append(x.numpy())
    return out


@pytest.fixture(scope="module")
def vit():
    cfg = MAEConfig(in_channels=2, image_size=8, patch_size=4, embed_dim=12, depth=1, num_heads=2, decoder_dim=12,
                    decoder_depth=1, decoder_heads=2)
    torch.manual_seed(0)
    return ViTClassifier(cfg, n_classes=2).eval()


def test_trained_model_learnt_the_planted_region(trained):
    x, y = _batch(64, torch.Generator().manual_seed(1234))
    with torch.no_grad():
        assert (trained(x).argmax(1) == y).float().mean() > 0.9


def test_saliency_of_a_trained_model_passes_and_is_deterministic(trained, images):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    calls = []
    study = sanity_study(trained, images, ["saliency"], progress=lambda d, n, m: calls.append((d, n)))
    row = study.table().iloc[0]
    assert row["method"] == "saliency" and row["n"] == 3 and row["applicable"]
    assert row["mean_similarity"] < 0.5 and bool(row["passed"])
    assert row["verdict"].startswith("passes")
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    again = sanity_study(trained, images, ["saliency"])
    assert again.results["saliency"].curves == study.results["saliency"].curves


def test_table_curves_and_json_round_trip(trained, images):
    study = sanity_study(trained, images[:2], ["saliency", "integrated_gradients", "grad_cam"], seed=3,
                         options={"integrated_gradients": {"n_steps": 4}})
    table = study.table()
    assert list(table.columns) == ["method", "applicable", "n", "mean_similarity", "min_similarity",
                                   "max_similarity", "pass_fraction", "passed", "label_similarity", "seconds",
                                   "verdict"]
    assert table["method"].tolist() == ["saliency", "integrated_gradients", "grad_cam"]
    assert study.options["integrated_gradients"] == {"n_steps": 4}
    # reference: the table's statistics from the raw per-case final similarities
    for _, row in table.iterrows():
        finals = np.array([c[-1][1] for c in study.results[row["method"]].curves])
        assert row["mean_similarity"] == pytest.approx(finals.mean())
        assert row["min_similarity"] == pytest.approx(finals.min())
        assert row["pass_fraction"] == pytest.approx((finals < 0.5).mean())
        assert row["passed"] == bool(finals.mean() < 0.5)
        assert np.isnan(row["label_similarity"])
    curves = study.curves()
    assert list(curves.columns[:4]) == ["method", "step", "layer", "similarity"]
    sal = curves[curves["method"] == "saliency"]
    assert sal["layer"].tolist() == randomisable_layers(trained)
    assert sal["step"].tolist() == list(range(1, len(randomisable_layers(trained)) + 1))
    per_case = np.array([[s for _, s in c] for c in study.results["saliency"].curves])
    np.testing.assert_allclose(sal["similarity"].to_numpy(), per_case.mean(axis=0))
    # JSON round trip
    back = SanityStudy.from_dict(json.loads(json.dumps(study.to_dict(), allow_nan=False)))
    pd.testing.assert_frame_equal(back.table(), table)
    pd.testing.assert_frame_equal(back.curves(), curves)
    assert (back.seed, back.target, back.architecture) == (3, 1, "CNN3D")
    with pytest.raises(InputError, match="schema"):
        SanityStudy.from_dict({"schema": "something else"})
    with pytest.raises(InputError, match="malformed"):
        SanityStudy.from_dict({**study.to_dict(), "results": [{"method": "saliency"}]})


def test_applicability_cnn_versus_vit(trained, vit):
    assert applicable_methods(trained) == list(METHODS) and inapplicable_reasons(trained) == {}
    reasons = inapplicable_reasons(vit)
    assert set(reasons) == {"grad_cam", "lrp"}
    assert "last_conv" in reasons["grad_cam"] and "LayerNorm" in reasons["lrp"]
    assert applicable_methods(vit) == ["integrated_gradients", "gradient_shap", "occlusion", "saliency"]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype(np.float32)
    study = sanity_study(vit, [x], ["saliency", "grad_cam", "lrp"])
    table = study.table().set_index("method")
    assert table.loc["saliency", "applicable"] and table.loc["saliency", "n"] == 1
    for m in ("grad_cam", "lrp"):
        assert not table.loc[m, "applicable"] and table.loc[m, "n"] == 0 and table.loc[m, "passed"] is None
        assert table.loc[m, "verdict"].startswith("not applicable: ")
    assert set(study.curves()["method"]) == {"saliency"}
    with pytest.raises(InputError, match="grad_cam"):
        label_randomisation(vit, vit, [x], ["grad_cam"])


def _synthetic(finals, labels=None):
    curves = [[("classifier", 0.9), ("conv", s)] for s in finals]
    return MethodSanity("saliency", curves=curves, label_similarities=labels)


def test_verdict_strings():
    study = SanityStudy({"a": _synthetic([0.1, 0.2]), "b": _synthetic([0.1, 0.7]), "c": _synthetic([0.9, 0.8]),
                         "d": MethodSanity("lrp", reason="no rule"), "e": _synthetic([0.1], labels=[0.95])},
                        threshold=0.5)
    t = study.table()
    assert t["verdict"][0] == "passes: the map changes when the model's weights are randomised"
    assert t["verdict"][1].startswith("passes on average (1 of 2 cases)") and bool(t["passed"][1])
    assert t["verdict"][2] == ("fails: the map barely depends on what the model learned - treat it as an edge "
                               "detector")
    assert t["passed"][2] is not None and not t["passed"][2] and t["pass_fraction"][2] == 0.0
    assert t["passed"][3] is None
    assert t["verdict"][3] == "not applicable: no rule"
    assert "shuffled labels" in t["verdict"][4] and t["label_similarity"][4] == pytest.approx(0.95)
    # the rule is the mean, not the majority: mean 0.55 fails although one case passes
    assert not SanityStudy({"x": _synthetic([0.3, 0.8])}).table()["passed"][0]


def test_label_randomisation_arm(trained, images):
    same = label_randomisation(trained, trained, images[:2], ["saliency"])
    assert same["mean_similarity"][0] == pytest.approx(1.0) and same["n"][0] == 2
    shuffled = _train(steps=5, shuffle_labels=True)
    df = label_randomisation(trained, shuffled, images[:1], ["saliency"])
    assert -1.0 <= df["mean_similarity"][0] < 0.99
    study = sanity_study(trained, images[:1], ["saliency"], model_random_labels=trained)
    assert study.table()["label_similarity"][0] == pytest.approx(1.0)
    assert "shuffled labels" in study.table()["verdict"][0]


def _masks():
    tumour = np.zeros((8, 8, 8), bool)
    tumour[2:4, 2:4, 2:4] = True  # 8 voxels
    aggressive = np.zeros_like(tumour)
    aggressive[2, 2:4, 2:4] = True  # 4 voxels inside the tumour
    brain = np.zeros_like(tumour)
    brain[:6] = True  # 384 voxels, containing the tumour
    return {"tumour": tumour, "aggressive": aggressive, "brain": brain}


def test_regions_add_up_and_the_sentence_names_the_region():
    masks = _masks()
    a = np.zeros((2, 8, 8, 8))
    a[0][masks["tumour"]] = 5.0
    a[1][masks["tumour"]] = -9.0  # channel sum -4: counted by its magnitude
    a[0][masks["brain"] & ~masks["tumour"]] = 0.05
    a[0, 7] = 0.05  # outside the brain
    df = attribution_regions(a, masks).set_index("region")
    assert list(df.index) == ["tumour", "aggressive", "rest of brain", "outside the brain"]
    total = 8 * 4.0 + 376 * 0.05 + 64 * 0.05
    assert df.loc["tumour", "share"] == pytest.approx(32 / total)
    assert df.loc["aggressive", "share"] == pytest.approx(16 / total)
    assert df.loc[["tumour", "rest of brain", "outside the brain"], "share"].sum() == pytest.approx(1.0)
    assert df.loc["tumour", "relative_density"] == pytest.approx(4.0 / 0.05)
    assert df.loc["rest of brain", "relative_density"] == pytest.approx(1.0)
    sentence = where_evidence_lies(attribution_regions(a, masks))
    assert sentence == ("Most of the evidence (59 %) lies in the tumour, 80x denser than in the rest of the brain, "
                        "with 30 % in its aggressive part.")
    a[0][masks["brain"] & ~masks["tumour"]] = 0.1  # now the rest of the brain holds more, the tumour 44 %
    assert where_evidence_lies(attribution_regions(a, masks)).startswith(
        "Most of the evidence (52 %) lies in the rest of the brain; the tumour holds 44 %, 40x denser")
    b = np.zeros((8, 8, 8))
    b[masks["brain"]] = 1.0
    b[masks["tumour"]] = 3.0
    s = where_evidence_lies(attribution_regions(b, masks))
    assert s.startswith("Most of the evidence (94 %) lies in the rest of the brain; the tumour holds 6 %, "
                        "3.0x denser")
    assert where_evidence_lies(attribution_regions(np.zeros((8, 8, 8)), masks)).startswith("The map holds no")
    no_aggr = {k: v for k, v in masks.items() if k != "aggressive"}
    assert "aggressive" not in attribution_regions(b, no_aggr)["region"].tolist()


def test_region_input_errors():
    masks = _masks()
    with pytest.raises(MaskError, match="brain"):
        attribution_regions(np.ones((8, 8, 8)), {"tumour": masks["tumour"]})
    with pytest.raises(MaskError, match=r"\(4, 4, 4\)"):
        attribution_regions(np.ones((8, 8, 8)), {**masks, "brain": np.ones((4, 4, 4), bool)})
    with pytest.raises(MaskError, match="empty"):
        attribution_regions(np.ones((8, 8, 8)), {**masks, "tumour": np.zeros((8, 8, 8), bool)})
    with pytest.raises(InputError, match="attribution_regions"):
        where_evidence_lies(pd.DataFrame({"a": [1]}))


def test_bad_input_raises_input_error(trained, images):
    with pytest.raises(InputError, match="no images"):
        sanity_study(trained, [])
    with pytest.raises(InputError, match="'nope'"):
        sanity_study(trained, images, ["saliency", "nope"])
    with pytest.raises(InputError, match=r"image 1 has shape \(2, 8, 8, 8\)"):
        sanity_study(trained, [images[0], images[0][:, :8, :8, :8]], ["saliency"])
    with pytest.raises(InputError, match=r"\(16, 16, 16\)"):
        sanity_study(trained, [images[0][0]], ["saliency"])
    bad = images[0].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        sanity_study(trained, [bad], ["saliency"])
    with pytest.raises(InputError, match=r"cannot read images of shape \(3, 16, 16, 16\)"):
        sanity_study(trained, [np.zeros((3, 16, 16, 16), np.float32)], ["saliency"])
    with pytest.raises(InputError, match="target=5"):
        sanity_study(trained, images, ["saliency"], target=5)
    with pytest.raises(InputError, match="threshold=2"):
        sanity_study(trained, images, ["saliency"], threshold=2)
    with pytest.raises(InputError, match="'ig'"):
        sanity_study(trained, images, ["saliency"], options={"ig": {}})
    with pytest.raises(InputError, match="n_stepz"):
        sanity_study(trained, images, ["integrated_gradients"], options={"integrated_gradients": {"n_stepz": 2}})
