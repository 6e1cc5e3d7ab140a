"""Model cards and model bundles: a trained model shipped with what it is, how it was made
and how well it did.

A *bundle* is a folder under ``assets/models/<name>/`` holding

* ``card.json``: the :class:`ModelCard` (machine-readable; the app reads it);
* ``MODEL_CARD.md``: the same card for people (:func:`render_markdown`);
* the model file(s) named in ``card.files`` with their SHA-256.

:func:`load_bundle` checks every file's hash against the card before it unpickles
anything, so a card always describes the model that runs, and a changed or corrupt file
is refused with a clear :class:`~core.errors.InputError`. The card itself is not signed:
the trust in a shipped bundle comes from the repository it is committed to (a pickle from
an unknown source can run code; never load a bundle from elsewhere).

The sections follow Mitchell et al. (model details, intended use, factors, metrics,
evaluation and training data, caveats), trimmed to what a radiomics or imaging model
of this project needs.

References
----------
.. [1] Mitchell M, Wu S, Zaldivar A, et al. Model cards for model reporting. FAT* 2019:220-229.
.. [2] Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for
   reporting clinical prediction models that use regression or machine learning methods.
   BMJ 2024;385:e078378.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import core
from core.cases.store import sha256_file
from core.errors import InputError

__all__ = ["ModelCard", "code_version", "save_bundle", "load_bundle", "read_card", "render_markdown",
           "models_dir", "verify_bundle", "add_files"]

_REPO = Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """``assets/models`` of this checkout, where shipped bundles live."""
    return _REPO / "assets" / "models"


def code_version() -> str:
    """``core.__version__`` plus the git commit of this checkout when there is one.

    ``0.1.0+g1a2b3c4`` for a clean checkout, ``0.1.0+g1a2b3c4.dirty`` with uncommitted
    changes under ``core/``, ``0.1.0`` outside git.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=_REPO, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "core"], cwd=_REPO, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return core.__version__
    return f"{core.__version__}+g{sha}" + (".dirty" if dirty else "")


@dataclass(frozen=True)
class ModelCard:
    """What a shipped model is, how it was made and how well it did.

    Attributes
    ----------
    name : str
        Bundle name (folder under ``assets/models``), e.g. ``"radiomics_baseline"``.
    title : str
        One line for people.
    created : str
        ISO 8601 date-time of training (UTC).
    code_version : str
        :func:`code_version` of the code that trained it.
    task : str
        What the output means, e.g. "probability of true progression (vs radionecrosis)".
    intended_use : str
    limitations : tuple of str
    training_data : dict
        Cohort, sizes per split and class, sites, how it was split.
    inputs : dict
        Features and the processing settings that produce them.
    model : dict
        Estimator, hyper-parameters, selected features, operating threshold.
    metrics : dict
        Per evaluation set (e.g. ``"development (nested CV)"``, ``"internal test"``,
        ``"external test (site C)"``) a dict of metrics with 95 % CIs.
    reproduce : str
        The command that retrains it.
    files : dict of str to str
        File name in the bundle -> SHA-256.
    references : tuple of str
    """

    name: str
    title: str
    created: str
    code_version: str
    task: str
    intended_use: str
    limitations: tuple[str, ...]
    training_data: dict[str, Any]
    inputs: dict[str, Any]
    model: dict[str, Any]
    metrics: dict[str, Any]
    reproduce: str
    files: dict[str, str] = field(default_factory=dict)
    references: tuple[str, ...] = ()

    def to_json(self) -> str:
        """The card as JSON (NaN and infinities as null)."""
        return json.dumps(_plain(dataclasses.asdict(self)), indent=2, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | os.PathLike | None = None) -> ModelCard:
        if not isinstance(data, dict):
            raise InputError(f"the model card is not a JSON object (got {type(data).__name__})", path=path,
                             fix="Restore the file from the repository or retrain the model.")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise InputError(f"the model card lacks {missing}", path=path,
                             fix="Retrain the model with the command in its MODEL_CARD.md to rewrite the card.")
        kw = {k: v for k, v in data.items() if k in names}
        kw["limitations"] = tuple(kw.get("limitations", ()))
        kw["references"] = tuple(kw.get("references", ()))
        return cls(**kw)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    return obj


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict) and {"value", "ci_low", "ci_high"} <= set(value):
        v, lo, hi = (value[k] for k in ("value", "ci_low", "ci_high"))
        if v is None:
            return "n/a"
        return f"{v:.3f} ({lo:.3f}-{hi:.3f})" if lo is not None and hi is not None else f"{v:.3f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return "n/a" if value is None else str(value)


def _table(rows: dict[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    for k, v in rows.items():
        lines.append(f"| {k} | {_fmt(v)} |")
    return lines


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown for people (``MODEL_CARD.md``)."""
    out = [f"# Model card: {card.title}", "",
           f"- Bundle: `{card.name}`", f"- Trained: {card.created}", f"- Code version: `{card.code_version}`",
           f"- Reproduce: `{card.reproduce}`", "", "## Task", card.task, "", "## Intended use", card.intended_use,
           "", "## Limitations"]
    out += [f"- {item}" for item in card.limitations]
    out += ["", "## Training data", *_table(card.training_data), "", "## Inputs", *_table(card.inputs), "",
            "## Model", *_table(card.model), "", "## Metrics (95 % confidence intervals)"]
    for split, metrics in card.metrics.items():
        out += ["", f"### {split}", *_table(metrics)]
    out += ["", "## Files (SHA-256)"] + [f"- `{name}`: `{sha}`" for name, sha in card.files.items()]
    if card.references:
        out += ["", "## References"] + [f"- {ref}" for ref in card.references]
    return "\n".join(out) + "\n"


def save_bundle(directory: str | os.PathLike, card: ModelCard, objects: dict[str, Any],
                extra_files: dict[str, str | os.PathLike] | None = None) -> ModelCard:
    """Write a bundle atomically: pickled objects, extra files, ``card.json`` and ``MODEL_CARD.md``.

    The bundle is written to a temporary sibling folder and moved into place, so a failure
    leaves the previous bundle (or nothing) behind, never half a bundle.

    Parameters
    ----------
    directory : path
        Bundle folder (replaced if it exists).
    card : ModelCard
        Its ``files`` are filled in here.
    objects : dict of str to object
        File name (ending ``.joblib``) -> object, written with :func:`joblib.dump`.
    extra_files : dict of str to path, optional
        File name in the bundle -> existing file to copy (e.g. a feature table).

    Returns
    -------
    ModelCard
        The card as written, with the SHA-256 of every file.
    """
    import shutil

    import joblib

    directory = Path(directory)
    reserved = {"card.json", "MODEL_CARD.md"}
    names = list(objects) + list(extra_files or {})
    bad = [n for n in names if n in reserved or "/" in n or "\\" in n]
    bad += [n for n in objects if not n.endswith(".joblib")]
    if bad or len(set(names)) != len(names):
        raise InputError(f"bundle file names {bad or names} are reserved, repeated or not plain names",
                         fix="Name pickled objects '<name>.joblib' and extra files anything but card.json and "
                             "MODEL_CARD.md, each once.")
    missing = [str(src) for src in (extra_files or {}).values() if not Path(src).is_file()]
    if missing:
        raise InputError("a file to include in the bundle does not exist", path=missing[0],
                         fix="Write the file before saving the bundle.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is read by everyone who runs the app
        files = {}
        for name, obj in objects.items():
            joblib.dump(obj, tmp / name, compress=3)
            files[name] = sha256_file(tmp / name)
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
            files[name] = sha256_file(tmp / name)
        card = ModelCard.from_dict(json.loads(dataclasses.replace(card, files=files).to_json()))  # as reloaded
        (tmp / "card.json").write_text(card.to_json() + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(render_markdown(card), encoding="utf-8")
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def read_card(directory: str | os.PathLike) -> ModelCard:
    """The :class:`ModelCard` of a bundle (no model is loaded)."""
    path = Path(directory) / "card.json"
    if not path.is_file():
        raise InputError("no model card found", path=path,
                         fix="Train the model (see the README, e.g. `python -m core train radiomics`).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"the model card is not valid JSON ({err})", path=path,
                         fix="Restore the file from the repository or retrain the model.") from err
    return ModelCard.from_dict(data, path=path)


def load_bundle(directory: str | os.PathLike) -> tuple[ModelCard, dict[str, Any]]:
    """The card and the unpickled objects of a bundle, after checking every file's SHA-256.

    Returns
    -------
    (ModelCard, dict of str to object)
        Objects keyed by file name (``.joblib`` files only; other files are checked, not read).

    Raises
    ------
    InputError
        Missing card or file, or a file whose hash differs from the card.
    """
    import joblib

    directory = Path(directory)
    card = verify_bundle(directory)  # every hash first: nothing is unpickled from a changed bundle
    objects = {name: joblib.load(directory / name) for name in card.files if name.endswith(".joblib")}
    return card, objects


def verify_bundle(directory: str | os.PathLike) -> ModelCard:
    """The card of a bundle after checking that every file it lists exists with its SHA-256.

    Raises
    ------
    InputError
        Missing card or file, or a file whose hash differs from the card.
    """
    directory = Path(directory)
    card = read_card(directory)
    for name, sha in card.files.items():
        path = directory / name
        if not path.is_file():
            raise InputError("a file of the model bundle is missing", path=path,
                             fix="Restore the bundle from the repository or retrain the model.")
        if sha256_file(path) != sha:
            raise InputError("the file does not match the SHA-256 in its model card (changed or corrupt)",
                             path=path, fix="Restore the bundle from the repository or retrain the model; "
                                            "a file that does not match its card is never loaded.")
    return card


def add_files(directory: str | os.PathLike, extra_files: dict[str, str | os.PathLike], *,
              metrics: dict[str, Any] | None = None) -> ModelCard:
    """Add (or replace) files of a verified bundle and optionally merge card metrics; atomic.

    Parameters
    ----------
    directory : path
        An existing bundle (checked with :func:`verify_bundle` first).
    extra_files : dict of str to path
        Bundle file name -> file to copy in.
    metrics : dict, optional
        Merged into the card's ``metrics`` (same keys replaced).

    Returns
    -------
    ModelCard
        The rewritten card, with the hashes of all files.
    """
    directory = Path(directory)
    card = verify_bundle(directory)
    files = {name: directory / name for name in card.files if name not in extra_files}
    files.update(extra_files)
    card = dataclasses.replace(card, metrics={**(card.metrics or {}), **(metrics or {})})
    return save_bundle(directory, card, {}, extra_files=files)
