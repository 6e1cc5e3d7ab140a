"""Tests of core.learning.signatures: encoder signatures vs molecular status."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import InputError
from core.learning.data import _INDEX_COLUMNS
from core.learning.mae import MAEConfig, MaskedAutoencoder3D
from core.learning.training import crop_case
from core.learning.signatures import (SignatureModel, adjust_pvalues, association_table, association_tests,
                                      multivariate_signature, patient_signatures, pool_tokens,
                                      signature_attribution, signature_regions, signature_study)
from core.learning.training import tumour_crop

GRID = 12


def _tiny_mae(image_size=8, seed=0) -> MaskedAutoencoder3D:
    torch.manual_seed(seed)
    cfg = MAEConfig(in_channels=2, image_size=image_size, patch_size=4, embed_dim=12, depth=1, num_heads=2,
                    decoder_dim=12, decoder_depth=1, decoder_heads=2)
    return MaskedAutoencoder3D(cfg).eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """30 patients on a 12^3 grid, 2 channels; IDH-mutant tumours are brighter in channel 0."""
    root = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        label, idh, codel = i % 2, (i // 2) % 2, (i // 4) % 2
        pid = f"T-{i:03d}"
        image = rng.normal(0.0, 0.3, size=(2, GRID, GRID, GRID)).astype(np.float32)
        tumour = np.zeros((GRID,) * 3, np.uint8)
        c = 4 + i % 4  # tumour centre moves between patients
        tumour[c - 2:c + 2, c - 2:c + 2, c - 2:c + 2] = 1
        aggressive = np.zeros_like(tumour)
        aggressive[c - 1:c + 1, c - 1:c + 1, c - 1:c + 1] = 1
        brain = np.zeros_like(tumour)
        brain[1:-1, 1:-1, 1:-1] = 1
        image[0][tumour > 0] += 1.0 + 1.5 * idh
        np.savez_compressed(root / f"{pid}.npz", image=image.astype(np.float16), tumour=tumour,
                            aggressive=aggressive, brain=brain, affine=np.eye(4), label=np.int64(label),
                            idh=np.int64(idh), codeletion=np.int64(codel), site=np.str_("A"),
                            patient_id=np.str_(pid), reference_suv=np.float64(1.0))
        rows.append({"patient_id": pid, "site": "A", "label": label, "idh": idh, "codeletion": codel,
                     "file": f"{pid}.npz"})
    pd.DataFrame(rows, columns=_INDEX_COLUMNS).to_csv(root / "index.csv", index=False)
    (root / "spec.json").write_text(json.dumps({"spec": {"shape": [GRID] * 3, "channels": ["pet_early", "pet_late"]}}))
    return root


def _ids(cache):
    return list(pd.read_csv(cache / "index.csv", dtype={"patient_id": str})["patient_id"])


def _planted(n=60, d=8, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    sig = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{k:03d}" for k in range(d)],
                       index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_id"))
    status = pd.Series(rng.permutation([0, 1] * (n // 2)), index=sig.index)
    sig.loc[status == 1, "f002"] += shift
    return sig, status


# ----------------------------------------------------------------------- signatures


def test_signatures_shape_columns_and_determinism(cache):
    enc = _tiny_mae()
    ids = _ids(cache)[:10]
    a = patient_signatures(enc, cache, ids, batch_size=3, device="cpu")
    b = patient_signatures(enc, cache, ids[::-1], batch_size=8, device="cpu")
    assert a.shape == (10, 12) and a.index.name == "patient_id"
    assert list(a.index) == ids and a.columns[0] == "f000" and a.columns[-1] == "f011"
    np.testing.assert_allclose(a.to_numpy(), b.loc[ids].to_numpy(), rtol=1e-5, atol=1e-5)
    # the same as pooling the encoder tokens of tumour_crop by hand
    x = torch.from_numpy(tumour_crop(cache, ids[0], 8)[0])[None]
    with torch.no_grad():
        ref = enc.encode(x)[:, 1:].mean(dim=1)  # grid 2^3: every token is central
    np.testing.assert_allclose(a.iloc[0].to_numpy(), ref[0].numpy(), rtol=1e-5, atol=1e-6)
    cls = patient_signatures(enc, cache, ids[:2], pool="cls", device="cpu")
    assert not np.allclose(cls.to_numpy(), a.iloc[:2].to_numpy())


def test_signatures_restore_training_flag_and_refuse_bad_input(cache):
    enc = _tiny_mae().train()
    patient_signatures(enc, cache, _ids(cache)[:2], device="cpu")
    assert enc.training
    with pytest.raises(InputError, match="not in this cache"):
        patient_signatures(enc, cache, ["NOPE"], device="cpu")
    with pytest.raises(InputError, match="more than once"):
        patient_signatures(enc, cache, ["T-000", "T-000"], device="cpu")
    with pytest.raises(InputError, match="pool='max'"):
        patient_signatures(enc, cache, ["T-000"], pool="max", device="cpu")


def test_pool_tokens_centre_uses_central_tokens():
    tokens = torch.zeros(1, 1 + 64, 3)
    tokens[0, 0] = 7.0  # cls
    grid_ids = torch.arange(64).reshape(4, 4, 4)
    tokens[0, 1 + grid_ids[1:3, 1:3, 1:3].reshape(-1)] = 2.0
    assert pool_tokens(tokens, (4, 4, 4), "centre")[0].tolist() == [2.0, 2.0, 2.0]
    assert pool_tokens(tokens, (4, 4, 4), "cls")[0].tolist() == [7.0, 7.0, 7.0]
    assert pool_tokens(tokens, (4, 4, 4), "mean")[0, 0].item() == pytest.approx(16 / 64)


def test_crop_case_matches_tumour_crop(cache):
    image, masks = crop_case(cache, "T-005", 8)
    np.testing.assert_array_equal(image, tumour_crop(cache, "T-005", 8)[0])
    assert masks["tumour"].sum() == 64 and masks["aggressive"].sum() == 8
    assert (masks["aggressive"] <= masks["tumour"]).all()


# ----------------------------------------------------------------------- univariate tests


def _holm_reference(p):
    m, q = len(p), np.empty(len(p))
    order = np.argsort(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        q[i] = running
    return q


def _bh_reference(p):
    m, q = len(p), np.empty(len(p))
    for i in range(m):
        q[i] = min(min(1.0, m * p[k] / (np.sum(p <= p[k]))) for k in range(m) if p[k] >= p[i])
    return q


def test_adjust_pvalues_against_references():
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.011, 0.5, 0.04])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), np.minimum(1, 7 * p))
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), _holm_reference(p))
    np.testing.assert_allclose(adjust_pvalues(p, "fdr_bh"), _bh_reference(p))
    assert (adjust_pvalues(p, "fdr_bh") <= adjust_pvalues(p, "holm") + 1e-15).all()
    assert (adjust_pvalues(p, "holm") <= adjust_pvalues(p, "bonferroni") + 1e-15).all()
    with pytest.raises(InputError, match="correction='sidak'"):
        adjust_pvalues(p, "sidak")


def test_association_finds_planted_feature_only():
    sig, status = _planted()
    res = association_tests(sig, status)
    assert res.loc["f002", "q"] < 0.05 and res.loc["f002", "auc"] > 0.75
    assert res["significant"].tolist() == [f == "f002" for f in sig.columns]
    # AUC = U / (n1 n0), computed by brute force
    x1, x0 = sig.loc[status == 1, "f002"].to_numpy(), sig.loc[status == 0, "f002"].to_numpy()
    auc = ((x1[:, None] > x0[None]).sum() + 0.5 * (x1[:, None] == x0[None]).sum()) / (len(x1) * len(x0))
    assert res.loc["f002", "auc"] == pytest.approx(auc)
    # status order does not matter; bonferroni is at least as strict as BH
    shuffled = association_tests(sig, status.sample(frac=1.0, random_state=1))
    np.testing.assert_allclose(shuffled["p"], res["p"])
    bonf = association_tests(sig, status, correction="bonferroni")
    assert (bonf["q"] >= res["q"] - 1e-15).all() and (bonf["q"] > res["q"]).any()


def test_association_table_corrects_across_markers():
    sig, status = _planted()
    null = pd.Series(np.random.default_rng(5).permutation(status.to_numpy()), index=sig.index)
    table = association_table(sig, {"idh": status, "codeletion": null}, correction="bonferroni")
    assert list(table.columns[:2]) == ["marker", "feature"] and len(table) == 2 * sig.shape[1]
    np.testing.assert_allclose(table["q"], np.minimum(1, table["p"] * 2 * sig.shape[1]))
    sig_rows = table[table["significant"]]
    assert sig_rows[["marker", "feature"]].values.tolist() == [["idh", "f002"]]


def test_association_refuses_bad_status():
    sig, status = _planted(n=20)
    with pytest.raises(InputError, match="NaN"):
        association_tests(sig, status.astype(float).where(status.index != "P003"))
    with pytest.raises(InputError, match="one class only"):
        association_tests(sig, status * 0)
    few = status.copy()
    few[:] = 0
    few.iloc[:4] = 1
    with pytest.raises(InputError, match="at least 5 per class"):
        association_tests(sig, few)
    with pytest.raises(InputError, match="same patients"):
        association_tests(sig, status.iloc[1:])
    with pytest.raises(InputError, match="must be 0/1"):
        association_tests(sig, status * 2)
    with pytest.raises(InputError, match="alpha"):
        association_tests(sig, status, alpha=1.5)


# ----------------------------------------------------------------------- multivariate


def test_multivariate_noise_vs_planted():
    sig, status = _planted(n=80, d=10, shift=0.0, seed=1)
    noise = multivariate_signature(sig, status, n_splits=4, n_permutations=19, seed=0)
    assert 0.3 < noise.auc < 0.7 and noise.perm_p > 0.1
    assert noise.ci_low < 0.5 < noise.ci_high
    sig.loc[status == 1, "f002"] += 2.0
    planted = multivariate_signature(sig, status, n_splits=4, n_permutations=19, seed=0)
    assert planted.auc > 0.85 and planted.ci_low > 0.7
    assert planted.perm_p == pytest.approx(1 / 20)
    assert int(np.argmax(np.abs(planted.weights))) == 2
    # weights in raw units reproduce the final fit's decision function
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(sig.to_numpy(), status)
    np.testing.assert_allclose(planted.score(sig).to_numpy(), ref.decision_function(sig.to_numpy()), atol=1e-6)
    again = multivariate_signature(sig, status, n_splits=4, n_permutations=19, seed=0)
    assert again.auc == planted.auc and again.perm_p == planted.perm_p
    with pytest.raises(InputError, match="n_splits=9"):
        multivariate_signature(sig.iloc[:16], status.iloc[:16], n_splits=9)


# ----------------------------------------------------------------------- attribution


def test_signature_attribution_concentrates_on_planted_region():
    enc = _tiny_mae(image_size=16, seed=3)
    region = np.zeros((16, 16, 16), bool)
    region[6:10, 6:10, 6:10] = True  # inside the central tokens (voxels 4..11)
    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 0.2, size=(40, 2, 16, 16, 16)).astype(np.float32)
    status = np.array([0, 1] * 20)
    for k in np.flatnonzero(status == 1):
        images[k, 0][region] += 2.0
    with torch.no_grad():
        feats = pool_tokens(enc.encode(torch.from_numpy(images)), enc.config.grid, "centre").double().numpy()
    idx = pd.Index([f"P{i}" for i in range(40)])
    sig = pd.DataFrame(feats, index=idx, columns=[f"f{k:03d}" for k in range(12)])
    model = multivariate_signature(sig, pd.Series(status, index=idx), n_splits=4, n_permutations=1)
    assert model.auc > 0.9
    x = images[1]  # a positive case
    a = signature_attribution(enc, x, model, n_steps=24)
    assert a.values.shape == (2, 16, 16, 16) and a.target == 1
    # completeness of integrated gradients: sum = s(x) - s(0)
    s = model.score(pd.DataFrame(feats[[1]], columns=sig.columns)).iloc[0]
    with torch.no_grad():
        s0 = float(pool_tokens(enc.encode(torch.zeros(1, 2, 16, 16, 16)), enc.config.grid).double().numpy()[0]
                   @ model.weights + model.intercept)
    assert a.values.sum() == pytest.approx(s - s0, rel=0.05, abs=0.05)
    brain = np.zeros_like(region)
    brain[1:-1, 1:-1, 1:-1] = True
    masks = {"tumour": region, "aggressive": region, "brain": brain}
    regions = signature_regions(a, masks).set_index("region")
    volume_fraction = region.mean()  # 1/64
    assert regions.loc["tumour", "share_positive"] > 10 * volume_fraction
    assert regions.loc["tumour", "mean_per_voxel"] > 10 * abs(regions.loc["rest of brain", "mean_per_voxel"])
    assert not enc.training
    with pytest.raises(InputError, match="does not fit the encoder"):
        signature_attribution(enc, x[:, :8, :8, :8], model)
    bad = SignatureModel(["f0"], np.ones(3), 0.0, 0.5, 0.4, 0.6, 0.1, 0.5, 1.0, 0.5, pd.Series(dtype=float),
                         5, 5, 5, 1, 0)
    with pytest.raises(InputError, match="3 weights"):
        signature_attribution(enc, x, bad)


# ----------------------------------------------------------------------- study


def test_signature_study_to_dict_is_json(cache):
    enc = _tiny_mae()
    study = signature_study(enc, cache, subgroup="progression", n_splits=3, n_permutations=4, top_k=3,
                            device="cpu")
    assert study.n == 15 and set(study.markers) == {"idh", "codeletion"}
    d = json.loads(json.dumps(study.to_dict()))
    assert d["subgroup"] == "progression" and d["n_features"] == 12
    idh = d["markers"]["idh"]
    assert idh["n_pos"] + idh["n_neg"] == 15 and len(idh["top_features"]) == 3
    assert 0 <= idh["auc"] <= 1 and 0 < idh["perm_p"] <= 1
    assert idh["n_significant"] == int(study.table.query("marker == 'idh'")["significant"].sum())
    whole = signature_study(enc, cache, n_splits=3, n_permutations=4, device="cpu")
    assert whole.n == 30
    # brighter IDH-mutant tumours: the signature separates them
    assert whole.markers["idh"]["auc"] > 0.8
    with pytest.raises(InputError, match="subgroup='idh'"):
        signature_study(enc, cache, subgroup="idh")
    with pytest.raises(InputError, match="not columns"):
        signature_study(enc, cache, markers=("grade",))
