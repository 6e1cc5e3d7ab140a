"""The shipped radiomics baseline: its files match its card, its models reproduce the stored
test scores, and the card's metrics follow from those scores."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation import compare_models
from core.radiomics.cohort import ID_COLUMNS, PREFIXES
from core.radiomics.shipped import bundle_path, load_baseline


@pytest.fixture(scope="module")
def baseline():
    return load_baseline()


def test_card_describes_the_bundle(baseline):
    card = baseline.card
    assert card.name == bundle_path().name == "radiomics_baseline"
    assert card.reproduce.startswith("python -m core train radiomics")
    assert baseline.best == card.model["selected model"] and baseline.best in baseline.models
    assert len(baseline.features) == 630 and all(f.startswith(PREFIXES) for f in baseline.features)
    assert list(baseline.table.columns[:4]) == list(ID_COLUMNS)
    counts = baseline.table["split"].value_counts().to_dict()
    assert counts == {"train": 180, "external_test": 120, "internal_test": 60}
    assert set(baseline.table.loc[baseline.table["split"] == "external_test", "site"]) == {"C"}
    assert not set(baseline.table.loc[baseline.table["split"] != "external_test", "site"]) & {"C"}
    assert baseline.table["patient_id"].is_unique                     # split by patient
    assert "synthetic" in card.limitations[0]


@pytest.mark.parametrize("split", ["internal_test", "external_test"])
def test_models_reproduce_the_stored_scores_and_the_card_metrics(baseline, split):
    rows = baseline.table[baseline.table["split"] == split]
    y, scores = baseline.split(split)
    assert y.tolist() == (rows["label"] == "progression").astype(int).tolist()
    for name in baseline.models:
        np.testing.assert_allclose(baseline.predict(rows, name)["probability"].to_numpy(), scores[name], atol=1e-12)
    result = compare_models(y, scores, baseline.thresholds, baseline.best)[baseline.best]
    section = [v for k, v in baseline.card.metrics.items() if k.endswith(f": {baseline.best}")
               and k.startswith(split.split("_")[0])]
    assert len(section) == 1
    card = section[0]
    assert card["AUC (DeLong)"]["value"] == pytest.approx(result["auc"]["auc"])
    assert card["AUC (DeLong)"]["ci_low"] == pytest.approx(result["auc"]["ci_low"])
    assert card["sensitivity"]["value"] == pytest.approx(result["metrics"]["sensitivity"].value)
    assert card["specificity"]["value"] == pytest.approx(result["metrics"]["specificity"].value)
    assert card["Brier score"] == pytest.approx(result["brier"])


def test_threshold_comes_from_training_out_of_fold_scores(baseline):
    from core.evaluation import choose_threshold

    y, scores = baseline.split("train")
    for name, s in scores.items():
        assert baseline.thresholds[name] == pytest.approx(choose_threshold(y, s)["threshold"])
