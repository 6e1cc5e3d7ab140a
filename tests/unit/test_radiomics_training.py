"""Tests of training, shipping and loading the radiomics baseline (issue 4).

The feature tables are synthetic numbers (no phantom patients, no radiomics extraction):
columns ``patient_id, site, label, idh`` then ``static_stat_mean_k`` features, three of
them shifted by the label, a few NaN, sites A, B, C in turn.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import core.radiomics.training as training
from core import __main__ as cli
from core.errors import InputError
from core.evaluation import choose_threshold
from core.radiomics.baseline import L1Selection, make_pipeline
from core.radiomics.shipped import load_baseline
from core.radiomics.training import (BUNDLE_NAME, SPLITS, TrainedBaseline, feature_columns, labels_of,
                                     model_card_for, save_baseline, split_cohort, train_baseline)

MODELS2 = ("logistic", "gradient_boosting")
FAST = {"outer": 3, "inner": 2}
SIGNAL = {0: 1.0, 3: -0.8, 7: 0.5}  # feature index -> shift per unit of label (times `shift`)


def _table(n=120, p=30, seed=0, shift=2.0, pos_rate=0.5, sites=("A", "B", "C"), nan_rate=0.02):
    """Synthetic feature table; the label shifts features 0, 3 and 7 (see SIGNAL)."""
    rng = np.random.default_rng(seed)
    n_pos = int(round(pos_rate * n))
    y = rng.permutation(np.r_[np.ones(n_pos), np.zeros(n - n_pos)]).astype(int)
    X = rng.normal(size=(n, p))
    for j, w in SIGNAL.items():
        X[:, j] += w * shift * y
    X[rng.random((n, p)) < nan_rate] = np.nan
    ids = pd.DataFrame({"patient_id": [f"SYN{seed:02d}-{i:04d}" for i in range(n)],
                        "site": [sites[i % len(sites)] for i in range(n)],
                        "label": np.where(y == 1, "progression", "radionecrosis"),
                        "idh": rng.choice(["mutant", "wildtype"], size=n)})
    return pd.concat([ids, pd.DataFrame(X, columns=[f"static_stat_mean_{k}" for k in range(p)])], axis=1)


def _youden_reference(y, s):
    """Brute-force Youden threshold: max over observed scores of sens + spec - 1, ties to the highest."""
    y, s = np.asarray(y), np.asarray(s)
    best_t, best_j = np.inf, 0.0
    for t in np.sort(np.unique(s))[::-1]:
        j = np.mean(s[y == 1] >= t) - np.mean(s[y == 0] >= t)
        if j > best_j + 1e-12:
            best_t, best_j = t, j
    return best_t


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def probe():
    """Other patients, never used in training: predictions on them compare two fitted models."""
    return _table(n=30, seed=99)


@pytest.fixture(scope="module")
def trained(table):
    return train_baseline(table, models=MODELS2, seed=0, **FAST)


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / BUNDLE_NAME
    card = save_baseline(trained, out, cohort={"n": 120, "seed": 0, "sites": ["A", "B", "C"], "generator": "test"},
                         reproduce="python -m core train radiomics --n 120")
    return out, card, load_baseline(out)


# ----------------------------------------------------------------------------- labels, features, split

def test_labels_and_feature_columns(table):
    y = labels_of(table)
    assert y.dtype == np.int8 and y.tolist() == (table["label"] == "progression").astype(int).tolist()
    cols = feature_columns(table.assign(split="train"))
    assert cols == [f"static_stat_mean_{k}" for k in range(30)]
    with pytest.raises(InputError, match="PD"):
        labels_of(table.assign(label=["PD"] + table["label"].tolist()[1:]))
    with pytest.raises(InputError, match="label"):
        labels_of(table.drop(columns="label"))


def test_split_every_patient_once_and_external_site_whole(table):
    split = split_cohort(table, external_sites=("C",), test_fraction=0.25, seed=0)
    assert split.index.equals(table.index) and len(split) == len(table)
    assert set(split) == set(SPLITS)
    site_c = (table["site"] == "C").to_numpy()
    assert (split[site_c] == "external_test").all() and not (split[~site_c] == "external_test").any()
    # two sites held out, or none
    two = split_cohort(table, external_sites=("B", "C"), seed=0)
    assert (two[table["site"].isin(["B", "C"])] == "external_test").all()
    assert (two[table["site"] == "A"] != "external_test").all()
    none = split_cohort(table, external_sites=(), seed=0)
    assert "external_test" not in set(none)


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.4])
def test_split_internal_fraction_and_stratified(fraction):
    t = _table(n=150, pos_rate=0.36, seed=3)
    split = split_cohort(t, external_sites=("C",), test_fraction=fraction, seed=1)
    dev = (t["site"] != "C").to_numpy()
    test = (split == "internal_test").to_numpy()
    n_dev, n_test = dev.sum(), test.sum()
    assert abs(n_test - fraction * n_dev) <= 1
    y = labels_of(t)
    assert 0 < y[test].sum() < n_test  # both classes
    assert abs(y[test].mean() - y[dev].mean()) <= 1.0 / n_test + 1e-12
    # stratified by site too: each development site contributes its share
    for site in ("A", "B"):
        at = (t["site"] == site).to_numpy()
        assert abs((test & at).sum() - fraction * at.sum()) <= 2


def test_split_deterministic_per_seed_and_index_independent(table):
    a = split_cohort(table, seed=4)
    pd.testing.assert_series_equal(a, split_cohort(table, seed=4))
    b = split_cohort(table, seed=5)
    assert set(table["patient_id"][a == "internal_test"]) != set(table["patient_id"][b == "internal_test"])
    assert (a[b == "external_test"] == "external_test").all()  # the external set does not depend on the seed
    shuffled_index = table.set_axis(np.arange(len(table))[::-1] * 7 + 1000)
    c = split_cohort(shuffled_index, seed=4)
    assert c.index.equals(shuffled_index.index) and c.tolist() == a.tolist()
    assert split_cohort(table.drop(columns=feature_columns(table)), seed=4).tolist() == a.tolist()


def test_split_bad_input_raises(table):
    dup = table.copy()
    dup.loc[5, "patient_id"] = dup.loc[2, "patient_id"]
    with pytest.raises(InputError, match=dup.loc[2, "patient_id"]):
        split_cohort(dup)
    for col in ("patient_id", "site", "label"):
        with pytest.raises(InputError, match=col):
            split_cohort(table.drop(columns=col))
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="test_fraction"):
            split_cohort(table, test_fraction=bad)
    with pytest.raises(InputError, match="unknown"):
        split_cohort(table.assign(label=table["label"].replace({"radionecrosis": "necrosis"})))
    # too few development patients: 3 progression outside site C
    few = table[(table["site"] == "C") | (table["label"] == "radionecrosis")]
    few = pd.concat([few, table[(table["site"] != "C") & (table["label"] == "progression")].head(3)])
    with pytest.raises(InputError, match="development patients"):
        split_cohort(few)
    with pytest.raises(InputError):
        split_cohort(table[table["site"] == "C"])  # nothing left to develop on


def _tiny(n_per_stratum, sites):
    rows = [(s, lab) for s in sites for lab in ("progression", "radionecrosis") for _ in range(n_per_stratum)]
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(len(rows))], "site": [r[0] for r in rows],
                         "label": [r[1] for r in rows]})


@pytest.mark.parametrize("tab, kw", [
    # 4 patients per class at development sites A and B: passes split_cohort's own minimum
    # (>= 4 per class) but 2 test patients cannot cover the 4 label|site strata
    (_tiny(2, "ABC"), {"external_sites": ("C",)}),
    # a valid test_fraction that leaves fewer test patients than classes
    (_tiny(10, "AB"), {"test_fraction": 0.01}),
    (_tiny(10, "AB"), {"test_fraction": 0.99}),
], ids=["12-patients-site-C-external", "fraction-0.01", "fraction-0.99"])
def test_split_too_small_to_stratify_gives_input_error_or_usable_split(tab, kw):
    """Small cohorts: either a usable split or an InputError (the CLI turns only those into exit
    code 2), never sklearn's bare ValueError."""
    try:
        split = split_cohort(tab, **kw)
    except InputError:
        return
    y = labels_of(tab)
    for name in ("train", "internal_test"):
        assert sorted(set(y[(split == name).to_numpy()])) == [0, 1], name


def test_split_docstring_example():
    t = pd.DataFrame({"patient_id": [f"P{i}" for i in range(24)], "site": ["A"] * 16 + ["C"] * 8,
                      "label": ["progression", "radionecrosis"] * 12})
    assert split_cohort(t).value_counts().to_dict() == {"train": 12, "external_test": 8, "internal_test": 4}


# ----------------------------------------------------------------------------- training

def test_train_baseline_outcome(trained, table):
    tb = trained
    assert isinstance(tb, TrainedBaseline)
    assert "split" not in table.columns  # the caller's table is not modified
    pd.testing.assert_series_equal(tb.table["split"], split_cohort(table, seed=0), check_names=False)
    assert tb.features == feature_columns(table)
    assert set(tb.models) == set(MODELS2) == set(tb.thresholds) and tb.best in MODELS2
    assert tb.best == tb.development["best"]
    assert tb.settings["models"] == list(MODELS2) and tb.settings["outer"] == 3 and tb.settings["inner"] == 2
    n_train = int((tb.table["split"] == "train").sum())
    for m in MODELS2:
        assert tb.scores["train"][m].shape == (n_train,)
        np.testing.assert_array_equal(tb.scores["train"][m], tb.development["models"][m]["oof_score"])
    assert set(tb.tests) == {"internal_test", "external_test"}
    for split, res in tb.tests.items():
        rows = tb.table[tb.table["split"] == split]
        y = tb.labels(split)
        assert y.tolist() == labels_of(rows).tolist()
        for m in MODELS2:
            s = tb.scores[split][m]
            np.testing.assert_allclose(s, tb.models[m].predict_proba(rows[tb.features])[:, 1], rtol=0, atol=1e-12)
            r = res[m]
            assert {"auc", "metrics", "delong_vs_best", "brier", "ece"} <= set(r)
            assert r["auc"]["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
            assert r["brier"] == pytest.approx(np.mean((s - y) ** 2), abs=1e-12)
            assert r["threshold"] == tb.thresholds[m]
            pred = (s >= tb.thresholds[m]).astype(int)
            assert r["metrics"]["tp"] == int(((pred == 1) & (y == 1)).sum())
            assert (r["delong_vs_best"] is None) == (m == tb.best)
    # strong seeded signal: the selected model separates held-out patients
    assert tb.tests["internal_test"][tb.best]["auc"]["auc"] > 0.8
    assert tb.tests["external_test"][tb.best]["auc"]["auc"] > 0.8


@pytest.mark.parametrize("folds", [{"outer": 40, "inner": 2}, {"outer": 3, "inner": 25}])
def test_train_baseline_more_folds_than_training_patients_raises_input_error(table, folds):
    """About 30 training patients per class cannot fill 40 outer (or 25 inner) stratified folds."""
    with pytest.raises(InputError):
        train_baseline(table, models=("logistic",), seed=0, **folds)


def test_thresholds_are_youden_on_nested_oof_training_scores(trained):
    y = trained.labels("train")
    for m in MODELS2:
        oof = trained.scores["train"][m]
        assert trained.thresholds[m] == choose_threshold(y, oof)["threshold"]
        assert trained.thresholds[m] == pytest.approx(_youden_reference(y, oof), abs=0)


def test_no_information_from_test_rows_reaches_models_or_thresholds(trained, table, probe, monkeypatch):
    """Flip the labels and negate the features of every test patient: training must not notice.

    The split is stratified by label, so flipping internal-test labels would move patients
    between splits; the split of the first run is therefore kept (checked to be the one
    split_cohort gave) and everything downstream of it must be identical.
    """
    split = trained.table["split"].copy()
    test_rows = (split != "train").to_numpy()
    feats = feature_columns(table)
    changed = table.copy()
    changed.loc[test_rows, feats] = -10.0 * changed.loc[test_rows, feats].to_numpy()[::-1]
    changed.loc[test_rows, "label"] = changed.loc[test_rows, "label"].map(
        {"progression": "radionecrosis", "radionecrosis": "progression"})
    calls = []

    def fixed_split(t, **kw):
        assert t["patient_id"].tolist() == table["patient_id"].tolist()
        calls.append(kw)
        return split.set_axis(t.index)

    monkeypatch.setattr(training, "split_cohort", fixed_split)
    tb2 = train_baseline(changed, models=MODELS2, seed=0, **FAST)
    assert len(calls) == 1
    assert tb2.table["split"].tolist() == split.tolist()
    assert tb2.best == trained.best
    assert tb2.thresholds == trained.thresholds
    assert tb2.settings["final_params"] == trained.settings["final_params"]
    for m in MODELS2:
        np.testing.assert_array_equal(tb2.scores["train"][m], trained.scores["train"][m])
        np.testing.assert_array_equal(tb2.models[m].predict_proba(probe[feats]),
                                      trained.models[m].predict_proba(probe[feats]))
    # ... while the test results did see the change (so this test can fail)
    assert tb2.tests["internal_test"][trained.best]["auc"]["auc"] < 0.5
    assert not np.array_equal(tb2.scores["external_test"][trained.best], trained.scores["external_test"][trained.best])


# ----------------------------------------------------------------------------- bundle

def test_bundle_round_trip_predictions(bundle, trained, probe):
    out, card, sb = bundle
    assert sb.best == trained.best and sb.features == trained.features
    assert sb.thresholds == pytest.approx(trained.thresholds, abs=0)
    assert card.files == sb.card.files and set(card.files) >= {"models.joblib", "evaluation.json", "features.csv.gz"}
    for m in MODELS2:
        pred = sb.predict(probe, model=m)
        p_ref = trained.models[m].predict_proba(probe[trained.features])[:, 1]
        assert pred.index.equals(probe.index) and list(pred.columns) == ["probability", "threshold", "call"]
        np.testing.assert_array_equal(pred["probability"].to_numpy(), p_ref)
        t = trained.thresholds[m]
        assert (pred["threshold"] == t).all()
        assert pred["call"].tolist() == ["progression" if p >= t else "radionecrosis" for p in p_ref]
    # the call follows the threshold exactly at the boundary (>= is progression)
    default = sb.predict(probe)
    np.testing.assert_array_equal(default["probability"], sb.predict(probe, model=trained.best)["probability"])
    sb_at = type(sb)(**{**sb.__dict__, "thresholds": {**sb.thresholds,
                                                      trained.best: float(default["probability"].iloc[0])}})
    assert sb_at.predict(probe.iloc[:1])["call"].iloc[0] == "progression"


def test_bundle_split_scores_and_table(bundle, trained):
    _, _, sb = bundle
    assert "split" in sb.table.columns
    assert sb.table["split"].tolist() == trained.table["split"].tolist()
    assert sb.table["patient_id"].tolist() == trained.table["patient_id"].tolist()
    for split in ("train", "internal_test", "external_test"):
        y, scores = sb.split(split)
        assert y.tolist() == trained.labels(split).tolist()
        assert set(scores) == set(MODELS2)
        for m in MODELS2:
            np.testing.assert_array_equal(scores[m], trained.scores[split][m])
        ids = sb.evaluation["splits"][split]["patient_id"]
        assert ids == trained.table.loc[trained.table["split"] == split, "patient_id"].tolist()
    with pytest.raises(InputError, match="validation"):
        sb.split("validation")


def test_model_card_mentions_model_threshold_and_synthetic_limitation(bundle, trained):
    out, card, sb = bundle
    md = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    t = trained.thresholds[trained.best]
    assert card.model["selected model"] == trained.best == sb.card.model["selected model"]
    assert f"| selected model | {trained.best} |" in md
    assert card.model["operating threshold (Youden on nested out-of-fold training scores)"] == t
    assert f"{t:.3g}" in md
    assert "synthetic" in md.lower() and any("synthetic" in lim.lower() for lim in card.limitations)
    assert card.reproduce == "python -m core train radiomics --n 120" and card.name == BUNDLE_NAME
    # test-set AUCs in the card are the ones computed in training
    key = next(k for k in card.metrics if k.startswith("internal test") and k.endswith(f": {trained.best}"))
    assert card.metrics[key]["AUC (DeLong)"]["value"] == pytest.approx(
        trained.tests["internal_test"][trained.best]["auc"]["auc"], abs=1e-12)
    # model_card_for alone gives the same content (no files yet)
    again = model_card_for(trained, cohort={"n": 120}, reproduce="x")
    assert again.model["selected model"] == trained.best and again.files == {}


def test_predict_missing_feature_raises(bundle, probe):
    _, _, sb = bundle
    with pytest.raises(InputError, match="static_stat_mean_5"):
        sb.predict(probe.drop(columns="static_stat_mean_5"))
    with pytest.raises(InputError, match="infinite"):
        sb.predict(probe.assign(static_stat_mean_0=np.inf))


def test_explain_is_additive_for_logistic(bundle, probe):
    _, _, sb = bundle
    rows = probe.iloc[:8]
    e = sb.explain(rows, model="logistic", n_background=40)
    assert e.output == "log-odds" and e.values.shape[0] == len(rows)
    np.testing.assert_allclose(e.values.sum(1) + e.base_value, e.model_output, rtol=0, atol=1e-6)
    p = sb.predict(rows, model="logistic")["probability"].to_numpy()
    np.testing.assert_allclose(e.model_output, np.log(p / (1 - p)), rtol=0, atol=1e-6)
    Z = sb.shap_inputs(rows, model="logistic")
    assert Z.shape == e.values.shape
    assert e.feature_names.tolist() == sb.models["logistic"][:-1].get_feature_names_out().tolist()
    # linear SHAP: phi_j = w_j (z_j - mean background z_j), the background being training cases
    w = sb.models["logistic"][-1].coef_.ravel()
    np.testing.assert_allclose(np.diff(e.values, axis=0), np.diff(Z, axis=0) * w, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- command line

def test_cli_trains_from_feature_csv(tmp_path, monkeypatch, capsys):
    t = _table(n=90, seed=5)
    csv = tmp_path / "features.csv"
    t.to_csv(csv, index=False)
    seen = {}
    real = training.train_baseline

    def fast(table, **kw):  # the CLI's defaults (3 models, 5 x 3 folds) take minutes
        seen.update(kw)
        return real(table, **{**kw, "models": ("logistic",), **FAST})

    def no_extraction(*a, **k):
        raise AssertionError("the cached feature table must be reused")

    monkeypatch.setattr(training, "train_baseline", fast)
    monkeypatch.setattr("core.radiomics.cohort.cohort_feature_table", no_extraction)
    out = tmp_path / "bundle"
    rc = cli.main(["train", "radiomics", "--features", str(csv), "--n", "90", "--sites", "A,B,C",
                   "--split-seed", "3", "--out", str(out)])
    assert rc == 0
    assert seen["external_sites"] == ("C",) and seen["seed"] == 3 and seen["test_fraction"] == 0.25
    sb = load_baseline(out)
    assert sb.card.reproduce.startswith("python -m core train radiomics")
    assert "--n 90" in sb.card.reproduce and "--split-seed 3" in sb.card.reproduce
    assert sb.best == "logistic" and len(sb.table) == 90
    assert sb.table["patient_id"].tolist() == t["patient_id"].tolist()
    assert "selected logistic" in capsys.readouterr().out


def test_cli_rejects_table_of_other_size(tmp_path, capsys):
    csv = tmp_path / "features.csv"
    _table(n=30, seed=6).to_csv(csv, index=False)
    out = tmp_path / "bundle"
    rc = cli.main(["train", "radiomics", "--features", str(csv), "--n", "60", "--sites", "A,B,C", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(csv) in err and "n=60" in err
    assert not out.exists()


def test_cli_too_small_cohort_exits_2(tmp_path, capsys):
    """12 patients, site C external: split_cohort's sklearn ValueError must not escape as a traceback."""
    t = _table(n=12, seed=8)
    t["label"] = ["progression" if (i // 3) % 2 == 0 else "radionecrosis" for i in range(12)]
    csv = tmp_path / "features.csv"
    t.to_csv(csv, index=False)
    rc = cli.main(["train", "radiomics", "--features", str(csv), "--n", "12", "--out", str(tmp_path / "b")])
    assert rc == 2 and "error:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- L1Selection

def test_l1_selection_keeps_most_label_correlated_feature_when_penalty_removes_all():
    rng = np.random.default_rng(7)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    X = pd.DataFrame({"noise": rng.normal(size=60), "weak": 0.3 * y + rng.normal(size=60),
                      "strong": -2.0 * y + rng.normal(size=60), "medium": 1.0 * y + rng.normal(size=60)})
    r = np.abs([np.corrcoef(X[c], y)[0, 1] for c in X.columns])
    assert X.columns[np.argmax(r)] == "strong"  # negative correlation: |r| decides
    sel = L1Selection(LogisticRegression(l1_ratio=1.0, C=1e-6, solver="liblinear"), threshold=1e-10).fit(X, y)
    assert not np.any(sel.estimator_.coef_)  # the penalty removed every feature ...
    assert sel.get_support().tolist() == [False, False, True, False]  # ... the fallback keeps the best one
    assert sel.get_feature_names_out().tolist() == ["strong"]
    np.testing.assert_array_equal(sel.transform(X), X[["strong"]].to_numpy())
    # a mild penalty behaves as SelectFromModel: non-zero coefficients are kept
    mild = L1Selection(LogisticRegression(l1_ratio=1.0, C=1.0, solver="liblinear"), threshold=1e-10).fit(X, y)
    assert mild.get_support().tolist() == (np.abs(mild.estimator_.coef_.ravel()) > 1e-10).tolist()
    assert mild.get_support()[2]


def test_pipeline_with_tiny_selection_penalty_still_fits(table):
    y = labels_of(table)
    pipe = make_pipeline("logistic").set_params(select__estimator__C=1e-6)
    pipe.fit(table[feature_columns(table)], y)
    kept = pipe[:-1].get_feature_names_out().tolist()
    assert kept == ["static_stat_mean_0"]  # the strongest seeded signal (SIGNAL)
    assert pipe.predict_proba(table[feature_columns(table)]).shape == (len(table), 2)
