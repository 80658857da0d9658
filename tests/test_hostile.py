"""The hostile web: every fault a feed or page can have, in one crawl, and crashes mid-write.

The figures (cases tried, handled with a clear reason, crashes) are printed at the end of the
test run by ``pytest_terminal_summary`` in conftest.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from crawler.sources import Source, save_sources
from tests.conftest import HOSTILE_FIGURES, NKWATCH, query, run_nkwatch
from tests.hostile_web import CASES, GOOD_FEED, KOREAN, HostileWeb

TIGHT_LIMITS = ["--set", "DOWNLOAD_TIMEOUT=3", "--set", "DOWNLOAD_MAXSIZE=5000000",
                "--set", "RETRY_TIMES=1", "--set", "NKWATCH_MAX_ENTRIES_PER_FEED=20",
                "--set", "DOWNLOAD_DELAY=0", "--set", "AUTOTHROTTLE_ENABLED=False"]  # fmt: skip


@pytest.fixture(scope="module")
def hostile_crawl(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    with HostileWeb() as web:
        sources = [Source(name=name, url=web.source_url(name), kind=case.kind, allow_private=True)
                   for name, case in CASES.items()]  # fmt: skip
        sources.append(Source(name="good", url=web.base + GOOD_FEED, allow_private=True))
        sources_file = save_sources(sources, folder / "sources.toml")
        db = folder / "hostile.db"
        result = run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file),
                             *TIGHT_LIMITS, check=False, timeout=240)  # fmt: skip
        yield web, db, result


def reason_lines(output: str, case: str, web: HostileWeb) -> list[str]:
    """Log lines that name the case's source or one of its pages."""
    return [line for line in output.splitlines() if f" {case}" in line or f"{case}:" in line]


def test_every_hostile_case_is_handled_with_a_reason(hostile_crawl):
    web, db, result = hostile_crawl
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Unhandled error" not in output
    stored = {row["source"]: row for row in query(db, "SELECT source, count(*) AS n, "
              "group_concat(status) AS statuses FROM articles GROUP BY source")}  # fmt: skip
    handled = []
    for name, case in CASES.items():
        reasons = case.reason if isinstance(case.reason, tuple) else (case.reason,)
        if reasons == ("stored",):
            ok = stored.get(name) and ("ok" in stored[name]["statuses"]
                                       or "offtopic" in stored[name]["statuses"])  # fmt: skip
        else:
            ok = any(r in output for r in reasons)
        if ok:
            handled.append(name)
    HOSTILE_FIGURES.update(tried=len(CASES), handled=len(handled), crashes=result.returncode != 0)
    assert sorted(handled) == sorted(CASES), f"not handled: {set(CASES) - set(handled)}"
    assert stored["good"]["n"] == 3, "one bad source stopped a good one"


def test_hostile_pages_leave_no_garbage_and_no_duplicates(hostile_crawl):
    web, db, _ = hostile_crawl
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    urls = [row[0] for row in conn.execute("SELECT url FROM articles")]
    assert len(urls) == len(set(urls))
    dupes = conn.execute(
        "SELECT count(*) FROM articles WHERE source = 'duplicate-guids'"
    ).fetchone()
    assert dupes[0] == 1, "one entry listed three times (and once with utm_) is stored once"
    binary = conn.execute(
        "SELECT status, text FROM articles WHERE response_url LIKE '%binary%'"
    ).fetchall()
    assert all(status == "failed" and not text for status, text in binary)
    korean = conn.execute("SELECT text FROM articles WHERE response_url LIKE '%euckr%'").fetchone()
    assert KOREAN in korean[0], "EUC-KR page declared as UTF-8 came out as mojibake"
    huge = conn.execute("SELECT count(*) FROM articles WHERE source = 'huge-feed'").fetchone()[0]
    assert huge == 20, "a 10,000-entry feed is cut to NKWATCH_MAX_ENTRIES_PER_FEED"
    assert web.hits.get("/pages/ratelimited.html") == 2, "429 was retried after Retry-After"
    assert not any(
        "etc/passwd" in (row[0] or "") for row in conn.execute("SELECT text FROM articles")
    )


def test_a_killed_crawl_never_corrupts_or_duplicates_and_a_rerun_completes(
    fresh_demo_web, tmp_path
):
    web = fresh_demo_web
    sources_file = save_sources(web.sources(kinds=("rss", "atom")), tmp_path / "sources.toml")
    db = tmp_path / "killed.db"
    slow = ["--set", "DOWNLOAD_DELAY=0.3", "--set", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
            "--set", "STORE_BATCH_SIZE=3", "--set", "AUTOTHROTTLE_ENABLED=False"]  # fmt: skip
    rng = random.Random(20261121)
    trials = 0
    for trial in range(20):
        if trial % 5 == 0 and db.exists():  # start over now and then, so kills land early too
            for suffix in ("", "-wal", "-shm"):
                (tmp_path / f"killed.db{suffix}").unlink(missing_ok=True)
        child = subprocess.Popen(
            [*NKWATCH, "crawl", "--db", str(db), "--sources", str(sources_file), *slow],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        time.sleep(rng.uniform(1.2, 4.0))
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        trials += 1
        if db.exists():
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                # killed before the first migration committed: no half-built schema
                assert tables == set(), f"partial schema after kill {trial}: {tables}"
            else:
                urls = [row[0] for row in conn.execute("SELECT url FROM articles")]
                assert len(urls) == len(set(urls)), f"duplicate rows after kill {trial}"
            conn.close()
    run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file))
    stored = {row["response_url"] for row in query(db, "SELECT response_url FROM articles")}
    assert stored == {web.url_of(a.key) for a in web.published_articles()}
    HOSTILE_FIGURES.update(kill_trials=trials)


def test_search_and_reads_work_while_a_crawl_writes(fresh_demo_web, tmp_path):
    web = fresh_demo_web
    sources_file = save_sources(web.sources(kinds=("rss", "atom")), tmp_path / "sources.toml")
    db = tmp_path / "busy.db"
    child = subprocess.Popen(
        [*NKWATCH, "crawl", "--db", str(db), "--sources", str(sources_file), "--set",
         "DOWNLOAD_DELAY=0.1", "--set", "STORE_BATCH_SIZE=2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    reads = 0
    try:
        deadline = time.time() + 60
        while child.poll() is None and time.time() < deadline:
            if db.exists():
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
                try:
                    conn.execute("SELECT count(*) FROM articles").fetchone()
                    reads += 1
                except sqlite3.OperationalError as error:  # the schema may not exist yet
                    assert "no such table" in str(error)
                finally:
                    conn.close()
            time.sleep(0.1)
    finally:
        child.wait(timeout=60)
    assert child.returncode == 0 and reads > 3
    assert len(query(db, "SELECT id FROM articles")) == len(web.published_articles())


def test_a_killed_extraction_worker_costs_only_its_pages(fresh_demo_web, tmp_path):
    """An extraction worker killed mid-crawl (the OOM killer, a crash in a C library): the crawl
    replaces the pool and goes on; the pages it held are not stored as failures, and the next
    crawl fetches them (the feeds' validators were not saved)."""
    import psutil

    web = fresh_demo_web
    sources_file = save_sources(web.sources(kinds=("rss", "atom")), tmp_path / "sources.toml")
    db = tmp_path / "worker.db"
    slow = ["--set", "DOWNLOAD_DELAY=0.2", "--set", "CONCURRENT_REQUESTS_PER_DOMAIN=1",
            "--set", "AUTOTHROTTLE_ENABLED=False", "--set", "EXTRACT_WORKERS=1"]  # fmt: skip
    child = subprocess.Popen([*NKWATCH, "crawl", "--db", str(db), "--sources", str(sources_file),
                              *slow], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    killed = []
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
        if not query_ok(db, "SELECT count(*) FROM articles", at_least=3):
            continue  # let a few pages through first, so the kill lands mid-crawl
        for process in psutil.Process(child.pid).children(recursive=True):
            parent = process.parent()
            if parent is not None and "forkserver" in " ".join(parent.cmdline()):
                process.kill()
                killed.append(process.pid)
    output, _ = child.communicate(timeout=120)
    assert killed, "no extraction worker was found to kill"
    assert child.returncode == 0, output[-3000:]
    assert "extraction worker died" in output
    first = query(db, "SELECT response_url, status FROM articles")
    assert all(row["status"] in ("ok", "offtopic") for row in first), "a dropped page was stored"
    run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file))
    stored = [row["response_url"] for row in query(db, "SELECT response_url FROM articles")]
    assert sorted(stored) == sorted({web.url_of(a.key) for a in web.published_articles()})


def query_ok(db, sql: str, at_least: int) -> bool:
    """Does ``sql`` (a count) reach ``at_least`` yet? False while the corpus is not there."""
    try:
        return bool(db.exists() and query(db, sql)[0][0] >= at_least)
    except sqlite3.Error:
        return False
