"""Distributed mode against a real redis-server on 127.0.0.1, workers and writer as processes.

Each worker and the writer is a real ``nkwatch`` process standing in for a machine; the crawls
are real child processes against the demo web. Skipped (with the reason) where redis-server or
the ``distributed`` extra is not installed; CI installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import NKWATCH, query, run_nkwatch, write_sources

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None,
                       reason="redis-server is not installed (apt-get install redis-server)"),
]  # fmt: skip
redis = pytest.importorskip("redis", reason="the 'distributed' extra (redis, rq) is not installed")
psutil = pytest.importorskip("psutil")

from crawler.items import ArticleItem  # noqa: E402
from pipelines.queue_store import (  # noqa: E402
    CRAWL_HISTORY,
    DEAD_LETTERS,
    ITEMS_STREAM,
    LEASE_PREFIX,
    WRITER_GROUP,
    item_to_record,
)

FAST = ["--set", "DOWNLOAD_DELAY=0", "--set", "AUTOTHROTTLE_ENABLED=False"]
SLOW = ["--set", "DOWNLOAD_DELAY=0.6", "--set", "AUTOTHROTTLE_ENABLED=False",
        "--set", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]  # fmt: skip
SUBSET = ["seoul-herald-all", "seoul-herald-north-korea", "seoul-herald-news-sitemap",
          "seoul-herald-section-business", "tokyo-report", "tokyo-report-section-tech"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on a free loopback port, stoppable and restartable."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 10, "redis-server to answer")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self):
        return redis.Redis.from_url(self.url)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture()
def broker(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


class Processes:
    """Workers and writers started by a test, all ended (with their children) at its end."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url, self.started = folder, url, []

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", "NKWATCH_BROKER": self.url, **(env or {})}
        process = subprocess.Popen([*NKWATCH, *args], stdout=log, stderr=subprocess.STDOUT,
                                   env=merged, cwd=self.folder)  # fmt: skip
        process.log_path = self.folder / f"{name}.log"
        self.started.append(process)
        return process

    def worker(self, name: str, sources: Path, *settings: str) -> subprocess.Popen:
        return self.start(name, "worker", "--sources", str(sources), "--name", name,
                          "--abandon-after", "3", "--scratch-dir", str(self.folder / "scratch"),
                          *settings)  # fmt: skip

    def writer(self, db: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
        return self.start(f"writer-{len(self.started)}", "writer", "--db", str(db), *args, env=env)

    def end_all(self) -> None:
        for process in self.started:
            tree = _tree(process.pid)
            for member in tree:
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    pass
            process.wait(timeout=10)


def _tree(pid: int) -> list:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture()
def processes(tmp_path, broker):
    started = Processes(tmp_path, broker.url)
    yield started
    started.end_all()


def history(client) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(CRAWL_HISTORY, 0, -1)]


def finished(client, source: str) -> list[dict]:
    return [r for r in history(client) if r["source"] == source and r["status"] != "skipped"]


def writer_caught_up(client) -> bool:
    return client.exists(ITEMS_STREAM) and client.xlen(ITEMS_STREAM) == 0


def crawl_child_of(pid: int):
    for member in _tree(pid)[1:]:
        try:
            if "crawl" in member.cmdline():
                return member
        except psutil.NoSuchProcess:
            continue
    return None


def enqueue(url: str, sources: Path, *names: str) -> str:
    return run_nkwatch("enqueue", "--broker", url, "--sources", str(sources), "--lease-seconds",
                       "3", *names).stdout  # fmt: skip


# --- 1. two workers and one writer: the same corpus as one machine ------------------------------


def test_two_workers_one_writer_store_what_one_machine_stores(
    fresh_demo_web, tmp_path, broker, processes
):
    sources = write_sources(fresh_demo_web, tmp_path)
    single = tmp_path / "single.db"
    run_nkwatch("crawl", "--db", str(single), "--sources", str(sources),
                *[f"--source={name}" for name in SUBSET], *FAST)  # fmt: skip

    corpus = tmp_path / "distributed.db"
    processes.worker("w1", sources, *FAST)
    processes.worker("w2", sources, *FAST)
    processes.writer(corpus)
    client = broker.client()
    from schedules.distributed import enqueue_crawl

    assert enqueue_crawl(client, "removed-source")  # a job for a source no longer configured
    enqueue(broker.url, sources, *SUBSET)
    wait_for(lambda: all(finished(client, name) for name in SUBSET), 60, "six crawls")
    wait_for(lambda: writer_caught_up(client), 20, "the writer to catch up")

    urls = [row["url"] for row in query(corpus, "SELECT url FROM articles")]
    assert len(urls) == len(set(urls)), "an article was stored twice"
    assert set(urls) == {row["url"] for row in query(single, "SELECT url FROM articles")}
    raw = "SELECT a.url, length(r.html_packed) > 100 AS kept FROM articles a JOIN raw_pages r " \
          "ON r.article_id = a.id"  # fmt: skip
    assert {r["url"] for r in query(corpus, raw) if r["kept"]} == set(urls), "raw pages kept"
    assert {r["worker"] for r in history(client) if r["status"] == "ok"} == {"w1", "w2"}
    removed = [r for r in history(client) if r["source"] == "removed-source"]
    assert removed and "'removed-source' is not in" in removed[0]["reason"]
    runs = query(corpus, "SELECT status, sources FROM runs")
    assert sorted(r["sources"] for r in runs) == sorted(f"sources:{n}" for n in SUBSET)
    assert query(corpus, "SELECT COUNT(*) AS n FROM sources_state WHERE etag IS NOT NULL")[0]["n"]

    status = run_nkwatch("queue", "--broker", broker.url).stdout
    assert "0 crawl jobs queued" in status and "Workers: 2" in status


# --- 2. a worker killed: its job moves on, never two crawls of one source at once ---------------


def test_worker_killed_with_its_crawl_the_job_is_retried_and_completes(
    fresh_demo_web, tmp_path, broker, processes
):
    sources = write_sources(fresh_demo_web, tmp_path)
    client = broker.client()
    doomed = processes.worker("doomed", sources, *SLOW)
    processes.writer(tmp_path / "corpus.db")
    enqueue(broker.url, sources, "tokyo-report")
    wait_for(lambda: crawl_child_of(doomed.pid), 20, "the crawl to start")
    time.sleep(2)  # mid-crawl
    for member in _tree(doomed.pid):
        member.kill()

    processes.worker("rescuer", sources, *FAST)
    record = wait_for(lambda: finished(client, "tokyo-report"), 40, "the retried crawl")[0]
    assert record["worker"] == "rescuer" and record["status"] == "ok"
    wait_for(lambda: writer_caught_up(client), 20, "the writer to catch up")
    stored = query(tmp_path / "corpus.db", "SELECT COUNT(*) AS n FROM articles")[0]["n"]
    assert stored == len(fresh_demo_web.published_articles("tokyo-report"))


def test_orphaned_crawl_is_never_overlapped_by_the_retry(
    fresh_demo_web, tmp_path, broker, processes
):
    sources = write_sources(fresh_demo_web, tmp_path)
    client = broker.client()
    doomed = processes.worker("doomed", sources, *SLOW)
    processes.writer(tmp_path / "corpus.db")
    enqueue(broker.url, sources, "tokyo-report")
    orphan = wait_for(lambda: crawl_child_of(doomed.pid), 20, "the crawl to start")
    os.kill(doomed.pid, signal.SIGKILL)  # only the worker's main process

    processes.worker("second", sources, *FAST)
    wait_for(lambda: not orphan.is_running(), 60, "the orphaned crawl to end")
    orphan_ended = time.time()
    records = wait_for(
        lambda: (r := history(client)) and len([x for x in r if x["worker"] == "second"]) and r,
        30, "the retried job to decide",
    )  # fmt: skip
    retry = next(r for r in records if r["worker"] == "second")
    original = next(r for r in records if r["worker"] == "doomed")
    assert original["status"] == "ok"  # the orphaned crawl finished its work
    assert retry["status"] == "skipped" and "already crawled" in retry["reason"]
    assert retry["decided_at"] >= original["ended_at"]  # waited for the lease, no overlap
    assert time.time() - orphan_ended < 30
    assert not list(client.scan_iter(match=LEASE_PREFIX + "*"))


# --- 3. the writer killed between commit and acknowledgement -----------------------------------


def _item(number: int, source: str = "test-source") -> ArticleItem:
    return ArticleItem(
        url=f"http://127.0.0.1:9/{number}.html", response_url=f"http://127.0.0.1:9/{number}.html",
        source=source, fetched_at="2025-01-01T00:00:00Z", http_status=200,
        body=f"<html><p>article {number}</p></html>".encode(), title=f"Article {number}",
        text=f"Article number {number} reports a distinct event with its own words {number}.",
        word_count=12,
    )  # fmt: skip


def test_writer_killed_after_commit_loses_and_duplicates_nothing(tmp_path, broker, processes):
    client = broker.client()
    for number in range(30):
        client.xadd(ITEMS_STREAM, item_to_record(_item(number)))
    corpus = tmp_path / "corpus.db"
    crashed = processes.writer(corpus, "--batch-size", "10",
                               env={"NKWATCH_WRITER_CRASH_AFTER_COMMIT": "1"})  # fmt: skip
    assert crashed.wait(timeout=30) == -signal.SIGKILL
    assert query(corpus, "SELECT COUNT(*) AS n FROM articles")[0]["n"] == 10  # committed
    assert client.xpending(ITEMS_STREAM, WRITER_GROUP)["pending"] == 10  # but not acknowledged

    restarted = processes.writer(corpus, "--batch-size", "10", "--idle-exit", "1")
    assert restarted.wait(timeout=30) == 0
    urls = [row["url"] for row in query(corpus, "SELECT url FROM articles")]
    assert sorted(urls) == sorted(_item(n).url for n in range(30))
    assert client.xlen(ITEMS_STREAM) == 0
    assert client.xpending(ITEMS_STREAM, WRITER_GROUP)["pending"] == 0
    assert "20 new articles stored, 10 already present" in restarted.log_path.read_text()


def test_poison_items_go_to_dead_letters_and_the_rest_is_stored(tmp_path, broker, processes):
    client = broker.client()
    client.xadd(ITEMS_STREAM, item_to_record(_item(1)))
    client.xadd(ITEMS_STREAM, {"kind": "item", "item": "{not json"})
    client.xadd(ITEMS_STREAM, item_to_record(_item(2, source=None)))  # source is NOT NULL
    client.xadd(ITEMS_STREAM, {"kind": "mystery"})
    client.xadd(ITEMS_STREAM, item_to_record(_item(3)))
    corpus = tmp_path / "corpus.db"
    writer = processes.writer(corpus, "--idle-exit", "1")
    assert writer.wait(timeout=30) == 0
    assert query(corpus, "SELECT COUNT(*) AS n FROM articles")[0]["n"] == 2
    reasons = [json.loads(raw)["reason"] for raw in client.lrange(DEAD_LETTERS, 0, -1)]
    assert len(reasons) == 3
    assert any("undecodable item record" in r for r in reasons)
    assert any("IntegrityError" in r and "source" in r for r in reasons)
    assert any("unknown record kind 'mystery'" in r for r in reasons)
    output = writer.log_path.read_text()
    assert output.count("writer: dead letter") == 3 and "Traceback" not in output
    listing = run_nkwatch("queue", "--broker", broker.url, "--dead-letters").stdout
    assert "3 dead letters" in listing and "unknown record kind" in listing


# --- bad input: Redis unreachable, then restarted mid-run --------------------------------------


def test_redis_down_then_restarted_workers_and_writer_keep_going(
    fresh_demo_web, tmp_path, processes
):
    sources = write_sources(fresh_demo_web, tmp_path)
    server = RedisServer(tmp_path)
    processes.url = server.url
    worker = processes.worker("patient", sources, *FAST)
    writer = processes.writer(tmp_path / "corpus.db")
    wait_for(lambda: "unreachable" in writer.log_path.read_text(), 20, "the writer's report")
    wait_for(lambda: "unreachable" in worker.log_path.read_text(), 20, "the worker's report")
    server.start()
    try:
        client = server.client()
        enqueue(server.url, sources, "tokyo-report")
        wait_for(lambda: finished(client, "tokyo-report"), 40, "a crawl after Redis came up")
        wait_for(lambda: writer_caught_up(client), 20, "the writer to catch up")
        server.stop()  # restarted mid-run: everything in Redis is gone (no persistence here)
        time.sleep(1)
        server.start()
        client = server.client()
        enqueue(server.url, sources, "tokyo-report-section-tech")
        wait_for(lambda: finished(client, "tokyo-report-section-tech"), 40, "a crawl after restart")
        wait_for(lambda: writer_caught_up(client), 20, "the writer to catch up")
    finally:
        server.stop()
    urls = [r["url"] for r in query(tmp_path / "corpus.db", "SELECT url FROM articles")]
    assert urls and len(urls) == len(set(urls))
    for process in (worker, writer):
        output = process.log_path.read_text()
        assert "Traceback" not in output
    assert "seeded" in writer.log_path.read_text()  # the seen set rebuilt from the corpus


# --- 4. no broker, no Redis --------------------------------------------------------------------


def test_without_redis_installed_nkwatch_works_and_distributed_commands_say_why(tmp_path):
    blocked = "import sys; sys.modules['redis'] = None; sys.modules['rq'] = None; "
    run = [sys.executable, "-c", blocked + "from crawler.cli import main; main()"]
    help_text = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "worker" in help_text.stdout
    refused = subprocess.run([*run, "writer", "--broker", "redis://127.0.0.1:9/0", "--db",
                              str(tmp_path / "c.db")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1
    assert "pip install 'nkwatch[distributed]'" in refused.stderr
    assert "Traceback" not in refused.stderr
