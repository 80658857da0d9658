"""The crawl daemon: APScheduler jobs per source, one crawl child at a time, live reloads, clean stop.

Every enabled source is an interval job (``max_instances=1``, ``coalesce=True``, with jitter).
A job does not crawl by itself: it queues its source and waits, and one worker thread runs the
queue, putting every source that is waiting at that moment into one ``nkwatch crawl`` child.
One child at a time keeps a single writer on the SQLite corpus (in ``bench/daemon_writers.py``
parallel children on a fresh corpus once lost 17 of 47 rows to "database is locked"), and a
batch pays the start-up of a crawl process once instead of per source (the 14 demo sources:
one batch child ~8 s, one child per source 32-55 s in parallel, 46 s queued, on 2 cores).
"""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from crawler.sources import Source, SourcesError, load_sources, save_sources, sources_path
from pipelines.corpus import open_corpus, utc_now
from pipelines.dates import to_utc_iso
from schedules import adaptive
from schedules.jobs import CrawlLimits, CrawlOutcome, reap_orphaned_runs, run_crawl_child
from schedules.lock import DaemonLock

logger = logging.getLogger(__name__)

JOB_PREFIX = "crawl:"
BATCH_WINDOW_SECONDS = 0.5  # sources due within this of each other share one crawl child
EXPORT_TIMEOUT_SECONDS = 600.0


@dataclass
class ExportHook:
    """After a crawl that stored something: ``nkwatch export --consumer NAME --out PATH``.

    ``out`` may contain ``{run_id}`` so each increment gets its own file; without it the file
    is replaced each time (the export writes it whole or not at all).
    """

    consumer: str
    out: str
    fmt: str | None = None

    def command(self, db: Path, run_id: int) -> list[str]:
        command = [sys.executable, "-m", "crawler.cli", "export", "--db", str(db),
                   "--consumer", self.consumer, "--out", self.out.format(run_id=run_id)]  # fmt: skip
        return command + (["--format", self.fmt] if self.fmt else [])


@dataclass
class DaemonConfig:
    db: Path
    sources_file: Path | None  # None: the list shipped with nkwatch
    limits: CrawlLimits = field(default_factory=CrawlLimits)
    interval_scale: float = 1.0  # for tests: 0.05 makes a 1-minute source run every 3 s
    jitter_fraction: float = 0.1  # up to this share of the interval is added at random
    max_jitter_seconds: float = 300.0
    reload_seconds: float = 2.0
    batch_max: int = 10
    crawl_settings: list[str] = field(default_factory=list)  # KEY=VALUE for every crawl
    export: ExportHook | None = None
    broker: str | None = None  # redis://...: enqueue crawl jobs for `nkwatch worker` instead


@dataclass
class DaemonTotals:
    """What the daemon did, for the summary it logs when it stops."""

    started: float = field(default_factory=time.monotonic)
    crawls: int = 0
    failed: int = 0
    new_articles: int = 0
    new_stories: int = 0
    errors: int = 0
    last_failure: str | None = None

    def add(self, outcome: CrawlOutcome) -> None:
        self.crawls += 1
        self.new_articles += outcome.new_articles
        self.new_stories += outcome.new_stories
        self.errors += outcome.errors
        if not outcome.ok:
            self.failed += 1
            self.last_failure = f"crawl #{outcome.run_id}: {outcome.reason}"

    def lines(self) -> list[str]:
        lines = [
            f"ran for:         {_duration(time.monotonic() - self.started)}",
            f"crawls:          {self.crawls} ({self.crawls - self.failed} ok, {self.failed} failed)",
            f"articles stored: {self.new_articles} new, in {self.new_stories} new stories",
            f"article errors:  {self.errors}",
        ]
        return lines + ([f"last failure:    {self.last_failure}"] if self.last_failure else [])


class SourcesWatch:
    """The sources file, re-read when it changes; the last good list is kept when it breaks.

    Crawl children read a snapshot of the last good list, so a half-edited file never reaches
    a crawl.
    """

    def __init__(self, path: Path | None, snapshot: Path) -> None:
        self.path = path
        self.snapshot = snapshot
        self.signature: tuple | None = None
        self.sources: list[Source] = []

    def load(self) -> list[Source]:
        """The first read: a broken file here is the caller's error to report."""
        self.signature = self._signature()
        self.sources = load_sources(self.path) if self.path else load_sources(None)
        save_sources(self.sources, self.snapshot)
        return self.sources

    def changed(self) -> list[Source] | None:
        """The new list if the file changed and reads well; None otherwise (errors are logged)."""
        signature = self._signature()
        if signature == self.signature:
            return None
        self.signature = signature
        try:
            sources = load_sources(self.path)
        except SourcesError as error:
            logger.error("%s; keeping the last good list (%d sources)", error, len(self.sources))
            return None
        self.sources = sources
        save_sources(sources, self.snapshot)
        return sources

    def _signature(self) -> tuple | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return ("missing",)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class CrawlQueue:
    """One worker thread; each turn it crawls every source waiting at that moment in one child."""

    def __init__(self, crawl_batch, batch_max: int) -> None:
        self.crawl_batch = crawl_batch
        self.batch_max = max(1, batch_max)
        self.waiting: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="crawl-queue", daemon=True)
        self.closed = False
        self.guard = threading.Lock()  # submit and close never interleave: nothing is left behind

    def start(self) -> CrawlQueue:
        self.thread.start()
        return self

    def submit(self, name: str) -> Future:
        future: Future = Future()
        with self.guard:
            if self.closed:
                future.cancel()
            else:
                self.waiting.put((name, future))
        return future

    def close(self) -> None:
        """Take no more; cancel what waits; the crawl in progress ends on the daemon's terms."""
        with self.guard:
            self.closed = True
            self.waiting.put(None)

    @property
    def working(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _work(self) -> None:
        while True:
            first = self.waiting.get()
            if first is None or self.closed:
                self._cancel([first] if first else [])
                break
            time.sleep(BATCH_WINDOW_SECONDS)
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    entry = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    self.closed = True
                    break
                batch.append(entry)
            if self.closed:
                self._cancel(batch)
                break
            self._run(batch)
        self._cancel(self._drain())

    def _run(self, batch: list[tuple[str, Future]]) -> None:
        names = list(dict.fromkeys(name for name, _ in batch))
        try:
            outcome = self.crawl_batch(names)
        except Exception as error:  # noqa: BLE001 (a daemon must outlive one bad crawl)
            logger.exception("crawl of %s could not run: %s", ", ".join(names), error)
            for _, future in batch:
                future.set_exception(error)
            return
        for _, future in batch:
            future.set_result(outcome)

    def _drain(self) -> list:
        left = []
        while True:
            try:
                entry = self.waiting.get_nowait()
            except queue.Empty:
                return left
            if entry is not None:
                left.append(entry)

    @staticmethod
    def _cancel(entries) -> None:
        for _, future in entries:
            future.cancel()


class CrawlDaemon:
    """``nkwatch run``: see the module docstring. ``run()`` blocks until a stop signal."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.db = Path(config.db)
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.totals = DaemonTotals()
        self.lock = DaemonLock(self.db)
        self.sources: dict[str, Source] = {}
        self.factors: dict[str, float] = {}
        self.scheduler: BackgroundScheduler | None = None
        self.crawl_queue: CrawlQueue | None = None
        self.watch: SourcesWatch | None = None
        self.skipping: set[str] = set()  # sources whose turns are skipped (logged once)
        self.applied = False  # has a sources list been scheduled yet (later ones are reloads)

    # --- lifecycle ---------------------------------------------------------------------
    def run(self, once: bool = False) -> DaemonTotals:
        path = sources_path(self.config.sources_file)
        self.lock.acquire(db=str(self.db.resolve()), sources_file=str(path.resolve()) if path
                          else None, interval_scale=self.config.interval_scale)  # fmt: skip
        try:
            with tempfile.TemporaryDirectory(prefix="nkwatch-daemon-") as folder:
                self.watch = SourcesWatch(path.resolve() if path else None,
                                          Path(folder) / "sources.toml")  # fmt: skip
                sources = self.watch.load()
                self._prepare_corpus()
                if once:
                    self._run_once(sources)
                else:
                    self._run_scheduled(sources)
        finally:
            self.lock.release()
        return self.totals

    def stop(self, at_once: bool = False) -> None:
        if at_once:
            self.hurry.set()
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: stop scheduling and let the crawl finish; second: end it now."""

        def handle(number, frame) -> None:
            if self.stopping.is_set():
                logger.info("%s again: ending the running crawl now", signal.Signals(number).name)
                self.stop(at_once=True)
                return
            logger.info("%s: no new crawls; a running crawl gets up to %g s to finish",
                        signal.Signals(number).name, self.config.limits.stop_grace_seconds)  # fmt: skip
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _prepare_corpus(self) -> None:
        corpus = open_corpus(self.db)
        try:
            reaped = reap_orphaned_runs(corpus, without_pid=True)
            if reaped:
                logger.info("marked %d unfinished run(s) of earlier processes as failed", reaped)
            self.factors = {
                row["source"]: row["poll_factor"] or 1.0 for row in corpus["source_schedule"].rows
            }
        finally:
            corpus.close()

    def _run_once(self, sources: list[Source]) -> None:
        self.sources = {s.name: s for s in sources if s.enabled}
        last_crawls = _last_crawls(self.db)
        due = [name for name in self.sources if self._first_run_at(name, last_crawls) <= _now()]
        if not due:
            logger.info("nothing due: every source was crawled within its interval")
        for start in range(0, len(due), self.config.batch_max):
            if self.stopping.is_set():
                break
            self._crawl_batch(due[start : start + self.config.batch_max])

    def _run_scheduled(self, sources: list[Source]) -> None:
        self.crawl_queue = CrawlQueue(self._crawl_batch, self.config.batch_max).start()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(64)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its own lines, see _on_event
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
        self._apply_sources(sources)
        self.scheduler.add_job(self._reload, "interval", seconds=self.config.reload_seconds,
                               id="reload-sources")  # fmt: skip
        self.scheduler.start()
        last_crawls = _last_crawls(self.db)
        due = sum(1 for name in self.sources if self._first_run_at(name, last_crawls) <= _now())
        logger.info("daemon started on %s: %d sources scheduled, %d due now; pid lock %s",
                    self.db, len(self.sources), due, self.lock.path)  # fmt: skip
        while not self.stopping.wait(0.5):
            pass
        self._shutdown()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.crawl_queue.close()
        limits = self.config.limits
        self.crawl_queue.join(limits.stop_grace_seconds + limits.terminate_grace_seconds + 10)
        self._publish_schedule(clear=True)
        logger.info("daemon stopped. Summary:\n  %s", "\n  ".join(self.totals.lines()))

    # --- jobs --------------------------------------------------------------------------
    def _crawl_job(self, name: str) -> None:
        """One source's turn: queue it and wait, so APScheduler's max_instances means something."""
        if self.stopping.is_set():
            return
        future = self.crawl_queue.submit(name)
        while self.crawl_queue.working or future.done():
            try:
                future.result(timeout=1.0)
                return
            except FutureTimeout:
                continue
            except CancelledError:
                return
            except Exception:  # noqa: BLE001 (already logged by the queue)
                return

    def _crawl_batch(self, names: list[str]) -> CrawlOutcome:
        if self.config.broker:
            return self._enqueue_batch(names)
        outcome = run_crawl_child(self.db, self.watch.snapshot, names, self.config.limits,
                                  self.stopping, self.hurry, self.config.crawl_settings)  # fmt: skip
        self.totals.add(outcome)
        self.skipping.difference_update(names)
        logger.info(
            "crawl #%d %s in %.1f s: %d new articles, %d new stories, %d errors, %d requests%s",
            outcome.run_id, "finished" if outcome.ok else "FAILED", outcome.seconds,
            outcome.new_articles, outcome.new_stories, outcome.errors, outcome.requests,
            "" if outcome.ok else f" ({outcome.reason})",
        )  # fmt: skip
        self._adapt(outcome)
        if self.config.export and outcome.new_articles and not self.hurry.is_set():
            self._export(outcome.run_id)
        return outcome

    def _enqueue_batch(self, names: list[str]) -> CrawlOutcome:
        """Distributed mode: workers crawl, the writer stores; the daemon only enqueues."""
        from schedules.distributed import JobPolicy, enqueue_due

        policy = JobPolicy(crawl_seconds=self.config.limits.timeout_seconds)
        for name, what in enqueue_due(self.config.broker, names, policy).items():
            logger.info("%s: %s", name, what)
        self.skipping.difference_update(names)
        return CrawlOutcome(run_id=0, sources=list(names), status="ok", reason="queued")

    def _reload(self) -> None:
        sources = self.watch.changed()
        if sources is not None and not self.stopping.is_set():
            self._apply_sources(sources)

    def _on_event(self, event) -> None:
        name = event.job_id.removeprefix(JOB_PREFIX)
        if event.code == EVENT_JOB_MAX_INSTANCES:
            if name not in self.skipping:  # once per streak, not every interval
                self.skipping.add(name)
                logger.info("%s: its previous turn is still queued or crawling; skipping "
                            "turns until it is done", name)  # fmt: skip
        else:
            logger.error("job %s failed: %s", event.job_id, event.exception)

    # --- the schedule ------------------------------------------------------------------
    def _apply_sources(self, sources: list[Source]) -> None:
        """Add, remove and reschedule jobs so they match ``sources`` (start and live reloads)."""
        wanted = {s.name: s for s in sources if s.enabled}
        added = [n for n in wanted if n not in self.sources]
        removed = [n for n in self.sources if n not in wanted]
        changed = [n for n in wanted if n in self.sources and _timing(wanted[n])
                   != _timing(self.sources[n])]  # fmt: skip
        initial, self.applied = not self.applied, True
        self.sources = wanted
        last_crawls = _last_crawls(self.db)
        for name in removed:
            self.scheduler.remove_job(JOB_PREFIX + name)
        for name in added:
            self.scheduler.add_job(self._crawl_job, self._trigger(name), args=[name],
                                   id=JOB_PREFIX + name, name=name,
                                   next_run_time=self._first_run_at(name, last_crawls))  # fmt: skip
        for name in changed:
            if not wanted[name].adaptive:
                self.factors[name] = 1.0
            self._reschedule(name, self._first_run_at(name, last_crawls))
        if not initial and (added or removed or changed):
            logger.info("sources reloaded: %d scheduled (added %s; removed %s; changed %s)",
                        len(wanted), _names(added), _names(removed), _names(changed))  # fmt: skip
        self._publish_schedule()

    def _adapt(self, outcome: CrawlOutcome) -> None:
        for name in outcome.sources:
            source = self.sources.get(name)
            if source is None or not source.adaptive or self.scheduler is None:
                continue
            before = self.factors.get(name, 1.0)
            after = adaptive.next_poll_factor(before, outcome.new_by_source.get(name, 0),
                                              outcome.ok)  # fmt: skip
            if after != before:
                self.factors[name] = after
                self._reschedule(name, None)
                logger.info("%s: polling every %s (x%g of its interval)", name,
                            _duration(self._interval_seconds(name)), after)  # fmt: skip
        self._publish_schedule()

    def _reschedule(self, name: str, next_run_at: datetime | None) -> None:
        if self.scheduler is None or self.stopping.is_set():
            return
        job = self.scheduler.reschedule_job(JOB_PREFIX + name, trigger=self._trigger(name))
        if next_run_at is not None:
            job.modify(next_run_time=next_run_at)

    def _trigger(self, name: str) -> IntervalTrigger:
        seconds = self._interval_seconds(name)
        jitter = min(self.config.max_jitter_seconds, seconds * self.config.jitter_fraction)
        return IntervalTrigger(seconds=seconds, jitter=jitter or None, timezone=UTC)

    def _interval_seconds(self, name: str) -> float:
        source = self.sources[name]
        factor = self.factors.get(name, 1.0) if source.adaptive else 1.0
        minutes = adaptive.interval_minutes(source.interval_minutes, factor)
        return minutes * 60.0 * self.config.interval_scale

    def _first_run_at(self, name: str, last_crawls: dict[str, str]) -> datetime:
        """Overdue (or never crawled): now; otherwise one interval after the last crawl."""
        last = last_crawls.get(name)
        if not last:
            return _now()
        try:
            last_at = datetime.fromisoformat(last.replace("Z", "+00:00"))
        except ValueError:
            return _now()
        return max(_now(), last_at + timedelta(seconds=self._interval_seconds(name)))

    def _publish_schedule(self, clear: bool = False) -> None:
        """Write each source's next run and factor where ``nkwatch status`` reads them."""
        rows = []
        now = utc_now()
        for name in self.sources:
            job = None if clear or self.scheduler is None else self.scheduler.get_job(
                JOB_PREFIX + name)  # fmt: skip
            next_run = job.next_run_time if job is not None else None
            rows.append({"source": name, "poll_factor": self.factors.get(name, 1.0),
                         "interval_seconds": self._interval_seconds(name),
                         "next_run_at": to_utc_iso(next_run),
                         "updated_at": now})  # fmt: skip
        corpus = open_corpus(self.db)
        try:
            with corpus.atomic():
                corpus.execute("UPDATE source_schedule SET next_run_at = NULL")
                corpus["source_schedule"].upsert_all(rows, pk="source")
        finally:
            corpus.close()

    # --- export --------------------------------------------------------------------------
    def _export(self, run_id: int) -> None:
        command = self.config.export.command(self.db, run_id)
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=EXPORT_TIMEOUT_SECONDS)  # fmt: skip
        except subprocess.TimeoutExpired:
            logger.error("export for %s timed out after %g s", self.config.export.consumer,
                         EXPORT_TIMEOUT_SECONDS)  # fmt: skip
            return
        message = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode:
            logger.error("export for %s failed (exit %d): %s", self.config.export.consumer,
                         done.returncode, message)  # fmt: skip
        else:
            logger.info("export: %s", message)


def _last_crawls(db: Path) -> dict[str, str]:
    corpus = open_corpus(db)
    try:
        return {row[0]: row[1] for row in
                corpus.execute("SELECT source, last_crawl_at FROM sources_state")}  # fmt: skip
    finally:
        corpus.close()


def _timing(source: Source) -> tuple:
    return (source.interval_minutes, source.adaptive)


def _now() -> datetime:
    return datetime.now(UTC)


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
