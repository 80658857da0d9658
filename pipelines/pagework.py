"""The CPU work of a fetched page, done in one round trip to a worker process.

Extraction is CPU-bound, and so is everything that follows it on the same text: removing the
site's learned boilerplate, scoring the watch topics, fingerprinting for dedupe, packing the
raw page. Run on the reactor thread, any of it stalls downloading and leaves the other cores
idle; run as one worker call each, a page's body and text cross between processes several
times and the reactor pays for every crossing. So ``PageWorkPipeline`` sends each page to a
worker once, with what the later stages need to know (``PageJob``), and gets everything back
once (``PageResult``). The stage pipelines after it (``BoilerplatePipeline``,
``RelevancePipeline``, ``DedupePipeline``) keep their main-process part: counting what a site
repeats, statistics, canonical keys, story assignment in the store.

A stage pipeline asks for its worker part by registering with ``request_stage`` in its
constructor; a stage nobody registered is not run. With ``EXTRACT_WORKERS = 0`` the same
``process_page`` runs inline, so there is one code path either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import types
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from crawler.interpreter import tune_collector
from pipelines.extract import (
    MIN_WORDS,
    Extraction,
    apply_extraction,
    count_words,
    extract_article,
)
from pipelines.rawpages import pack

logger = logging.getLogger(__name__)

WORKER_MODULES = ["pipelines.pagework", "pipelines.boilerplate", "pipelines.relevance",
                  "pipelines.dedupe", "pipelines.reextract", "crawler.feedreader"]  # fmt: skip
_STAGES_ATTRIBUTE = "nkwatch_page_stages"
_POOL_ATTRIBUTE = "nkwatch_worker_pool"

BOILERPLATE = "boilerplate"  # value: a callable(url) -> the site's learned line hashes
RELEVANCE = "relevance"  # value: the topics file setting ("" for the default search)
FINGERPRINTS = "fingerprints"  # value: True


def request_stage(crawler, name: str, value: Any) -> None:
    """Ask for a stage's worker part to run on every page of this crawl."""
    if crawler is not None:
        stages = getattr(crawler, _STAGES_ATTRIBUTE, None)
        if stages is None:
            stages = {}
            setattr(crawler, _STAGES_ATTRIBUTE, stages)
        stages[name] = value


def requested_stages(crawler) -> dict[str, Any]:
    return getattr(crawler, _STAGES_ATTRIBUTE, None) or {}


@dataclass
class PageJob:
    """One page and what the worker needs to know to do all of its CPU work."""

    body: bytes
    url: str | None
    encoding: str | None
    min_words: int = MIN_WORDS
    favor: str = "balanced"
    keep_raw: bool = True  # pack the raw page for the store's raw_pages
    learned_lines: frozenset[str] | None = None  # the site's boilerplate; None: stage off
    topics_file: str | None = None  # relevance: the topics setting; None: stage off
    fingerprints: bool = False
    title_hint: str | None = None  # the feed's title, when the page has none
    language_hint: str | None = None


@dataclass
class PageResult:
    """Everything the worker learned of a page; the stage pipelines copy their part."""

    extraction: Extraction
    raw_packed: bytes = b""
    page_key: str | None = None  # boilerplate: the page's identity and its countable lines
    line_hashes: list[tuple[str, str]] = field(default_factory=list)  # (hash, line as printed)
    boilerplate_removed: int = 0  # lines of learned boilerplate taken out of text/comments
    judged: tuple | None = None  # relevance: (topic scores as stored, relevant, indicators)
    content_hash: str = ""
    signature: bytes = b""


def process_page(job: PageJob) -> PageResult:
    """Extract the page, then clean, judge and fingerprint its text: all a worker does."""
    extraction = extract_article(job.body, job.url, encoding=job.encoding,
                                 min_words=job.min_words, favor=job.favor)  # fmt: skip
    result = PageResult(extraction, pack(job.body) if job.keep_raw else b"")
    article = extraction.article
    if article is None:
        return result
    if job.learned_lines is not None:
        from pipelines.boilerplate import page_lines, strip_lines

        result.page_key, result.line_hashes = page_lines(article.text, article.comments)
        known = {line: key for key, line in result.line_hashes}
        article.text, article.comments, result.boilerplate_removed = strip_lines(
            article.text, article.comments, job.learned_lines, known
        )
        if result.boilerplate_removed:
            article.word_count = count_words(article.text)
    if job.topics_file is not None:
        from pipelines.relevance import judge_article

        title = article.title or job.title_hint
        language = article.language or job.language_hint
        result.judged = judge_article(title, article.text, language, job.url, job.topics_file)
    if job.fingerprints:
        from pipelines.dedupe import fingerprints

        relevant = result.judged[1] if result.judged is not None else True
        result.content_hash, result.signature = fingerprints(article.text, relevant)
    return result


@contextlib.contextmanager
def main_module_hidden():
    """Spawn worker processes that do not import the crawl's main module.

    A spawned process re-runs the parent's ``__main__`` (here the ``nkwatch`` command, or
    ``scrapy``) so that functions defined there can be unpickled; ours are not, and importing
    the command line pulls Scrapy and Twisted into every worker: 0.3 s of CPU and 20 MB each.
    A stand-in ``__main__`` with no file and no spec makes multiprocessing skip that step.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def spawn_workers(pool: ProcessPoolExecutor, workers: int, topics_file: str | None = None) -> None:
    """Start the pool's processes now (a pool starts one per submitted task, as needed), each
    with a first task that reads the topics, and without the crawl's main module."""
    with main_module_hidden():
        for _ in range(workers):
            pool.submit(warm_up, topics_file)


def start_worker_pool(workers: int, gc_thresholds: list[int] | None = None) -> ProcessPoolExecutor:
    """Worker processes forked from a server that has imported the stage modules once.

    A forkserver, not a fork of the crawl: a copy of a process running a reactor, threads and an
    open SQLite connection is not safe to run. Each worker tunes its collector first
    (``crawler.interpreter``).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=tune_collector,
                               initargs=(gc_thresholds,))  # fmt: skip


def worker_pool(crawler) -> ProcessPoolExecutor | None:
    """The crawl's worker pool (``PageWorkPipeline`` owns it), or None when work runs inline."""
    return getattr(crawler, _POOL_ATTRIBUTE, None)


async def run_in_workers(crawler, function, *args):
    """``function(*args)`` in the crawl's worker pool, awaited without blocking the reactor; in
    this process when there is no pool or it has just broken (it is being replaced)."""
    pool = worker_pool(crawler)
    if pool is not None:
        try:
            return await asyncio.wrap_future(pool.submit(function, *args))
        except BrokenProcessPool:
            pass
    return function(*args)


def warm_up(topics_file: str | None) -> None:
    """A worker's first task, sent with the first article request: starting the worker
    processes and reading the topics happen while that page downloads, not while pages wait."""
    if topics_file is not None:
        from pipelines.relevance import default_topics

        default_topics(topics_file)


class PageWorkPipeline:
    """Sends each fetched page to a pool of worker processes for all of its CPU work.

    The pool has ``EXTRACT_WORKERS`` processes (None: one per core; 0: the work runs inline).
    Scrapy's scraper slot (``SCRAPER_SLOT_MAX_ACTIVE_SIZE``) bounds how many pages wait here,
    which is the backpressure on the downloader. Other settings: ``EXTRACT_MIN_WORDS``,
    ``EXTRACT_FAVOR``, ``STORE_KEEP_RAW`` (whether the worker packs the raw page).
    """

    def __init__(self, crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        workers = settings.get("EXTRACT_WORKERS")
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        self.min_words = settings.getint("EXTRACT_MIN_WORDS", MIN_WORDS)
        self.favor = settings.get("EXTRACT_FAVOR", "balanced")
        self.keep_raw = settings.getbool("STORE_KEEP_RAW", True)
        self.gc_thresholds = [int(v) for v in settings.getlist("NKWATCH_GC_THRESHOLDS")]
        self.pool: ProcessPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals

        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.request_scheduled, signal=signals.request_scheduled)
        return pipeline

    def request_scheduled(self, request, spider=None) -> None:
        """Start the workers with the first article request, while it downloads: a crawl that
        finds nothing new (every feed answers 304) never starts them."""
        if self.pool is None and request.meta.get("nkwatch_role") == "article":
            self.start_pool()

    def start_pool(self) -> None:
        if self.workers > 0 and self.pool is None:
            self.pool = start_worker_pool(self.workers, self.gc_thresholds)
            setattr(self.crawler, _POOL_ATTRIBUTE, self.pool)
            spawn_workers(self.pool, self.workers, requested_stages(self.crawler).get(RELEVANCE))

    def close_spider(self, spider=None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            setattr(self.crawler, _POOL_ATTRIBUTE, None)

    def replace_broken_pool(self, broken: ProcessPoolExecutor, item) -> None:
        """A worker died (killed, out of memory, a crash in a C library): the pages the pool
        held are not stored, the pool is replaced once for the rest of the crawl, and no page
        is retried here, since one of them may be what killed it. Each counts as a failed
        article of its source, so the feed's validators are not saved and the next crawl
        fetches them again."""
        health = getattr(self.crawler.spider, "health", None)
        if health is not None:
            health.failed_article(item.source, item.response_url, "extraction worker died")
        if broken is self.pool:
            logger.error("an extraction worker died on or near %s; starting new workers",
                         item.response_url)  # fmt: skip
            broken.shutdown(wait=False, cancel_futures=True)
            self.stats.inc_value("nkwatch/worker_pool_restarts")
            self.pool = None
            self.start_pool()

    def job_for(self, item) -> PageJob:
        stages = requested_stages(self.crawler)
        url = item.response_url or item.url
        learned_for: Callable[[str], frozenset[str]] | None = stages.get(BOILERPLATE)
        hints = item.hints or {}
        return PageJob(
            item.body, item.response_url, item.encoding,
            min_words=self.min_words, favor=self.favor, keep_raw=self.keep_raw,
            learned_lines=learned_for(url) if learned_for is not None else None,
            topics_file=stages.get(RELEVANCE),
            fingerprints=bool(stages.get(FINGERPRINTS)),
            title_hint=hints.get("title"), language_hint=hints.get("language"),
        )  # fmt: skip

    async def process_item(self, item, spider=None):
        job = self.job_for(item)
        self.start_pool()
        if self.pool is None:
            result = process_page(job)
        else:
            pool = self.pool
            try:
                result = await asyncio.wrap_future(pool.submit(process_page, job))
            except BrokenProcessPool:
                from scrapy.exceptions import DropItem  # here: workers import this module too

                self.replace_broken_pool(pool, item)
                raise DropItem(f"extraction worker died while on {item.response_url}") from None
        item.raw_packed = result.raw_packed
        apply_extraction(item, result.extraction)
        item.page_work = result
        if item.status != "ok":
            self.stats.inc_value(f"nkwatch/extract_failed/{item.source}")
            self.stats.inc_value("nkwatch/extract_failed")
            logger.warning("extraction failed: %s: %s", item.response_url, item.failure_reason)
        return item
