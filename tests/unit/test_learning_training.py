"""Training of the deep models on a tiny cohort cache: crops, MAE pretraining, classifiers, bundles, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from core.errors import InputError
from core.learning import cli
from core.learning.data import InputSpec, build_cohort_cache, read_index
from core.learning.mae import MAEConfig, MaskedAutoencoder3D
from core.learning.bundles import load_classifier, load_encoder, save_classifier, save_encoder
from core.learning.training import (CropDataset, label_subset, mae_validation_loss, predict_proba, pretrain_mae,
                                    train_classifier, tumour_crop)

TINY = MAEConfig(image_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2, decoder_dim=24,
                 decoder_depth=1, decoder_heads=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp("train_cache")
    build_cohort_cache(directory, n=8, seed=5, spec=InputSpec(shape=(24, 24, 24), voxel_mm=8.0))
    index = read_index(directory)
    ids = index["patient_id"].tolist()
    y = index["label"].to_numpy()
    pos, neg = [p for p, l in zip(ids, y) if l == 1], [p for p, l in zip(ids, y) if l == 0]
    train, val = pos[:2] + neg[:2], pos[2:] + neg[2:]
    return directory, index, train, val


@pytest.fixture(scope="module")
def pretrained(cache):
    directory, _, train, val = cache
    return pretrain_mae(directory, train, val, TINY, epochs=2, batch_size=2, seed=0, device="cpu")


def test_tumour_crop_shape_and_centre(cache):
    directory, index, _, _ = cache
    for pid in index["patient_id"]:
        image, label = tumour_crop(directory, pid, 12)
        assert image.shape == (4, 12, 12, 12) and image.dtype == np.float32
        with np.load(directory / f"{pid}.npz") as z:
            com = np.array(ndimage.center_of_mass(z["tumour"] > 0))
            full = z["image"].astype(np.float32)
            assert label == int(z["label"])
        start = np.clip(np.round(com).astype(int) - 6, 0, 24 - 12)
        clamped = (start != np.round(com).astype(int) - 6)
        centre = start + 5.5
        assert np.all((np.abs(centre - com) <= 1.0) | clamped)
        sl = tuple(slice(int(s), int(s) + 12) for s in start)
        np.testing.assert_array_equal(image, full[(slice(None), *sl)])
    with pytest.raises(InputError, match="larger than the cached grid"):
        tumour_crop(directory, index["patient_id"][0], 30)


def test_crop_dataset_deterministic(cache):
    directory, _, train, _ = cache
    from core.learning.data import Augment

    a = CropDataset(directory, train, 12, augment=Augment(), jitter_vox=2, seed=3)
    b = CropDataset(directory, train, 12, augment=Augment(), jitter_vox=2, seed=3)
    assert torch.equal(a[1]["image"], b[1]["image"]) and a[1]["image"].shape == (4, 12, 12, 12)
    a.set_epoch(1)
    assert not torch.equal(a[1]["image"], b[1]["image"])
    plain = CropDataset(directory, train, 12)
    np.testing.assert_array_equal(plain[0]["image"].numpy(), tumour_crop(directory, train[0], 12)[0])


def test_pretrain_mae_history_and_best_weights(cache, pretrained):
    directory, _, _, val = cache
    res = pretrained
    assert len(res.history) == 2 and [h["epoch"] for h in res.history] == [1, 2]
    for h in res.history:
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) and h["seconds"] > 0
    best = min(res.history, key=lambda h: h["val_loss"])
    assert res.best_epoch == best["epoch"] and res.volumes_per_second > 0
    again = mae_validation_loss(res.model, directory, val, seed=0, p_tumour=0.5, batch_size=2)
    assert again == pytest.approx(best["val_loss"], rel=1e-5)
    with pytest.raises(InputError, match="in both"):
        pretrain_mae(directory, val, val, TINY, epochs=1, device="cpu")


@pytest.fixture(scope="module")
def classifiers(cache, pretrained):
    directory, _, train, val = cache
    cnn = train_classifier(directory, train, val, arch="cnn", crop=16, epochs=2, batch_size=4, device="cpu")
    vit = train_classifier(directory, train, val, arch="vit", encoder=pretrained.model, mode="linear", crop=16,
                           epochs=2, batch_size=4, device="cpu")
    return cnn, vit


def test_train_classifier_cnn_and_linear_probe(cache, pretrained, classifiers):
    directory, _, train, val = cache
    cnn, vit = classifiers
    for res in (cnn, vit):
        assert len(res.history) == 2 and 1 <= res.best_epoch <= 2
        for h in res.history:
            assert np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) and 0 <= h["val_auc"] <= 1
    assert vit.settings["lr"] == 1e-3 and cnn.settings["arch"] == "cnn"
    enc = pretrained.model.encoder.state_dict()
    for k, v in vit.model.encoder.state_dict().items():
        assert torch.equal(v, enc[k]), k
    with pytest.raises(InputError, match="does not match the encoder"):
        train_classifier(directory, train, val, arch="vit", encoder=pretrained.model, crop=12, epochs=1)
    with pytest.raises(InputError, match="needs a pretrained encoder"):
        train_classifier(directory, train, val, arch="vit", crop=16, epochs=1)
    p1 = predict_proba(cnn.model, directory, val, 16, device="cpu")
    p2 = predict_proba(cnn.model, directory, val, 16, device="cpu")
    assert p1.shape == (len(val),) and np.all((p1 >= 0) & (p1 <= 1))
    np.testing.assert_array_equal(p1, p2)


def test_label_subset_nested_and_stratified():
    t = pd.DataFrame({"patient_id": [f"P{i:02d}" for i in range(40)], "label": [0] * 30 + [1] * 10})
    ids = t["patient_id"].tolist()
    subsets = [label_subset(t, ids, f, seed=4) for f in (0.1, 0.25, 0.5, 1.0)]
    for small, big in zip(subsets, subsets[1:]):
        assert set(small) <= set(big)
    assert subsets[-1] == ids
    y = dict(zip(t["patient_id"], t["label"]))
    counts = [(sum(y[p] == 0 for p in s), sum(y[p] == 1 for p in s)) for s in subsets]
    assert counts == [(3, 2), (8, 2), (15, 5), (30, 10)]
    assert label_subset(t, ids, 0.25, seed=4) == subsets[1]
    assert label_subset(t, ids, 0.25, seed=5) != subsets[1]
    with pytest.raises(InputError, match="fraction"):
        label_subset(t, ids, 0.0)


def test_bundles_round_trip(cache, pretrained, classifiers, tmp_path):
    directory, _, _, val = cache
    save_encoder(pretrained, tmp_path / "enc", {"reproduce": "test"})
    enc = load_encoder(tmp_path / "enc")
    x = torch.randn(2, 4, 16, 16, 16)
    torch.testing.assert_close(enc.encode(x), pretrained.model.encode(x), rtol=0, atol=0)
    for i, res in enumerate(classifiers):
        card = save_classifier(res, tmp_path / f"clf{i}", {"title": "tiny"})
        assert card.title == "tiny" and card.limitations
        loaded = load_classifier(tmp_path / f"clf{i}")
        assert type(loaded) is type(res.model)
        np.testing.assert_array_equal(predict_proba(loaded, directory, val, 16, device="cpu"),
                                      predict_proba(res.model, directory, val, 16, device="cpu"))


def _args(command: str, argv: list[str]) -> argparse.Namespace:
    return cli.add_arguments(argparse.ArgumentParser(), command).parse_args(argv)


def test_cli_end_to_end(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("THERABOARD_DEVICE", "cpu")
    directory = str(cache[0])
    common = ["--cache", directory, "--epochs", "1", "--batch-size", "2", "--val-fraction", "0.34",
              "--test-fraction", "0.34"]
    assert cli.train_ssl(_args("ssl", common + ["--image-size", "16", "--patch-size", "4",
                                                "--out", str(tmp_path / "ssl")])) == 0
    enc = load_encoder(tmp_path / "ssl")
    assert isinstance(enc, MaskedAutoencoder3D) and enc.config.image_size == (16, 16, 16)
    assert cli.train_classifier(_args("classifier", common + ["--init", "ssl", "--mode", "linear", "--encoder",
                                                              str(tmp_path / "ssl"),
                                                              "--out", str(tmp_path / "vit")])) == 0
    assert cli.train_classifier(_args("classifier", common + ["--init", "scratch", "--crop", "16",
                                                              "--out", str(tmp_path / "cnn")])) == 0
    from core.learning.model_card import read_card

    for name in ("vit", "cnn"):
        model = load_classifier(tmp_path / name)
        p = predict_proba(model, directory, cache[3], 16, device="cpu")
        assert np.all((p >= 0) & (p <= 1))
        assert "python -m core train classifier" in read_card(tmp_path / name).reproduce
        assert "--n 8 " in read_card(tmp_path / name).reproduce  # the cache used, not the default 120


def test_split_follows_the_radiomics_baseline_when_it_covers_the_cohort():
    import pandas as pd

    from core.radiomics.shipped import bundle_path

    t = pd.read_csv(bundle_path() / "features.csv.gz", usecols=["patient_id", "site", "label", "split"])
    index = t[["patient_id", "site", "label"]]
    ids, _ = cli._split(_args("classifier", ["--val-fraction", "0.15"]), index)
    assert set(ids["test"]) == set(t.patient_id[t.split == "internal_test"])
    assert set(ids["external"]) == set(t.patient_id[t.split == "external_test"])
    assert set(ids["train"]) | set(ids["val"]) == set(t.patient_id[t.split == "train"])
    assert not set(ids["train"]) & set(ids["val"]) and len(ids["val"]) == 27
    assert cli._radiomics_split(index.assign(patient_id=index.patient_id + "x")) is None
    assert cli._radiomics_split(index.iloc[1:]) is None  # a radiomics patient missing from the cache
    extra = pd.DataFrame({"patient_id": ["EXTRA-1", "EXTRA-2"], "site": ["A", "C"], "label": [0, 1]})
    more, _ = cli._split(_args("classifier", ["--val-fraction", "0.15"]), pd.concat([index, extra], ignore_index=True))
    assert more["pretrain"] == ["EXTRA-1", "EXTRA-2"] and more["test"] == ids["test"] and more["val"] == ids["val"]
    assert ids["pretrain"] == []
    own, _ = cli._split(_args("classifier", ["--split", "own"]), index)
    assert set(own["external"]) == set(t.patient_id[t.site == "C"]) and set(own["test"]) != set(ids["test"])


def test_crop_origin_centres_and_clamps_and_refuses_empty_masks():
    from core.learning.training import crop_origin

    m = np.zeros((10, 12, 10), bool)
    m[8, 1, 5] = True
    assert crop_origin(m, 4) == (6, 0, 3)
    assert crop_origin(m, (4, 6, 2)) == (6, 0, 4)
    with pytest.raises(InputError, match="empty"):
        crop_origin(np.zeros((10, 10, 10)), 4, "P1")
    with pytest.raises(InputError, match="larger than"):
        crop_origin(m, 11)
