"""Sanity checks (Adebayo et al. 2018): a trained model's gradient map differs from its randomised
copy's, an explanation that ignores the model fails, and the similarity behaves as a rank correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InputError
from core.explain.attributions import attribute
from core.explain.sanity import (SanityResult, cascading_randomisation, label_randomisation_similarity,
                                 map_similarity, randomisable_layers)
from core.learning.cnn import CNN3D
from tests.support.planted_cnn import train_planted_cnn

_BOX = (slice(3, 7),) * 3


def _batch(n: int, g: torch.Generator):
    """Class 1: a bright blob in a known place on Gaussian noise; class 0: noise only."""
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, 16, generator=g)
    x[(y == 1).nonzero()[:, 0][:, None], :, _BOX[0], _BOX[1], _BOX[2]] += 2.0
    return x, y


def _train(seed: int, shuffle_labels: bool = False, steps: int = 50) -> CNN3D:
    return train_planted_cnn(_batch, 1, seed=seed, steps=steps, shuffle_labels=shuffle_labels)


@pytest.fixture(scope="module")
def trained():
    return _train(seed=0)


@pytest.fixture(scope="module")
def x_blob():
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(99))
    x[0, :, _BOX[0], _BOX[1], _BOX[2]] += 2.0
    return x


def _edge_detector(model, x, target):
    """An 'explanation' that only looks at the input: the gradient magnitude of the image."""
    v = torch.as_tensor(x)[0].numpy()
    return np.stack([np.sqrt(sum(g ** 2 for g in np.gradient(c))) for c in v])


def test_trained_model_learnt_the_task(trained):
    x, y = _batch(64, torch.Generator().manual_seed(1234))
    with torch.no_grad():
        assert (trained(x).argmax(1) == y).float().mean() > 0.9


def test_gradient_map_passes_cascading_randomisation(trained, x_blob):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    res = cascading_randomisation(trained, x_blob, "saliency", target=1, seed=0)
    assert isinstance(res, SanityResult) and res.method == "saliency"
    assert [name for name, _ in res.curve] == randomisable_layers(trained)
    assert res.curve[0][0] == "classifier" and res.curve[-1][0] == "features.0.0"
    assert res.final_similarity < 0.5 and res.passed
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    # same seed, same curve
    again = cascading_randomisation(trained, x_blob, "saliency", target=1, seed=0)
    assert again.curve == res.curve


def test_explanation_ignoring_the_model_fails(trained, x_blob):
    res = cascading_randomisation(trained, x_blob, _edge_detector, target=1, seed=0)
    assert res.method == "_edge_detector"
    assert all(s > 0.99 for _, s in res.curve)
    assert not res.passed


def test_threshold_and_layer_choice(trained, x_blob):
    res = cascading_randomisation(trained, x_blob, "integrated_gradients", target=1, seed=0,
                                  layers=["classifier"], threshold=0.99, n_steps=8)
    assert [name for name, _ in res.curve] == ["classifier"]
    assert res.passed == (res.final_similarity < 0.99)
    with pytest.raises(InputError, match="nope"):
        cascading_randomisation(trained, x_blob, "saliency", layers=["classifier", "nope"])
    with pytest.raises(InputError, match="threshold=2"):
        cascading_randomisation(trained, x_blob, "saliency", threshold=2)


def test_label_randomisation_similarity_is_low_for_a_shuffled_label_model(trained, x_blob):
    shuffled = _train(seed=0, shuffle_labels=True)
    a = attribute(trained, x_blob, "saliency")
    b = attribute(shuffled, x_blob, "saliency")
    s = label_randomisation_similarity(a, b)
    assert s == map_similarity(a.values, b.values)
    assert s < 0.5
    assert label_randomisation_similarity(a, a) == pytest.approx(1.0)


def test_map_similarity_is_a_rank_correlation_of_absolute_maps():
    rng = np.random.default_rng(0)
    a = rng.random((2, 4, 4, 4))
    s = a.sum(axis=0)
    assert map_similarity(a, s ** 3) == pytest.approx(1.0)  # monotone transform of the channel sum: same ranks
    assert map_similarity(a, -a) == pytest.approx(1.0)  # absolute values
    order = a.sum(axis=0).ravel().argsort().argsort()
    reversed_map = (order.max() - order).reshape(4, 4, 4).astype(float) + 1.0
    assert map_similarity(a, reversed_map) == pytest.approx(-1.0)
    assert map_similarity(a, np.zeros((4, 4, 4))) == 0.0
    assert map_similarity(np.ones((4, 4, 4)), np.zeros((4, 4, 4))) == 1.0
    with pytest.raises(InputError, match=r"\(27,\)"):
        map_similarity(a, np.zeros((3, 3, 3)))
