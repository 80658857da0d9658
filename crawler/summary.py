"""The crawl's run record, progress lines and closing summary.

A run row is written as ``running`` when the crawl opens and finished when it closes; a crawl
killed in between stays ``running`` with its pid, which the scheduler later marks failed. A
crawl the daemon started fills in the row the daemon made for it (``NKWATCH_RUN_ID``), so each
scheduled crawl is one row whatever happens to the process.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from scrapy import signals
from twisted.internet import task

from pipelines.corpus import shared_corpus, utc_now

logger = logging.getLogger(__name__)


@dataclass
class CrawlTotals:
    """The figures a person reads after a crawl."""

    sources: int = 0
    sources_failed: int = 0
    sources_moved: int = 0
    feeds_not_modified: int = 0
    pages_fetched: int = 0
    articles_stored: int = 0
    already_stored: int = 0
    failures: int = 0
    new_stories: int = 0
    relevant: int = 0
    relevant_by_topic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def from_stats(cls, stats: dict, seconds: float) -> CrawlTotals:
        stored = stats.get("nkwatch/stored", 0)
        return cls(
            sources=stats.get("nkwatch/sources", 0),
            sources_failed=stats.get("nkwatch/sources_failed", 0),
            sources_moved=stats.get("nkwatch/sources_moved", 0),
            feeds_not_modified=stats.get("nkwatch/feeds_not_modified", 0),
            pages_fetched=stats.get("downloader/response_count", 0),
            articles_stored=stored - stats.get("nkwatch/stored_failed", 0),
            already_stored=stats.get("nkwatch/articles_already_stored", 0),
            failures=stats.get("nkwatch/articles_failed", 0)
            + stats.get("nkwatch/extract_failed", 0)
            + stats.get("nkwatch/sources_failed", 0),
            new_stories=stats.get("nkwatch/new_stories", 0),
            relevant=stats.get("nkwatch/stored_relevant", 0),
            relevant_by_topic={
                key.rsplit("/", 1)[1]: value
                for key, value in sorted(stats.items())
                if key.startswith("nkwatch/relevant/")
            },
            seconds=seconds,
        )

    def lines(self) -> list[str]:
        moved = [f"sources moved:       {self.sources_moved} (permanent redirect: the log names "
                 "the new addresses to put in the sources file)"] if self.sources_moved else []  # fmt: skip
        return [
            f"sources crawled:     {self.sources} ({self.sources_failed} failed, "
            f"{self.feeds_not_modified} not modified)",
            *moved,
            f"pages fetched:       {self.pages_fetched}",
            f"articles stored:     {self.articles_stored} new "
            f"({self.already_stored} already stored, skipped)",
            f"relevant:            {self.relevant} "
            f"({', '.join(f'{t} {n}' for t, n in self.relevant_by_topic.items()) or 'none'})",
            f"new stories:         {self.new_stories}",
            f"failures:            {self.failures}",
            f"time:                {self.seconds:.1f} s",
        ]


class CrawlSummary:
    """Records the run, logs progress every ``NKWATCH_PROGRESS_SECONDS``, and sums up at the end."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.interval = crawler.settings.getfloat("NKWATCH_PROGRESS_SECONDS", 10.0)
        self.run_id: int | None = None
        self.started = time.monotonic()
        self.totals: CrawlTotals | None = None
        crawler.signals.connect(self.opened, signal=signals.spider_opened)
        crawler.signals.connect(self.closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        extension = cls(crawler)
        crawler._nkwatch_summary = extension
        return extension

    def opened(self, spider) -> None:
        self.started = time.monotonic()
        db = shared_corpus(self.crawler)
        self.run_id = self.crawler.settings.getint("NKWATCH_RUN_ID", 0) or None
        with db.atomic():
            if self.run_id is not None:  # the daemon's row for this crawl: fill it in
                cursor = db.execute(
                    "UPDATE runs SET pid = ? WHERE id = ? AND status = 'running'",
                    [os.getpid(), self.run_id],
                )
                if cursor.rowcount == 0:
                    self.run_id = None
            if self.run_id is None:
                names = ",".join(getattr(spider, "only_sources", []) or []) or "*"
                cursor = db.execute(
                    "INSERT INTO runs (started_at, status, sources, pid) VALUES (?, 'running', ?, ?)",
                    [utc_now(), f"{spider.name}:{names}", os.getpid()],
                )
                self.run_id = cursor.lastrowid
        self.progress = task.LoopingCall(self.log_progress)
        self.progress.start(self.interval, now=False)

    def log_progress(self) -> None:
        stats = self.crawler.stats.get_stats()
        logger.info(
            "progress: %d pages fetched, %d articles stored, %d failed, %d requests queued",
            stats.get("downloader/response_count", 0),
            stats.get("nkwatch/stored", 0),
            stats.get("nkwatch/articles_failed", 0) + stats.get("nkwatch/extract_failed", 0),
            stats.get("scheduler/enqueued", 0) - stats.get("scheduler/dequeued", 0),
        )

    def closed(self, spider, reason) -> None:
        if self.progress.running:
            self.progress.stop()
        stats = self.crawler.stats.get_stats()
        self.totals = CrawlTotals.from_stats(stats, time.monotonic() - self.started)
        status = "ok" if reason == "finished" else "failed"
        db = shared_corpus(self.crawler)
        with db.atomic():
            db["runs"].update(
                self.run_id,
                {
                    "ended_at": utc_now(),
                    "status": status,
                    "requests": stats.get("downloader/request_count", 0),
                    "new_articles": self.totals.articles_stored,
                    "new_stories": self.totals.new_stories,
                    "errors": self.totals.failures,
                    "reason": reason if status != "ok" else None,
                },
            )
        if self.crawler.settings.getbool("NKWATCH_LOG_SUMMARY", True):
            logger.info("crawl summary (%s):\n  %s", reason, "\n  ".join(self.totals.lines()))
