"""Stage uploaded files on disk as importable inputs.

A browser upload is a list of (file name, bytes). A NIfTI image travels with its
PET-BIDS sidecar (``pet.nii.gz`` + ``pet.json``); a DICOM series travels as one zip.
:func:`stage_uploads` writes them into a private temporary folder, pairs each image with
its sidecar, and yields the paths to import; the folder is removed afterwards whatever
happens, so an aborted import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Iterator

from core.errors import InputError, UnsupportedFormatError

__all__ = ["stage_uploads", "image_stem"]

_IMAGE = re.compile(r"\.(nii|nii\.gz)$", re.IGNORECASE)


def image_stem(name: str) -> str:
    """File name without ``.nii``, ``.nii.gz``, ``.json`` or ``.zip``."""
    return re.sub(r"\.(nii\.gz|nii|json|zip)$", "", name, flags=re.IGNORECASE)


@contextlib.contextmanager
def stage_uploads(files: list[tuple[str, bytes]]) -> Iterator[list[Path]]:
    """Write uploads to a temporary folder and yield the importable paths.

    Parameters
    ----------
    files : list of (str, bytes)
        File names as the browser gave them and their content.

    Yields
    ------
    list of Path
        One path per NIfTI image (its sidecar beside it) and per zip, in upload order.

    Raises
    ------
    InputError
        Any input error raised while the staged files are imported is re-raised with
        the file named as it was uploaded, not by its temporary copy.
    UnsupportedFormatError
        For a file that is neither NIfTI, JSON sidecar nor zip, and for a sidecar
        without its image.
    """
    with tempfile.TemporaryDirectory(prefix="theraboard-upload-") as tmp:
        root = Path(tmp)
        images, sidecars = [], set()
        for name, content in files:
            safe = Path(name).name  # never trust folders in a browser-supplied name
            lower = safe.lower()
            if _IMAGE.search(lower) or lower.endswith(".zip"):
                images.append(root / safe)
            elif lower.endswith(".json"):
                sidecars.add(image_stem(safe))
            else:
                raise UnsupportedFormatError(
                    "this file type cannot be imported", path=safe,
                    fix="Upload a NIfTI image (.nii or .nii.gz) with its .json sidecar, or a DICOM series as one .zip.")
            (root / safe).write_bytes(content)
        orphans = sidecars - {image_stem(p.name) for p in images}
        if orphans:
            name = sorted(orphans)[0] + ".json"
            raise UnsupportedFormatError(
                "this sidecar has no image with the same name", path=name,
                fix=f"Upload {sorted(orphans)[0]}.nii.gz together with it.")
        try:
            yield images
        except InputError as err:
            raise _as_uploaded(err, root) from err


def _as_uploaded(err: InputError, root: Path) -> InputError:
    """The same error, naming the file as the user uploaded it rather than its staging copy."""
    prefix = str(root) + "/"
    path = err.path.replace(prefix, "") if err.path else None
    return type(err)(err.problem.replace(prefix, ""), path=path,
                     fix=err.fix.replace(prefix, "") if err.fix else None)
