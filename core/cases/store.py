"""Content-addressed file store: every file is kept once, under its SHA-256.

Layout under the data directory (:func:`core.config.data_dir`)::

    store/ab/ab3f...e9.nii.gz      # store/<sha256[:2]>/<sha256><suffix>

The suffix (``.nii.gz``, ``.json``, ``.dcm``, ...) is kept so that tools recognise the
file; the name is otherwise the hash of the content. A file is written to a temporary
file in the same folder, hashed again from disk, then moved into place with
:func:`os.replace` (atomic on POSIX and Windows), so a reader never sees half a file.
Putting the same content twice is a no-op. Stored files are made read-only.

The database refers to stored files by their path relative to the data directory
(``store/ab/ab3f....nii.gz``), so a data directory can be moved as a whole.

:class:`StagedFiles` remembers which files one transaction created, so that a failed
import can remove exactly those (see :class:`core.cases.repository.CaseRepository`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import CaseStoreError

__all__ = ["StoredFile", "FileStore", "StagedFiles", "sha256_file"]

_CHUNK = 1 << 20
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9]{1,8}){0,2}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """A file in the store.

    Attributes
    ----------
    relpath : str
        Path relative to the data directory, with forward slashes.
    sha256 : str
        Hex SHA-256 of the content.
    size_bytes : int
    created : bool
        True when this call wrote the file, False when the content was already stored.
    """

    relpath: str
    sha256: str
    size_bytes: int
    created: bool


class FileStore:
    """The content-addressed store under ``data_dir/store``.

    Parameters
    ----------
    data_dir : str or os.PathLike
        The data directory; the store is its ``store/`` folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "a.txt").write_text("hello")
    5
    >>> store = FileStore(d / "data")
    >>> f = store.put(d / "a.txt", suffix=".txt")
    >>> f.relpath
    'store/2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824.txt'
    >>> store.put(d / "a.txt", suffix=".txt").created
    False
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "store"

    # -- paths -------------------------------------------------------------------------
    def relpath_for(self, sha256: str, suffix: str = "") -> str:
        """Relative path of content with hash ``sha256`` and file suffix ``suffix``."""
        if not _HEX64.match(sha256):
            raise ValueError(f"not a hex SHA-256: {sha256!r}")
        if not _SUFFIX.match(suffix):
            raise ValueError(f"file suffix {suffix!r} is not allowed in the store")
        return f"store/{sha256[:2]}/{sha256}{suffix}"

    def path(self, relpath: str) -> Path:
        """Absolute path of a stored file (it must lie inside the store)."""
        path = (self.data_dir / relpath).resolve()
        if self.root not in path.parents:
            raise CaseStoreError(f"{relpath} lies outside the case store",
                                 fix="The database refers to a file it should not; check the data directory.")
        return path

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).is_file()

    # -- writing -----------------------------------------------------------------------
    def put(self, src: str | os.PathLike, *, suffix: str = "", expected_sha256: str | None = None) -> StoredFile:
        """Copy ``src`` into the store (idempotent) and return where it lies.

        Parameters
        ----------
        src : str or os.PathLike
            File to store; it is not modified.
        suffix : str, default=""
            File suffix kept on the stored name, e.g. ``".nii.gz"``.
        expected_sha256 : str, optional
            Refuse the file unless its content has this hash.

        Raises
        ------
        CaseStoreError
            When the content does not have ``expected_sha256``, or changed while it was
            copied.
        """
        src = Path(src)
        self.root.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256:
                raise CaseStoreError(f"content hash {digest[:12]}... differs from the expected "
                                     f"{expected_sha256[:12]}...", path=src,
                                     fix="The file changed or is corrupt; import it again.")
            if sha256_file(tmp) != digest:  # what reached the disk is what was read
                raise CaseStoreError("the copy in the case store differs from the file read", path=src,
                                     fix="Check the disk of the data directory and import again.")
            relpath = self.relpath_for(digest, suffix)
            final = self.data_dir / relpath
            size = tmp.stat().st_size
            if final.is_file():
                return StoredFile(relpath, digest, size, created=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            return StoredFile(relpath, digest, size, created=True)
        finally:
            tmp.unlink(missing_ok=True)

    def remove(self, relpath: str) -> None:
        """Delete a stored file (missing files are ignored)."""
        path = self.path(relpath)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        try:
            path.parent.rmdir()  # only when empty
        except OSError:
            pass

    # -- checking ----------------------------------------------------------------------
    def verify(self, relpath: str, sha256: str | None = None) -> None:
        """Raise :class:`~core.errors.CaseStoreError` unless the stored file is intact.

        The content is hashed again and compared with ``sha256`` (default: the hash in
        the file name).
        """
        path = self.path(relpath)
        expected = sha256 or path.name[:64]
        if not path.is_file():
            raise CaseStoreError("the stored file is missing", path=relpath,
                                 fix="Restore the data directory from a backup or import the series again.")
        actual = sha256_file(path)
        if actual != expected:
            raise CaseStoreError(f"the stored file is corrupt (hash {actual[:12]}... instead of "
                                 f"{expected[:12]}...)", path=relpath,
                                 fix="Restore the data directory from a backup or import the series again.")

    def files(self) -> list[str]:
        """Relative paths of all stored files, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.relative_to(self.data_dir).as_posix() for p in self.root.glob("??/*") if p.is_file())


class StagedFiles:
    """The files one transaction put into the store, to undo them if it fails.

    Parameters
    ----------
    store : FileStore
    """

    def __init__(self, store: FileStore):
        self.store = store
        self.created: list[str] = []

    def put(self, src: str | os.PathLike, *, suffix: str = "") -> StoredFile:
        """:meth:`FileStore.put`, remembering the file when this call created it."""
        stored = self.store.put(src, suffix=suffix)
        if stored.created:
            self.created.append(stored.relpath)
        return stored

    def discard(self, still_referenced: Callable[[Iterable[str]], set[str]] | None = None) -> None:
        """Delete the files this transaction created.

        Parameters
        ----------
        still_referenced : callable, optional
            Given the created paths, returns those that committed rows elsewhere refer to
            (another import of the same content that raced with this one); they are kept.
        """
        keep = still_referenced(self.created) if (still_referenced and self.created) else set()
        for relpath in self.created:
            if relpath not in keep:
                self.store.remove(relpath)
        self.created.clear()
