"""Per-source accounting for one crawl, saved to ``sources_state`` when the crawl closes.

Conditional-GET validators are saved only at the end, after the store has committed every
article: a crawl killed midway keeps the old ETag, so the next run re-reads the feed and
fetches what was missed instead of being told "304 Not Modified".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlite_utils.db import NotFoundError

from crawler.sources import Source
from pipelines.corpus import shared_corpus, utc_now

logger = logging.getLogger(__name__)


@dataclass
class SourceRun:
    source: Source
    listed: int = 0
    not_modified: bool = False
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    article_failures: list[tuple[str, str]] = field(default_factory=list)
    refused_links: int = 0


class SourceHealth:
    """What happened to each source during this crawl."""

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.runs: dict[str, SourceRun] = {}

    @property
    def stats(self):
        return self.crawler.stats  # only set once the crawl starts, after the spider is built

    @classmethod
    def from_crawler(cls, crawler) -> SourceHealth:
        health = getattr(crawler, "_nkwatch_health", None)
        if health is None:
            health = crawler._nkwatch_health = cls(crawler)
        return health

    def started(self, source: Source) -> None:
        self.runs[source.name] = SourceRun(source)
        self.stats.inc_value("nkwatch/sources")

    def source(self, name: str) -> Source:
        return self.runs[name].source

    def listed(self, name: str, response, count: int) -> None:
        run = self.runs[name]
        run.listed += count
        run.etag = _header(response, b"ETag")
        run.last_modified = _header(response, b"Last-Modified")
        self.stats.inc_value("nkwatch/feeds_read")

    def moved_if_redirected(self, name: str, response) -> None:
        """A source answering through a permanent redirect (301/308) has moved: say where to."""
        reasons = response.meta.get("redirect_reasons") or []
        if any(reason in (301, 308) for reason in reasons):
            self.stats.inc_value("nkwatch/sources_moved")
            logger.warning("source %s has moved permanently to %s: update its url in the "
                           "sources file", name, response.url)  # fmt: skip

    def count_listed(self, name: str, count: int) -> None:
        self.runs[name].listed += count

    def not_modified(self, name: str) -> None:
        self.runs[name].not_modified = True
        self.stats.inc_value("nkwatch/feeds_not_modified")
        logger.info("%s: not modified since last crawl (304)", name)

    def failed_source(self, name: str, reason: str) -> None:
        self.runs[name].error = reason
        self.stats.inc_value("nkwatch/sources_failed")
        logger.error("source %s failed: %s", name, reason)

    def refused(self, name: str, link: str, reason: str) -> None:
        self.runs[name].refused_links += 1
        self.stats.inc_value("nkwatch/links_refused")
        logger.warning("%s: refused link %.120s: %s", name, link, reason)

    def failed_article(self, name: str, url: str, reason: str) -> None:
        self.runs[name].article_failures.append((url, reason))
        self.stats.inc_value("nkwatch/articles_failed")
        logger.warning("article failed: %s: %s", url, reason)

    def save(self, finished: bool = True) -> None:
        """Write each source's state; called once the store has committed the crawl's rows.

        Validators (ETag, Last-Modified) are kept only from a crawl that finished and fetched
        every article the source listed: otherwise the next crawl would get "304 Not Modified"
        and never retry what this one missed.
        """
        db = shared_corpus(self.crawler)
        now = utc_now()
        with db.atomic():
            for name, run in self.runs.items():
                previous = _row(db, name)
                stored = self.stats.get_value(f"nkwatch/stored/{name}", 0)
                state = {
                    "source": name,
                    "last_crawl_at": now,
                    "articles_total": (previous.get("articles_total") or 0) + stored,
                    "extraction_failures": (previous.get("extraction_failures") or 0)
                    + self.stats.get_value(f"nkwatch/extract_failed/{name}", 0),
                }
                if stored:
                    state["last_new_article_at"] = now
                if run.error:
                    state["consecutive_failures"] = (previous.get("consecutive_failures") or 0) + 1
                    state["last_error"] = run.error
                else:
                    state.update(last_success_at=now, consecutive_failures=0, last_error=None)
                    if not finished or run.article_failures:
                        state.update(etag=None, last_modified=None)
                    elif not run.not_modified:
                        state.update(etag=run.etag, last_modified=run.last_modified)
                db["sources_state"].upsert(state, pk="source")
                for url, reason in run.article_failures:
                    db.execute(
                        "INSERT INTO fetch_failures (url, source, reason, attempts, last_attempt_at)"
                        " VALUES (?, ?, ?, 1, ?) ON CONFLICT(url) DO UPDATE SET"
                        " attempts = attempts + 1, reason = excluded.reason,"
                        " last_attempt_at = excluded.last_attempt_at",
                        [url, name, reason, now],
                    )


def _row(db, name: str) -> dict:
    try:
        return db["sources_state"].get(name)
    except NotFoundError:  # a source crawled for the first time
        return {}


def _header(response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None
