"""Fixtures for AppTest page tests: an empty store and a small demo store."""

from __future__ import annotations

import pytest

from tests.demo_store import build_demo_store, store_env


@pytest.fixture(scope="session")
def demo_store_env(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("demo-store"))


@pytest.fixture
def demo_store(demo_store_env, monkeypatch):
    for key, value in demo_store_env.items():
        monkeypatch.setenv(key, value)
    return demo_store_env


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    env = store_env(tmp_path / "empty")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
