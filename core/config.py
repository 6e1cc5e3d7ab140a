"""Settings from ``THERABOARD_*`` environment variables, with safe defaults.

=========================  =====================================  ==============================
variable                   meaning                                default
=========================  =====================================  ==============================
``THERABOARD_DATA_DIR``    data directory (case store, results)   ``./data`` (git-ignored)
``THERABOARD_DB_URL``      SQLAlchemy URL of the case database    SQLite file ``<data>/theraboard.db``
``THERABOARD_DEVICE``      ``auto``, ``cpu``, ``cuda`` or         ``auto``: CUDA when torch sees
                           ``cuda:N`` for torch work              one, else CPU
=========================  =====================================  ==============================

Settings are read when asked for, never cached at import, so tests and the command
line can change them with the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "db_url", "device", "device_name"]

_DEVICE_CHOICES = ("auto", "cpu", "cuda")


def data_dir(create: bool = True) -> Path:
    """Directory that holds the case store, its database and computed results."""
    path = Path(os.environ.get("THERABOARD_DATA_DIR", "./data")).expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def db_url() -> str:
    """SQLAlchemy URL of the case database (SQLite in the data directory by default)."""
    url = os.environ.get("THERABOARD_DB_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{data_dir() / 'theraboard.db'}"


def device_name() -> str:
    """The requested torch device as a string, validated but not resolved."""
    name = os.environ.get("THERABOARD_DEVICE", "auto").strip().lower() or "auto"
    if name.split(":")[0] not in _DEVICE_CHOICES:
        raise ValueError(
            f"THERABOARD_DEVICE={name!r} is not understood. Use one of 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    return name


def device():
    """The torch device for heavy work: CUDA when requested or (``auto``) available, else CPU.

    Asking for ``cuda`` on a machine without a GPU raises a ``ValueError`` rather than
    silently running elsewhere.
    """
    import torch  # imported here: most of core does not need torch

    name = device_name()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"THERABOARD_DEVICE={name!r} but torch sees no CUDA device. Use 'auto' or 'cpu'."
        )
    return torch.device(name)
