"""Shared fixtures: the demo web on 127.0.0.1, its sources file, and crawls run as child processes.

A Twisted reactor starts once per process, so every crawl in the tests is a real
``nkwatch crawl`` child process against the real demo web over loopback HTTP.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.demo.server import DemoWeb
from crawler.sources import save_sources

NKWATCH = [sys.executable, "-m", "crawler.cli"]


def run_nkwatch(*args: str, env: dict | None = None, timeout: float = 180, check: bool = True):
    """Run ``nkwatch ARGS`` as a child process; returns the CompletedProcess (text mode)."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [*NKWATCH, *args], capture_output=True, text=True, timeout=timeout, env=merged
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"nkwatch {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="session")
def demo_web():
    """The demo web, served for the whole test session (tests must not publish on it)."""
    with DemoWeb() as web:
        yield web


@pytest.fixture()
def fresh_demo_web():
    """A demo web of the test's own, for tests that publish articles or break feeds."""
    with DemoWeb() as web:
        yield web


def write_sources(web: DemoWeb, folder: Path) -> Path:
    return save_sources(web.sources(), folder / "sources.toml")


@pytest.fixture(scope="session")
def demo_sources(demo_web, tmp_path_factory) -> Path:
    return write_sources(demo_web, tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="session")
def demo_corpus(demo_web, demo_sources, tmp_path_factory) -> Path:
    """A corpus crawled once from the session's demo web; tests only read it."""
    db = tmp_path_factory.mktemp("corpus") / "demo.db"
    run_nkwatch("crawl", "--db", str(db), "--sources", str(demo_sources))
    return db


def query(db: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


HOSTILE_FIGURES: dict = {}


def pytest_terminal_summary(terminalreporter):
    """Print the hostile suite's figures: cases tried, handled with a reason, crashes, kills."""
    if HOSTILE_FIGURES:
        figures = HOSTILE_FIGURES
        terminalreporter.write_line(
            f"hostile web: {figures.get('tried', 0)} cases tried, {figures.get('handled', 0)} "
            f"handled with a clear reason, {int(bool(figures.get('crashes')))} crashes; "
            f"{figures.get('kill_trials', 0)} SIGKILL trials, database intact after each"
        )
