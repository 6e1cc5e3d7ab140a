"""Upload staging, settings from the environment, and the wording of input errors."""

import pytest

from core import config
from core.errors import InputError, UnsupportedFormatError
from core.imaging.uploads import image_stem, stage_uploads


def test_stage_pairs_images_with_sidecars_and_cleans_up():
    with stage_uploads([("sub-01_pet.nii.gz", b"x"), ("sub-01_pet.json", b"{}"), ("ct.zip", b"z")]) as paths:
        names = [p.name for p in paths]
        assert names == ["sub-01_pet.nii.gz", "ct.zip"]
        assert (paths[0].parent / "sub-01_pet.json").exists()
        folder = paths[0].parent
    assert not folder.exists()


@pytest.mark.parametrize("files, culprit", [
    ([("notes.docx", b"x")], "notes.docx"),
    ([("pet.json", b"{}")], "pet.json"),
])
def test_stage_refuses_what_cannot_be_imported(files, culprit):
    with pytest.raises(UnsupportedFormatError, match=culprit):
        with stage_uploads(files):
            pass


def test_errors_inside_name_the_uploaded_file_not_the_staging_copy():
    with pytest.raises(InputError) as info:
        with stage_uploads([("pet.nii.gz", b"x")]) as paths:
            raise InputError(f"cannot read {paths[0]}", path=paths[0], fix="Upload it again.")
    assert str(info.value) == "pet.nii.gz: cannot read pet.nii.gz. Upload it again."


def test_image_stem():
    assert image_stem("a.b.nii.gz") == "a.b"
    assert image_stem("PET.NII") == "PET"


def test_input_error_names_file_problem_and_fix():
    err = InputError("no frame timing.", path="/x/pet.nii.gz", fix="Add a sidecar.")
    assert isinstance(err, ValueError)
    assert str(err) == "/x/pet.nii.gz: no frame timing. Add a sidecar."


def test_config_defaults_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("THERABOARD_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.delenv("THERABOARD_DB_URL", raising=False)
    assert config.data_dir() == (tmp_path / "d").resolve() and (tmp_path / "d").is_dir()
    assert config.db_url() == f"sqlite:///{(tmp_path / 'd').resolve() / 'theraboard.db'}"
    monkeypatch.setenv("THERABOARD_DB_URL", "postgresql+psycopg://u@localhost/db")
    assert config.db_url().startswith("postgresql+psycopg://")


def test_device_auto_is_cpu_without_cuda_and_bad_names_are_refused(monkeypatch):
    import torch

    monkeypatch.setenv("THERABOARD_DEVICE", "auto")
    assert config.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("THERABOARD_DEVICE", "tpu")
    with pytest.raises(ValueError, match="THERABOARD_DEVICE"):
        config.device_name()
    if not torch.cuda.is_available():
        monkeypatch.setenv("THERABOARD_DEVICE", "cuda")
        with pytest.raises(ValueError, match="no CUDA"):
            config.device()
