"""Distributed mode: "crawl this source" jobs on a Redis queue (RQ), per-source leases, workers.

Opt-in: nothing here runs, and ``redis``/``rq`` are never imported, unless a broker URL is given
(``--broker redis://...`` or ``NKWATCH_BROKER``). The topology is one scheduler that enqueues,
N workers that crawl, one writer that stores (``pipelines.writer``), and one Redis.

Why RQ: a job here is a whole crawl of one source in a child process, not a message per request,
and RQ's fork-per-job worker, started-job registry and retries of abandoned jobs fit that shape;
its registries are also what ``status_figures`` reports. (Dramatiq would serve as well, but its
Redis broker keeps less state we can show, and its actors are built for many small messages.)

At most one crawl per source runs at a time: before starting the crawl child a job takes the
source's lease (``SET NX PX``, a random token), and the lease is renewed every third of its
life by the job *and* by the crawl child itself (``pipelines.queue_store``), so a crawl whose
worker died keeps its source locked until it ends; the child also stops itself at the crawl cap
(``CLOSESPIDER_TIMEOUT``). A job whose worker died without a heartbeat for ``abandon_after``
seconds is put back on the queue by RQ and waits there for the lease, then skips the crawl if
the orphaned one completed it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.corpus import open_corpus, utc_now
from pipelines.dates import to_utc_iso
from pipelines.queue_store import (
    BROKER_ENV,
    CRAWL_HISTORY,
    DEAD_LETTERS,
    DONE_PREFIX,
    ITEMS_STREAM,
    LEASE_PREFIX,
    QUEUED_PREFIX,
    SEEN_KEYS,
    VALIDATORS,
    WRITER_GROUP,
    BrokerError,
    DistributedExtraMissing,
    connect,
    describe_redis_error,
    is_redis_error,
    lease_key,
    renew_lease,
)

logger = logging.getLogger(__name__)

QUEUE_NAME = "nkwatch-crawls"
HISTORY_LENGTH = 1000
RETRIES_AFTER_WORKER_DEATH = 3
CLOSE_GRACE_SECONDS = 60.0  # beyond the crawl cap: flushing, closing, the kill's grace

_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def broker_url(explicit: str | None = None) -> str | None:
    """The broker in force: the option, else ``NKWATCH_BROKER``, else None (single machine)."""
    return explicit or os.environ.get(BROKER_ENV) or None


# --- leases ------------------------------------------------------------------------------------


def acquire_lease(conn, source: str, token: str, seconds: float) -> bool:
    return bool(conn.set(lease_key(source), token, nx=True, px=int(seconds * 1000)))


def release_lease(conn, source: str, token: str) -> bool:
    return bool(conn.eval(_RELEASE, 1, lease_key(source), token))


class LeaseKeeper:
    """Renews a lease every third of its life in a thread, until stopped."""

    def __init__(self, conn, source: str, token: str, seconds: float) -> None:
        self.conn, self.source, self.token, self.seconds = conn, source, token, seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{source}")

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _renew(self) -> None:
        while not self.stopped.wait(self.seconds / 3):
            try:
                if not renew_lease(self.conn, self.source, self.token, self.seconds):
                    logger.warning("lease on %s was lost (expired while Redis was away?)",
                                   self.source)  # fmt: skip
                    acquire_lease(self.conn, self.source, self.token, self.seconds)
            except Exception as error:  # Redis away: keep trying, the crawl goes on
                if not is_redis_error(error):
                    raise
                logger.warning("lease on %s not renewed: %s", self.source,
                               describe_redis_error(error))  # fmt: skip


# --- enqueueing ----------------------------------------------------------------------------------


@dataclass
class JobPolicy:
    """How long a crawl may run and how soon a dead worker's job is given to another."""

    crawl_seconds: float = 1800.0
    lease_seconds: float = 30.0  # renewed every third of this while the crawl lives
    abandon_after: float = 60.0  # no heartbeat this long: the job goes back on the queue

    @property
    def job_timeout(self) -> int:
        """RQ's own limit, past ours: the job itself ends the crawl at ``crawl_seconds``."""
        return int(self.crawl_seconds + 2 * CLOSE_GRACE_SECONDS + self.lease_wait_seconds)

    @property
    def lease_wait_seconds(self) -> float:
        """How long a job waits for a source another crawl holds: that crawl's longest life."""
        return self.crawl_seconds + CLOSE_GRACE_SECONDS + self.lease_seconds


def crawl_queue(conn):
    from rq import Queue

    return Queue(QUEUE_NAME, connection=conn)


def enqueue_crawl(conn, source: str, policy: JobPolicy | None = None) -> str | None:
    """Put one "crawl this source" job on the queue; None if one already waits or runs."""
    from rq import Retry

    policy = policy or JobPolicy()
    job_id = f"crawl-{source}-{uuid.uuid4().hex[:12]}"
    marker_seconds = int(policy.job_timeout * (RETRIES_AFTER_WORKER_DEATH + 2))
    if not conn.set(QUEUED_PREFIX + source, job_id, nx=True, ex=marker_seconds):
        return None
    crawl_queue(conn).enqueue(
        crawl_source_job,
        source,
        policy.crawl_seconds,
        policy.lease_seconds,
        job_id=job_id,
        job_timeout=policy.job_timeout,
        retry=Retry(max=RETRIES_AFTER_WORKER_DEATH),
        result_ttl=86400,
        failure_ttl=7 * 86400,
        description=f"crawl {source}",
    )
    return job_id


def enqueue_due(url: str, names: list[str], policy: JobPolicy | None = None) -> dict[str, str]:
    """The daemon's hook: one job per due source; returns source -> what happened, one line each.

    Never raises for Redis: an unreachable broker is reported per source, and the daemon goes on
    (the source is due again at its next turn).
    """
    try:
        conn = connect(url)
        return {
            name: (f"queued as {job_id}" if (job_id := enqueue_crawl(conn, name, policy))
                   else "not queued: a job for it already waits or runs")
            for name in names
        }  # fmt: skip
    except BrokerError as error:
        return dict.fromkeys(names, f"not queued: {error}")
    except Exception as error:
        if not is_redis_error(error):
            raise
        return dict.fromkeys(names, f"not queued: broker {url}: {describe_redis_error(error)}")


# --- the worker ----------------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    """What a worker needs to run crawl jobs; set in the worker before it forks job processes."""

    broker: str
    sources_file: str | None = None
    scratch_dir: Path = field(default_factory=lambda: Path(".nkwatch-worker"))
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    settings: list[str] = field(default_factory=list)  # --set KEY=VALUE for every crawl
    abandon_after: float = 60.0

    @property
    def scratch_db(self) -> Path:
        """The crawl's own small database on this machine: run rows, boilerplate, failures."""
        return self.scratch_dir / f"{self.name}.db"


_worker_config: WorkerConfig | None = None


def crawl_settings(config: WorkerConfig, source: str, token: str, crawl_seconds: float,
                   lease_seconds: float) -> list[str]:  # fmt: skip
    """The crawl child's overrides: queue store instead of the store, Redis seen check, lease."""
    from crawler import settings as defaults

    pipelines = {
        ("pipelines.queue_store.QueueStorePipeline" if path == "pipelines.store.StorePipeline"
         else path): order
        for path, order in defaults.ITEM_PIPELINES.items()
    }  # fmt: skip
    middlewares = {
        ("schedules.distributed.RedisSeenUrlMiddleware"
         if path == "crawler.middlewares.SeenUrlMiddleware" else path): order
        for path, order in defaults.DOWNLOADER_MIDDLEWARES.items()
    }  # fmt: skip
    return [
        f"ITEM_PIPELINES={json.dumps(pipelines)}",
        f"DOWNLOADER_MIDDLEWARES={json.dumps(middlewares)}",
        f"NKWATCH_BROKER={config.broker}",
        f"NKWATCH_LEASE_SOURCE={source}",
        f"NKWATCH_LEASE_TOKEN={token}",
        f"NKWATCH_LEASE_SECONDS={lease_seconds}",
        f"CLOSESPIDER_TIMEOUT={int(crawl_seconds)}",
        *config.settings,
    ]


def crawl_source_job(source: str, crawl_seconds: float, lease_seconds: float) -> dict[str, Any]:
    """One RQ job: crawl ``source`` once in a child process, holding its lease; never raises
    for an outcome a person should read (it is returned, logged and kept in the history)."""
    from rq import get_current_job

    config = _worker_config
    if config is None:
        raise RuntimeError("crawl_source_job runs only inside `nkwatch worker`")
    job = get_current_job()
    conn = connect(config.broker)
    record = {"source": source, "job_id": job.id, "worker": config.name, "status": "skipped",
              "queued_at": to_utc_iso(job.enqueued_at), "decided_at": utc_now()}  # fmt: skip
    try:
        problem = _unknown_source(config, source)
        if problem:
            record["reason"] = problem
        elif conn.exists(DONE_PREFIX + job.id):
            record["reason"] = "already crawled by an earlier attempt whose worker died"
        else:
            _crawl_under_lease(conn, config, job.id, source, crawl_seconds, lease_seconds, record)
    finally:
        conn.delete(QUEUED_PREFIX + source)
        record["ended_at"] = record.get("ended_at") or utc_now()
        _remember(conn, record)
        logger.info("job %s: %s %s%s", job.id, source, record["status"],
                    f" ({record['reason']})" if record.get("reason") else "")  # fmt: skip
    return record


def _crawl_under_lease(conn, config: WorkerConfig, job_id: str, source: str,
                       crawl_seconds: float, lease_seconds: float, record: dict) -> None:  # fmt: skip
    policy = JobPolicy(crawl_seconds, lease_seconds)
    token = f"{config.name}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + policy.lease_wait_seconds
    while not acquire_lease(conn, source, token, lease_seconds):
        if time.monotonic() >= deadline:
            record["reason"] = f"source {source} stayed leased by another crawl; not crawled"
            return
        time.sleep(0.25)
    record["decided_at"] = utc_now()
    try:
        if conn.exists(DONE_PREFIX + job_id):  # the orphaned crawl we waited for was this job's
            record["reason"] = "already crawled by an earlier attempt whose worker died"
            return
        with LeaseKeeper(conn, source, token, lease_seconds):
            _run_child(conn, config, job_id, source, token, policy, record)
    finally:
        release_lease(conn, source, token)


def _run_child(conn, config: WorkerConfig, job_id: str, source: str, token: str,
               policy: JobPolicy, record: dict) -> None:  # fmt: skip
    from schedules.jobs import CrawlLimits, run_crawl_child

    config.scratch_dir.mkdir(parents=True, exist_ok=True)
    prime_validators(conn, config.scratch_db, source)
    record["started_at"] = utc_now()
    started = time.monotonic()
    limits = CrawlLimits(timeout_seconds=policy.crawl_seconds + CLOSE_GRACE_SECONDS / 2,
                         stop_grace_seconds=CLOSE_GRACE_SECONDS / 2)  # fmt: skip
    outcome = run_crawl_child(
        config.scratch_db,
        Path(config.sources_file) if config.sources_file else _shipped_sources(config),
        [source],
        limits,
        threading.Event(),
        settings=crawl_settings(config, source, token, policy.crawl_seconds, policy.lease_seconds),
    )
    conn.set(DONE_PREFIX + job_id, record["worker"], ex=7 * 86400)
    record.update(status=outcome.status, reason=outcome.reason, ended_at=utc_now(),
                  pid=None, requests=outcome.requests, errors=outcome.errors,
                  seconds=round(time.monotonic() - started, 1))  # fmt: skip
    conn.xadd(ITEMS_STREAM, {"kind": "crawl", "source": source,
                             "record": json.dumps(crawl_record(config.scratch_db, source, record))})  # fmt: skip


def _shipped_sources(config: WorkerConfig) -> Path:
    """``nkwatch crawl`` needs a file: the shipped list, written once into the scratch folder."""
    from crawler.sources import shipped_sources_text

    path = config.scratch_dir / "shipped-sources.toml"
    if not path.exists():
        path.write_text(shipped_sources_text(), encoding="utf-8")
    return path


def _unknown_source(config: WorkerConfig, source: str) -> str | None:
    from crawler.sources import SourcesError, load_sources

    try:
        names = {s.name for s in load_sources(config.sources_file)}
    except SourcesError as error:
        return f"sources file unreadable on worker {config.name}: {error}"
    if source not in names:
        where = config.sources_file or "the shipped sources"
        return f"source {source!r} is not in {where} on worker {config.name} (removed?)"
    return None


def prime_validators(conn, scratch_db: Path, source: str) -> None:
    """Give the crawl the feed's ETag/Last-Modified the writer last committed, whichever worker
    crawled it: the conditional-GET middleware reads them from the crawl's database."""
    raw = conn.hget(VALIDATORS, source)
    validators = json.loads(raw) if raw else {}
    db = open_corpus(scratch_db)
    try:
        with db.atomic():
            db["sources_state"].upsert(
                {"source": source, "etag": validators.get("etag"),
                 "last_modified": validators.get("last_modified")},
                pk="source",
            )  # fmt: skip
    finally:
        db.close()


def crawl_record(scratch_db: Path, source: str, record: dict) -> dict:
    """What the writer applies after the crawl's items: the outcome, the source's validators
    (as the crawl judged them: kept only from a complete crawl) and its failed article URLs."""
    db = open_corpus(scratch_db)
    try:
        state = db.execute(
            "SELECT etag, last_modified, last_error FROM sources_state WHERE source = ?", [source]
        ).fetchone()
        failures = db.execute(
            "SELECT url, reason FROM fetch_failures WHERE source = ? AND last_attempt_at >= ?",
            [source, record.get("started_at") or ""],
        ).fetchall()
    finally:
        db.close()
    etag, last_modified, last_error = state or (None, None, None)
    return {**record, "etag": etag, "last_modified": last_modified,
            "source_error": last_error if record["status"] == "ok" else record.get("reason"),
            "failures": [list(row) for row in failures]}  # fmt: skip


def _remember(conn, record: dict) -> None:
    with conn.pipeline() as pipe:
        pipe.lpush(CRAWL_HISTORY, json.dumps(record))
        pipe.ltrim(CRAWL_HISTORY, 0, HISTORY_LENGTH - 1)
        pipe.execute()


def make_worker(conn, config: WorkerConfig):
    """An RQ worker whose dead jobs go back on the queue after ``abandon_after`` seconds.

    RQ gives a silent job 60 s beyond its heartbeat interval before calling it abandoned; the
    margin is ours to set here, so a crashed machine's crawl moves on as soon as we choose.
    """
    from rq import Worker

    monitor = max(1, min(30, int(config.abandon_after / 3)))
    margin = max(1, int(config.abandon_after - monitor))

    class CrawlWorker(Worker):
        def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
            return monitor + margin

    return CrawlWorker(
        [crawl_queue(conn)],
        connection=conn,
        name=config.name,
        job_monitoring_interval=monitor,
        maintenance_interval=max(2, int(config.abandon_after / 2)),
        worker_ttl=15 + max(2, min(60, int(config.abandon_after / 2))),
    )


def run_worker(config: WorkerConfig, *, burst: bool = False, say=print) -> None:
    """Run crawl jobs until stopped; an unreachable or restarted Redis is reported in one line
    and waited out, never the end of the worker."""
    global _worker_config
    _worker_config = config
    _quiet_rq_tracebacks()
    pause = 1.0
    while True:
        try:
            conn = connect(config.broker)
            worker = make_worker(conn, config)
            say(f"worker {config.name}: taking crawl jobs from {config.broker} ({QUEUE_NAME})")
            pause = 1.0
            worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
            if burst or worker._stop_requested or worker._shutdown_requested_date:
                return
            raise BrokerError(f"broker {config.broker}: connection lost")
        except DistributedExtraMissing:
            raise
        except BrokerError as error:
            say(f"worker {config.name}: {error}; retrying in {pause:g} s")
        except ValueError as error:  # RQ: the name is still registered by a worker just gone
            say(f"worker {config.name}: {error}; retrying in {pause:g} s")
        except Exception as error:
            if not is_redis_error(error):
                raise
            say(f"worker {config.name}: broker {config.broker}: {describe_redis_error(error)}; "
                f"retrying in {pause:g} s")  # fmt: skip
        time.sleep(pause)
        pause = min(30.0, pause * 2)


class _OneLine(logging.Filter):
    """RQ logs a traceback when it loses Redis; people get the one line that says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({describe_redis_error(record.exc_info[1])})"
            record.args = ()
            record.exc_info = None
        return True


def _quiet_rq_tracebacks() -> None:
    for name in ("rq.worker", "rq.worker.base", "rq"):
        logging.getLogger(name).addFilter(_OneLine())


# --- the seen check across workers -------------------------------------------------------------


class RedisSeenUrlMiddleware:
    """The seen-URL check of a distributed crawl: asks the writer's set of committed url_keys.

    The writer adds each stored article's ``url`` (and its rel=canonical when on the same
    site, as ``knows_url`` counts it) after its commit, so every worker sees what any worker
    stored. The give-up rule for URLs failing with 4xx reads this machine's crawl database.
    Settings: ``NKWATCH_BROKER``.
    """

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.conn = connect(crawler.settings.get("NKWATCH_BROKER"), check=False)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        from scrapy.exceptions import IgnoreRequest

        from crawler.middlewares import GIVE_UP_AFTER, given_up
        from pipelines.corpus import shared_corpus

        if request.meta.get("nkwatch_role") != "article":
            return None
        key = request.meta.get("nkwatch_key")
        try:
            seen = bool(key) and bool(self.conn.sismember(SEEN_KEYS, key))
        except Exception as error:  # Redis away: fetch it; the writer drops a second copy
            if not is_redis_error(error):
                raise
            self.crawler.stats.inc_value("nkwatch/seen_check_unavailable")
            seen = False
        if seen:
            self.crawler.stats.inc_value("nkwatch/articles_already_stored")
            raise IgnoreRequest(f"already stored: {request.url}")
        if given_up(shared_corpus(self.crawler), request.url):
            self.crawler.stats.inc_value("nkwatch/articles_given_up")
            raise IgnoreRequest(f"given up: {request.url} failed {GIVE_UP_AFTER} times with 4xx")
        return None


# --- what `nkwatch status` shows ---------------------------------------------------------------


def status_figures(url: str) -> dict[str, Any]:
    """Queue depth, workers, leases, the writer's lag and dead letters; ``error`` if unreachable."""
    try:
        conn = connect(url)
        return _figures(conn, url)
    except BrokerError as error:
        return {"broker": url, "error": str(error)}
    except Exception as error:
        if not is_redis_error(error):
            raise
        return {"broker": url, "error": f"broker {url}: {describe_redis_error(error)}"}


def _figures(conn, url: str) -> dict[str, Any]:
    from rq import Worker
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    queue = crawl_queue(conn)
    leases = []
    for key in conn.scan_iter(match=LEASE_PREFIX + "*", count=500):
        name = key.decode()[len(LEASE_PREFIX) :]
        holder, ttl = conn.get(key), conn.pttl(key)
        if holder:
            leases.append({"source": name, "holder": holder.decode(),
                           "expires_in_seconds": round(max(ttl, 0) / 1000, 1)})  # fmt: skip
    workers = [
        {"name": w.name, "state": str(w.get_state()), "job": w.get_current_job_id(),
         "last_heartbeat_at": to_utc_iso(w.last_heartbeat)}
        for w in Worker.all(queue=queue)
    ]  # fmt: skip
    return {
        "broker": url,
        "queued": len(queue),
        "running": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
        "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        "workers": sorted(workers, key=lambda w: w["name"]),
        "leases": sorted(leases, key=lambda lease: lease["source"]),
        "writer": writer_lag(conn),
        "dead_letters": conn.llen(DEAD_LETTERS),
        "recent_crawls": [json.loads(r) for r in conn.lrange(CRAWL_HISTORY, 0, 4)],
    }


def dead_letter_list(url: str, limit: int = 50) -> list[dict[str, Any]]:
    """The latest records the writer could not store, each with its reason."""
    conn = connect(url)
    return [json.loads(raw) for raw in conn.lrange(DEAD_LETTERS, -limit, -1)]


def writer_lag(conn) -> dict[str, Any]:
    """Records waiting for the writer, and how old the oldest one is (stream ids are times)."""
    waiting = conn.xlen(ITEMS_STREAM) if conn.exists(ITEMS_STREAM) else 0
    oldest = conn.xrange(ITEMS_STREAM, count=1) if waiting else []
    age = None
    if oldest:
        stamp_ms = int(oldest[0][0].decode().split("-")[0])
        age = round(max(0.0, time.time() - stamp_ms / 1000), 1)
    consumers = []
    if waiting or conn.exists(ITEMS_STREAM):
        try:
            consumers = [
                {"name": c["name"].decode() if isinstance(c["name"], bytes) else c["name"],
                 "unacknowledged": c["pending"], "idle_seconds": round(c["idle"] / 1000, 1)}
                for c in conn.xinfo_consumers(ITEMS_STREAM, WRITER_GROUP)
            ]  # fmt: skip
        except Exception as error:  # no group yet: the writer has never run
            if not is_redis_error(error):
                raise
    return {"waiting": waiting, "oldest_waiting_seconds": age, "consumers": consumers}


def describe_status(figures: dict[str, Any]) -> list[str]:
    """The lines ``nkwatch status`` prints for the broker."""
    if "error" in figures:
        return [f"Broker: {figures['error']}"]
    writer = figures["writer"]
    lag = (f", oldest {writer['oldest_waiting_seconds']:g} s"
           if writer["oldest_waiting_seconds"] is not None else "")  # fmt: skip
    lines = [
        f"Broker: {figures['broker']}: {figures['queued']} crawl jobs queued, "
        f"{figures['running']} running, {figures['failed']} failed",
        f"Writer: {writer['waiting']} records waiting{lag}; "
        + (", ".join(f"{c['name']} idle {c['idle_seconds']:g} s" for c in writer["consumers"])
           or "no writer has run yet")
        + f"; {figures['dead_letters']} dead letters",
        f"Workers: {len(figures['workers'])}",
    ]  # fmt: skip
    lines += [f"  {w['name']:30} {w['state']:10} {w['job'] or ''}" for w in figures["workers"]]
    lines.append(f"Leases: {len(figures['leases'])}")
    lines += [f"  {lease['source']:30} held by {lease['holder']} "
              f"({lease['expires_in_seconds']:g} s left)" for lease in figures["leases"]]  # fmt: skip
    return lines
