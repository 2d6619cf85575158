"""Shared pytest fixtures: the real third-party data beside the checkout, and a scratch project home."""
from pathlib import Path

import pytest

from cvflow.config import SHARED_MISSING, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    "`../shared/data`; the test is skipped with a clear message when it is absent (a user's fresh clone)."
    d = shared_data_dir()
    if d is None:
        pytest.skip(SHARED_MISSING)
    return d


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    "A fresh, empty project home (CVFLOW_HOME) so tests never touch the user's data/, models/ or reports/."
    monkeypatch.setenv("CVFLOW_HOME", str(tmp_path))
    return tmp_path
