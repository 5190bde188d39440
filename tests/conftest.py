"""Shared fixtures: every test gets its own logoid home and runs offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Point LOGOID_HOME at a fresh folder so no test touches a real home."""
    home = tmp_path / "logoid-home"
    monkeypatch.setenv("LOGOID_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
