"""Model cards and bundles: round trip, hash checks before unpickling, atomic writes, strict JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import core
from core.errors import InputError
from core.evaluation.metrics import Estimate
from core.learning.model_card import (ModelCard, code_version, load_bundle, models_dir, read_card, render_markdown,
                                      save_bundle)

#: Records every unpickling of a :class:`_Tracker` (a side effect that shows a file was loaded).
_UNPICKLED: list[str] = []


class _Tracker:
    """An object whose unpickling leaves a trace in ``_UNPICKLED``."""

    def __init__(self, tag: str):
        self.tag = tag

    def __setstate__(self, state):
        self.__dict__.update(state)
        _UNPICKLED.append(self.tag)


@pytest.fixture(autouse=True)
def _reset_tracker():
    _UNPICKLED.clear()
    yield
    _UNPICKLED.clear()


def _card(**changes) -> ModelCard:
    card = ModelCard(
        name="toy_model", title="Toy logistic model for tests", created="2024-05-01T12:00:00Z",
        code_version="0.1.0+gdeadbeef", task="probability of true progression (vs radionecrosis)",
        intended_use="Unit tests only.",
        limitations=("Trained on 40 synthetic cases.", "Not validated outside site A."),
        training_data={"cohort": "synthetic", "n_train": 40, "n_test": 20},
        inputs={"features": ["f1", "f2"], "bin_width": 25.0},
        model={"estimator": "LogisticRegression", "C": 1.0, "threshold": 0.42},
        metrics={"development (nested CV)": {"auc": {"value": 0.81, "ci_low": 0.7, "ci_high": 0.9}},
                 "internal test": {"auc": {"value": 0.77, "ci_low": 0.6, "ci_high": 0.88}, "n": 20}},
        reproduce="python -m core train toy",
        references=("Mitchell M et al. FAT* 2019:220-229.",),
    )
    return dataclasses.replace(card, **changes)


def _fitted_model(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_byte(path: Path, at: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def bundle(tmp_path):
    """A saved bundle: a fitted model, an array and an extra CSV file."""
    model, x = _fitted_model()
    table = tmp_path / "features.csv"
    table.write_text("case,f1,f2\nA,1.0,2.0\n", encoding="utf-8")
    directory = tmp_path / "models" / "toy_model"
    written = save_bundle(directory, _card(), {"model.joblib": model, "grid.joblib": np.arange(5.0)},
                          extra_files={"features.csv": table})
    return directory, written, model, x


# ----------------------------------------------------------------------------- round trip

def test_round_trip_keeps_card_and_objects(bundle):
    directory, written, model, x = bundle
    card, objects = load_bundle(directory)
    assert card == written
    assert dataclasses.replace(card, files={}) == _card()  # every field survives JSON
    assert isinstance(card.limitations, tuple) and isinstance(card.references, tuple)
    assert card.limitations == ("Trained on 40 synthetic cases.", "Not validated outside site A.")
    assert set(objects) == {"model.joblib", "grid.joblib"}  # the CSV is checked, not loaded
    np.testing.assert_array_equal(objects["model.joblib"].predict_proba(x), model.predict_proba(x))
    np.testing.assert_array_equal(objects["grid.joblib"], np.arange(5.0))
    assert read_card(directory) == written


def test_card_files_hold_sha256_of_every_file(bundle):
    directory, written, _, _ = bundle
    assert set(written.files) == {"model.joblib", "grid.joblib", "features.csv"}
    for name, sha in written.files.items():
        assert sha == _sha(directory / name), name
    assert (directory / "features.csv").read_text(encoding="utf-8") == "case,f1,f2\nA,1.0,2.0\n"
    on_disk = json.loads((directory / "card.json").read_text(encoding="utf-8"))
    assert on_disk["files"] == written.files


def test_model_card_markdown_lists_title_limitations_metrics_and_hashes(bundle):
    directory, written, _, _ = bundle
    text = (directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert text == render_markdown(written)
    assert "Toy logistic model for tests" in text.splitlines()[0]
    for item in written.limitations:
        assert f"- {item}" in text
    for split in written.metrics:
        assert f"### {split}" in text.splitlines()
    for name, sha in written.files.items():
        assert name in text and sha in text
    assert "0.810 (0.700-0.900)" in text  # value (CI) of the development AUC
    assert "python -m core train toy" in text


# ----------------------------------------------------------------------------- integrity

def test_changed_byte_is_refused_before_unpickling(tmp_path):
    directory = tmp_path / "b"
    save_bundle(directory, _card(), {"tracker.joblib": _Tracker("t")})
    assert load_bundle(directory)[1]["tracker.joblib"].tag == "t"  # the tracker does record loads
    _UNPICKLED.clear()
    _flip_byte(directory / "tracker.joblib")
    with pytest.raises(InputError, match="SHA-256") as err:
        load_bundle(directory)
    assert err.value.path == str(directory / "tracker.joblib")
    assert err.value.fix
    assert _UNPICKLED == []


def test_no_file_is_unpickled_when_any_file_is_changed(tmp_path):
    """The module promises to check every hash before it unpickles anything."""
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n", encoding="utf-8")
    directory = tmp_path / "b"
    save_bundle(directory, _card(), {"tracker.joblib": _Tracker("t")}, extra_files={"table.csv": table})
    _flip_byte(directory / "table.csv", at=0)
    with pytest.raises(InputError) as err:
        load_bundle(directory)
    assert err.value.path == str(directory / "table.csv")
    assert _UNPICKLED == [], "tracker.joblib was unpickled before table.csv's hash was checked"


def test_appended_byte_is_refused(bundle):
    directory = bundle[0]
    with open(directory / "model.joblib", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError) as err:
        load_bundle(directory)
    assert err.value.path == str(directory / "model.joblib")


def test_missing_card(tmp_path):
    with pytest.raises(InputError, match="no model card") as err:
        load_bundle(tmp_path)
    assert err.value.path == str(tmp_path / "card.json") and err.value.fix


def test_invalid_json_card(bundle):
    directory = bundle[0]
    (directory / "card.json").write_text('{"name": "toy_model",', encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_card(directory)
    assert err.value.path == str(directory / "card.json") and err.value.fix


@pytest.mark.parametrize("content", ["null", "5", "[]", '"card"'])
def test_card_that_is_not_a_json_object(bundle, content):
    directory = bundle[0]
    (directory / "card.json").write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_card(directory)
    assert err.value.path == str(directory / "card.json") and err.value.fix


def test_card_lacking_a_required_field(bundle):
    directory = bundle[0]
    path = directory / "card.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["task"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match="task") as err:
        load_bundle(directory)
    assert err.value.path == str(path) and err.value.fix


def test_card_without_optional_fields_loads(bundle):
    directory = bundle[0]
    path = directory / "card.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["references"]
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_card(directory).references == ()


def test_file_listed_in_card_is_missing(bundle):
    directory = bundle[0]
    (directory / "grid.joblib").unlink()
    with pytest.raises(InputError, match="missing") as err:
        load_bundle(directory)
    assert err.value.path == str(directory / "grid.joblib") and err.value.fix


# ----------------------------------------------------------------------------- atomic writes

def test_failed_save_leaves_previous_bundle(bundle):
    directory, written, model, x = bundle
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(Exception):
        save_bundle(directory, _card(title="New"), {"model.joblib": lambda v: v})  # a lambda cannot be pickled
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert [p.name for p in directory.parent.iterdir()] == ["toy_model"]  # no temporary folders left
    card, objects = load_bundle(directory)
    assert card == written
    np.testing.assert_array_equal(objects["model.joblib"].predict_proba(x), model.predict_proba(x))


def test_failed_first_save_leaves_nothing(tmp_path):
    directory = tmp_path / "models" / "new"
    with pytest.raises(InputError, match="does not exist"):
        save_bundle(directory, _card(), {"a.joblib": 1}, extra_files={"t.csv": tmp_path / "absent.csv"})
    assert not directory.exists()
    (tmp_path / "models").mkdir()
    with pytest.raises(Exception):
        save_bundle(directory, _card(), {"a.joblib": lambda: 1})
    assert list(directory.parent.iterdir()) == []


@pytest.mark.parametrize("objects,extra", [({"card.json": 1}, {}), ({"a.pkl": 1}, {}),
                                           ({"a.joblib": 1}, {"MODEL_CARD.md": "x"}),
                                           ({"a.joblib": 1}, {"a.joblib": "x"}), ({"../a.joblib": 1}, {})])
def test_reserved_or_bad_file_names_are_refused(tmp_path, objects, extra):
    src = tmp_path / "x"
    src.write_text("x")
    with pytest.raises(InputError, match="reserved, repeated or not plain"):
        save_bundle(tmp_path / "b", _card(), objects, extra_files={k: src for k in extra})
    assert not (tmp_path / "b").exists()


def test_save_replaces_existing_bundle(bundle):
    directory, _, _, _ = bundle
    written = save_bundle(directory, _card(title="Second"), {"other.joblib": {"k": 1}})
    card, objects = load_bundle(directory)
    assert card.title == "Second" and card == written
    assert objects == {"other.joblib": {"k": 1}}
    assert sorted(p.name for p in directory.iterdir()) == ["MODEL_CARD.md", "card.json", "other.joblib"]
    assert [p.name for p in directory.parent.iterdir()] == ["toy_model"]


# ----------------------------------------------------------------------------- JSON and versions

def test_to_json_is_strict_json_with_plain_numbers():
    card = _card(
        training_data={"n": np.int64(40), "prevalence": np.float32(0.5), "balanced": np.bool_(True)},
        metrics={"test": {"auc": float("nan"), "ppv": np.float64("inf"), "npv": -np.inf,
                          "values": (1.0, np.nan, np.float64(0.25)),
                          "sensitivity": Estimate(0.75, np.nan, 0.9, 3, 4, "wilson")}},
    )
    text = card.to_json()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["training_data"] == {"n": 40, "prevalence": 0.5, "balanced": True}
    assert type(data["training_data"]["n"]) is int
    test = data["metrics"]["test"]
    assert test["auc"] is None and test["ppv"] is None and test["npv"] is None
    assert test["values"] == [1.0, None, 0.25]
    assert test["sensitivity"] == {"value": 0.75, "ci_low": None, "ci_high": 0.9, "numerator": 3,
                                   "denominator": 4, "method": "wilson"}
    assert data["limitations"] == list(card.limitations)


def test_code_version_starts_with_package_version():
    version = code_version()
    assert version.startswith(core.__version__)
    assert re.fullmatch(re.escape(core.__version__) + r"(\+g[0-9a-f]{7,40}(\.dirty)?)?", version)


def test_models_dir_is_assets_models_of_checkout():
    assert models_dir() == Path(core.__file__).resolve().parents[1] / "assets" / "models"


def test_add_files_rewrites_a_verified_bundle_atomically(tmp_path):
    from core.learning.model_card import add_files, load_bundle, read_card, verify_bundle

    save_bundle(tmp_path / "b", _card(), {"model.joblib": {"w": [1, 2]}})
    extra = tmp_path / "extra.json"
    extra.write_text('{"a": 1}')
    new = add_files(tmp_path / "b", {"extra.json": extra}, metrics={"sanity": {"passed": True}})
    assert set(new.files) == {"model.joblib", "extra.json"} and new.metrics["sanity"] == {"passed": True}
    assert verify_bundle(tmp_path / "b") == read_card(tmp_path / "b")
    assert load_bundle(tmp_path / "b")[1]["model.joblib"] == {"w": [1, 2]}
    (tmp_path / "b" / "extra.json").write_text('{"a": 2}')
    with pytest.raises(InputError, match="SHA-256"):
        add_files(tmp_path / "b", {"other.txt": extra})
