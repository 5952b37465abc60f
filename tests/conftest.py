import algebra  # noqa: F401,I001  (first: one BLAS thread, see algebra/__init__.py)
import pathlib

import pytest
from click.testing import CliRunner

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def examples():
    return EXAMPLES


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("ALGEBRA_CACHE_DIR", str(path))
    return path


@pytest.fixture
def write_model(tmp_path):
    def write(text, name="model.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
