"""The crawl daemon for real: ``nkwatch run`` child processes, APScheduler, crawl children, the demo web.

Intervals are made seconds with ``--interval-scale 0.05`` (the demo sources' 1 minute becomes
3 s), the documented test-only knob.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crawler.sources import save_sources
from schedules.adaptive import interval_minutes, next_poll_factor
from schedules.jobs import crawl_process_alive
from tests.conftest import NKWATCH, query, run_nkwatch

SCALE = "0.05"


class Daemon:
    """A ``nkwatch run`` process whose log goes to a file the test can read."""

    def __init__(self, db: Path, sources: Path, *args: str) -> None:
        self.log_path = db.with_suffix(".daemon.log")
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        command = [*NKWATCH, "run", "--db", str(db), "--sources", str(sources),
                   "--interval-scale", SCALE, "--reload-seconds", "0.5", *args]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip

    def text(self) -> str:
        return self.log_path.read_text("utf-8")

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM; returns how long the daemon took to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture()
def daemons():
    started: list[Daemon] = []

    def start(*args, **kwargs) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def wait_for(condition, timeout: float, what: str, daemon: Daemon | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if daemon is not None and daemon.process.poll() is not None:
            break
        time.sleep(0.2)
    log = daemon.text()[-3000:] if daemon else ""
    raise AssertionError(f"gave up waiting for {what}\n{log}")


def sources_of(web, folder: Path, names: list[str]) -> Path:
    return save_sources([s for s in web.sources() if s.name in names], folder / "sources.toml")


def runs(db: Path) -> list:
    if not db.exists():
        return []
    try:
        return query(db, "SELECT * FROM runs ORDER BY id")
    except Exception:  # the corpus is being created by the daemon's first crawl
        return []


def stored_urls(db: Path) -> list[str]:
    return [row["response_url"] for row in query(db, "SELECT response_url FROM articles")]


def integrity(db: Path) -> str:
    return query(db, "PRAGMA integrity_check")[0][0]


def test_published_article_is_stored_by_the_next_scheduled_run(fresh_demo_web, tmp_path, daemons):
    db = tmp_path / "corpus.db"
    exports = tmp_path / "exports"
    exports.mkdir()
    daemon = daemons(db, sources_of(fresh_demo_web, tmp_path, ["seoul-herald-all"]),
                     "--export-consumer", "analyst", "--export-out",
                     str(exports / "new-{run_id}.jsonl"))  # fmt: skip
    wait_for(lambda: any(r["status"] == "ok" for r in runs(db)), 40, "the first crawl", daemon)
    first_runs = len(runs(db))
    article = fresh_demo_web.publish("seoul-herald/startups-warned-over-fake-remote-developers")
    url = fresh_demo_web.url_of(article.key)
    assert url not in stored_urls(db)

    def run_that_stored():
        later = [r for r in runs(db) if r["id"] > first_runs and r["status"] == "ok"]
        return next((r["id"] for r in later if r["new_articles"]), None)

    storing_run = wait_for(run_that_stored, 40, "a scheduled run that stores it", daemon)
    assert url in stored_urls(db)
    assert stored_urls(db).count(url) == 1

    seconds = daemon.terminate()
    assert daemon.process.returncode == 0
    log = daemon.text()
    assert "crawl #1 started: seoul-herald-all" in log
    assert "new articles" in log and "daemon stopped. Summary:" in log
    history = json.loads(run_nkwatch("runs", "--db", str(db), "--json").stdout)
    assert {run["status"] for run in history} <= {"ok"}
    assert sum(run["new_articles"] for run in history) == len(stored_urls(db))
    assert seconds < 15
    exported = [json.loads(line) for path in sorted(exports.glob("new-*.jsonl"))
                for line in path.read_text("utf-8").splitlines()]  # fmt: skip
    everything = run_nkwatch("export", "--db", str(db)).stdout.splitlines()
    assert sorted(row["id"] for row in exported) == sorted(json.loads(r)["id"] for r in everything)
    assert url in (exports / f"new-{storing_run}.jsonl").read_text("utf-8"), "exported after"


def test_crawl_past_its_time_limit_is_ended_and_recorded(fresh_demo_web, tmp_path):
    db = tmp_path / "corpus.db"
    sources = sources_of(fresh_demo_web, tmp_path, ["seoul-herald-all"])
    result = run_nkwatch("run", "--db", str(db), "--sources", str(sources), "--once",
                         "--crawl-timeout", "2", "--set", "DOWNLOAD_DELAY=1",
                         "--set", "AUTOTHROTTLE_ENABLED=False", check=False)  # fmt: skip
    assert result.returncode == 1
    (run,) = runs(db)
    assert run["status"] == "failed" and run["reason"].startswith("timed out after 2 s")
    assert integrity(db) == "ok"
    assert "timed out" in query(db, "SELECT last_error FROM sources_state")[0]["last_error"]


def test_killed_crawl_is_recorded_failed_and_the_next_run_catches_up(
    fresh_demo_web, tmp_path, daemons
):
    db = tmp_path / "corpus.db"
    names = ["seoul-herald-all", "tokyo-report"]
    expected = {fresh_demo_web.url_of(a.key) for a in fresh_demo_web.published_articles()
                if a.outlet in ("seoul-herald", "tokyo-report")}  # fmt: skip
    slow = ["--set", "DOWNLOAD_DELAY=0.3", "--set", "AUTOTHROTTLE_ENABLED=False"]
    daemon = daemons(db, sources_of(fresh_demo_web, tmp_path, names), *slow)

    def crawl_midway():
        running = [r for r in runs(db) if r["status"] == "running" and r["pid"]]
        return running and stored_urls(db) and running[0]

    victim = wait_for(crawl_midway, 40, "a crawl that has stored something", daemon)
    os.kill(victim["pid"], signal.SIGKILL)
    stored_before = set(stored_urls(db))
    assert stored_before < expected, "killed before it had everything"

    def settled():
        row = query(db, "SELECT * FROM runs WHERE id = ?", [victim["id"]])[0]
        return row["status"] != "running" and row

    killed = wait_for(settled, 20, "the killed run to be recorded", daemon)
    assert killed["status"] == "failed"
    assert "killed by signal 9" in killed["reason"] and "SIGKILL" in killed["reason"]
    assert killed["ended_at"]

    def caught_up():  # each source's next run may come in its own batch: wait for all of them
        after = any(r["status"] == "ok" and r["id"] > victim["id"] for r in runs(db))
        return after and set(stored_urls(db)) == expected

    wait_for(caught_up, 60, "the following runs to store what was missed", daemon)
    stored = stored_urls(db)
    assert len(stored) == len(set(stored)), "an article was stored twice"
    assert f"crawl #{victim['id']} FAILED" in daemon.text()
    daemon.terminate()


def test_a_crawl_closes_when_its_daemon_is_killed(fresh_demo_web, tmp_path, daemons):
    """SIGKILL to the daemon (the OOM killer, kill -9) must not leave its crawl running on with
    nobody to time it out or record it; the next daemon finishes the job."""
    db = tmp_path / "corpus.db"
    names = ["seoul-herald-all", "tokyo-report"]
    expected = {fresh_demo_web.url_of(a.key) for a in fresh_demo_web.published_articles()
                if a.outlet in ("seoul-herald", "tokyo-report")}  # fmt: skip
    slow = ["--set", "DOWNLOAD_DELAY=1", "--set", "AUTOTHROTTLE_ENABLED=False",
            "--set", "CONCURRENT_REQUESTS=1"]  # fmt: skip
    sources = sources_of(fresh_demo_web, tmp_path, names)
    daemon = daemons(db, sources, *slow)

    def crawl_midway():
        running = [r for r in runs(db) if r["status"] == "running" and r["pid"]]
        return running and stored_urls(db) and running[0]

    orphan = wait_for(crawl_midway, 40, "a crawl that has stored something", daemon)
    daemon.kill()
    wait_for(lambda: not crawl_process_alive(orphan["pid"]), 15,
             "the crawl to close after its daemon died")  # fmt: skip
    assert integrity(db) == "ok"
    assert set(stored_urls(db)) < expected, "the crawl went on to the end"
    row = query(db, "SELECT status, reason FROM runs WHERE id = ?", [orphan["id"]])[0]
    assert row["status"] == "failed" and "parent gone" in (row["reason"] or "")

    second = daemons(db, sources)
    wait_for(lambda: set(stored_urls(db)) == expected, 60, "the next daemon to catch up", second)
    stored = stored_urls(db)
    assert len(stored) == len(set(stored)), "an article was stored twice"
    second.terminate()


def test_sigterm_mid_crawl_stops_the_daemon_cleanly(fresh_demo_web, tmp_path, daemons):
    db = tmp_path / "corpus.db"
    slow = ["--set", "DOWNLOAD_DELAY=0.5", "--set", "AUTOTHROTTLE_ENABLED=False"]
    sources = sources_of(fresh_demo_web, tmp_path, ["seoul-herald-all", "tokyo-report"])
    daemon = daemons(db, sources, "--stop-grace", "2", *slow)
    wait_for(lambda: stored_urls(db) if runs(db) else None, 40, "a crawl under way", daemon)

    seconds = daemon.terminate()
    assert daemon.process.returncode == 0
    assert seconds < 20  # 2 s grace, then SIGTERM to the crawl, which flushes and closes
    assert integrity(db) == "ok"
    rows = runs(db)
    assert rows and all(r["status"] in ("ok", "failed") for r in rows), "no run left running"
    stopped = rows[-1]
    assert stopped["status"] == "failed" and stopped["reason"].startswith("stopped:")
    assert stopped["ended_at"]
    assert "SIGTERM: no new crawls" in daemon.text()
    assert "crawls:          1 (0 ok, 1 failed)" in daemon.text()


def test_second_daemon_on_the_same_corpus_is_refused(tmp_path, daemons):
    db = tmp_path / "corpus.db"
    sources = tmp_path / "sources.toml"
    sources.write_text("# nothing watched yet\n", "utf-8")
    daemon = daemons(db, sources)
    wait_for(lambda: "daemon started" in daemon.text(), 20, "the daemon", daemon)

    second = run_nkwatch("run", "--db", str(db), "--sources", str(sources), check=False)
    assert second.returncode != 0
    message = second.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in second.stderr
    assert "already runs" in message and str(daemon.process.pid) in message

    status = json.loads(run_nkwatch("status", "--db", str(db), "--json").stdout)
    assert status["daemon"]["pid"] == daemon.process.pid
    assert "running, pid" in run_nkwatch("status", "--db", str(db)).stdout

    daemon.terminate()
    assert "not running" in run_nkwatch("status", "--db", str(db)).stdout
    again = run_nkwatch("run", "--db", str(db), "--sources", str(sources), "--once")
    assert again.returncode == 0, "the lock is released when the daemon stops"


def test_sources_file_changes_are_picked_up_and_a_broken_file_is_survived(
    fresh_demo_web, tmp_path, daemons
):
    db = tmp_path / "corpus.db"
    sources = tmp_path / "sources.toml"
    sources.write_text("# nothing watched yet\n", "utf-8")
    daemon = daemons(db, sources)
    wait_for(lambda: "daemon started" in daemon.text(), 20, "the daemon", daemon)

    sources_of(fresh_demo_web, tmp_path, ["tokyo-report"])  # what `sources add` does: replace
    wait_for(lambda: any(r["status"] == "ok" for r in runs(db)), 40, "a crawl of it", daemon)
    assert "sources reloaded: 1 scheduled (added tokyo-report" in daemon.text()
    assert all(row["source"] == "tokyo-report" for row in query(db, "SELECT source FROM articles"))

    broken = tmp_path / "broken.toml"
    broken.write_text('[[source]]\nname = "broken\n', "utf-8")
    os.replace(broken, sources)  # as an editor saves
    wait_for(lambda: "keeping the last good list (1 sources)" in daemon.text(), 10,
             "the broken file to be reported", daemon)  # fmt: skip
    crawls = len(runs(db))
    wait_for(lambda: len(runs(db)) > crawls, 20, "crawls to go on with the last good list", daemon)
    assert daemon.text().count("keeping the last good list") == 1, "reported once, not per poll"
    assert daemon.process.poll() is None
    daemon.terminate()


def test_adaptive_polling_backs_off_when_quiet_and_returns_when_busy():
    factor, seen = 1.0, []
    for new_articles in (0, 0, 0, 0, 5, 3, 3, 0):
        factor = next_poll_factor(factor, new_articles, crawl_ok=True)
        seen.append(factor)
    assert seen == [2.0, 4.0, 4.0, 4.0, 1.0, 0.5, 0.5, 1.0]
    assert next_poll_factor(4.0, 0, crawl_ok=False) == 4.0, "a failure is not a quiet feed"
    assert interval_minutes(60, 4.0) == 240 and interval_minutes(60, 0.5) == 30
    assert interval_minutes(1, 0.5) == 1, "never more often than once a minute"
