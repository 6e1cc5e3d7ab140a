"""Fixtures: a live Streamlit server over a demo store, and Debian's Chromium via Playwright."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, start_server
from tests.demo_store import build_demo_store


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = build_demo_store(tmp_path_factory.mktemp("e2e-store"))
    proc, url = start_server(env, ARTIFACTS / "streamlit.log")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium with apt-get.")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    p = context.new_page()
    yield p
    context.close()
