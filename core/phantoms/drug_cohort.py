"""The preclinical drug-release studies as an importable cohort: ``cohort.json`` for ``repo.import_cohort``.

:func:`core.phantoms.drug_tumour.generate_drug_cohort` writes every file of a study (images,
observations and the model truth) and ``manifest.json``. A case store holds what a preclinical
MRI study acquires, so :func:`drug_import_manifest` lists, per study, only the images with a
series role (:data:`core.cases.models.SERIES_ROLES`) and the tumour mask; the truth scalars
(release rate, diffusion, permeability, vascular pressure) travel with the study's label, so that
the drug-release page can set the inverse estimates beside them on demo data. The truth maps,
the true T1 and DCE maps and the micro-window simulation stay in the generator's folder.

========================  ==========================  =====================================
series role               file                        what it is
========================  ==========================  =====================================
``dce``                   ``dce_signal``              SPGR signal, 6 s frames over 5 min
``vfa``                   ``vfa_signal``              one frame per flip angle (``FlipAngles``)
``cest``                  ``cest_z``                  one frame per offset (``OffsetsPpm``)
``delta_r2star``          ``obs_delta_r2star``        carrier label ΔR2* at the imaging times
``delta_r1``              ``obs_delta_r1``            released-drug ΔR1 at the imaging times
``vessel_map``            ``vessel_surface``          vessel surface per tissue volume, 1/µm
``temperature``           ``temperature``             °C during heating (heated studies only)
========================  ==========================  =====================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from core.errors import InputError

__all__ = ["DRUG_ROLE_FILES", "DRUG_LABELS", "drug_import_manifest", "generate_drug_demo"]

#: Series role -> the generator's file name.
DRUG_ROLE_FILES = {"dce": "dce_signal", "vfa": "vfa_signal", "cest": "cest_z", "delta_r2star": "obs_delta_r2star",
                   "delta_r1": "obs_delta_r1", "vessel_map": "vessel_surface", "temperature": "temperature"}
#: The label (diagnosis field) of a study: what was given.
DRUG_LABELS = {"free": "free doxorubicin", "liposome": "liposomal doxorubicin",
               "thermosensitive": "thermosensitive liposomes with heating"}


def _entry(study: dict) -> dict:
    files = {role: study["files"][name] for role, name in DRUG_ROLE_FILES.items() if name in study["files"]}
    if study["scenario"] != "thermosensitive":
        files.pop("temperature", None)  # 37 °C everywhere: no thermometry was acquired
    return {"id": study["id"], "files": files, "masks": {"tumour": study["files"]["tumour_mask"]},
            "label": DRUG_LABELS[study["scenario"]], "scenario": study["scenario"],
            "imaging_times_h": study["imaging_times_h"], "noise_sd_uM": study["noise_sd_uM"],
            "truth": study["truth"]}


def drug_import_manifest(manifest_path: str | os.PathLike) -> Path:
    """Write ``cohort.json`` beside the generator's ``manifest.json`` and return its path.

    Parameters
    ----------
    manifest_path : str or PathLike
        ``manifest.json`` of :func:`~core.phantoms.drug_tumour.generate_drug_cohort`.

    Returns
    -------
    Path
        ``cohort.json`` (``patients`` with ``files`` by series role, ``masks``, ``label``, ``truth``).

    Raises
    ------
    InputError
        When the manifest cannot be read or lacks a study's files.
    """
    path = Path(manifest_path)
    fix = "Generate the studies again with core.phantoms.drug_tumour.generate_drug_cohort."
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        patients = [_entry(s) for s in manifest["studies"]]
    except FileNotFoundError:
        raise InputError("the drug-study manifest does not exist", path=path, fix=fix) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"the drug-study manifest is not readable ({type(err).__name__}: {err})", path=path,
                         fix=fix) from None
    cohort = {"generator": manifest.get("generator"), "version": manifest.get("version"),
              "seed": manifest.get("seed"), "synthetic": bool(manifest.get("synthetic", True)),
              "n": len(patients), "patients": patients}
    out = path.parent / "cohort.json"
    tmp = path.parent / ".cohort.json.tmp"
    tmp.write_text(json.dumps(cohort, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def generate_drug_demo(out_dir: str | os.PathLike, n: int = 3, seed: int = 0, *,
                       progress: Callable[[float, str], None] | None = None, **options) -> Path:
    """Generate ``n`` drug-release studies (free, liposome, thermosensitive in turn) and their ``cohort.json``.

    Examples
    --------
    >>> path = generate_drug_demo("/tmp/drug-demo", n=3)              # doctest: +SKIP
    >>> repo.import_cohort(path)                                      # doctest: +SKIP
    """
    from core.phantoms.drug_tumour import generate_drug_cohort

    return drug_import_manifest(generate_drug_cohort(out_dir, n=n, seed=seed, progress=progress, **options))
