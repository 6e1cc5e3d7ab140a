"""Content-addressed file store: layout, idempotence, verification, undo of a transaction."""

from __future__ import annotations

import hashlib
import os

import pytest

from core.cases.store import FileStore, StagedFiles, sha256_file
from core.errors import CaseStoreError


@pytest.fixture
def store(tmp_path):
    return FileStore(tmp_path / "data")


def _file(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_put_is_content_addressed_and_idempotent(store, tmp_path):
    src = _file(tmp_path, "pet.nii.gz", b"voxels" * 1000)
    digest = hashlib.sha256(b"voxels" * 1000).hexdigest()
    first = store.put(src, suffix=".nii.gz")
    assert first.relpath == f"store/{digest[:2]}/{digest}.nii.gz"
    assert (first.sha256, first.size_bytes, first.created) == (digest, 6000, True)
    assert store.path(first.relpath).read_bytes() == src.read_bytes()
    assert not os.access(store.path(first.relpath), os.W_OK) or os.geteuid() == 0
    assert store.path(first.relpath).stat().st_mode & 0o777 == 0o444
    again = store.put(src, suffix=".nii.gz")
    assert again.relpath == first.relpath and not again.created
    assert store.files() == [first.relpath]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".incoming")]  # no temp leftovers
    assert sha256_file(src) == digest


def test_expected_hash_and_verify(store, tmp_path):
    src = _file(tmp_path, "a.json", b"{}")
    with pytest.raises(CaseStoreError, match="differs from the expected"):
        store.put(src, suffix=".json", expected_sha256="0" * 64)
    assert store.files() == []
    stored = store.put(src, suffix=".json")
    store.verify(stored.relpath)
    path = store.path(stored.relpath)
    path.chmod(0o644)
    path.write_bytes(b"{ }")
    with pytest.raises(CaseStoreError, match="corrupt"):
        store.verify(stored.relpath)
    store.remove(stored.relpath)
    with pytest.raises(CaseStoreError, match="missing"):
        store.verify(stored.relpath)
    store.remove(stored.relpath)  # removing twice is fine


def test_paths_stay_inside_the_store(store):
    with pytest.raises(CaseStoreError, match="outside"):
        store.path("../etc/passwd")
    with pytest.raises(ValueError):
        store.relpath_for("abc")
    with pytest.raises(ValueError):
        store.relpath_for("a" * 64, "/../x")


def test_staged_files_are_undone_unless_referenced(store, tmp_path):
    shared = store.put(_file(tmp_path, "shared.bin", b"shared"))
    staged = StagedFiles(store)
    new_a = staged.put(_file(tmp_path, "a.bin", b"a"))
    new_b = staged.put(_file(tmp_path, "b.bin", b"b"))
    again = staged.put(_file(tmp_path, "s.bin", b"shared"))
    assert not again.created and staged.created == [new_a.relpath, new_b.relpath]
    staged.discard(lambda paths: {p for p in paths if p == new_b.relpath})  # b was committed elsewhere
    assert store.files() == sorted([shared.relpath, new_b.relpath])
    assert staged.created == []
