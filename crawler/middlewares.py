"""Downloader middlewares: the address guard, the seen-URL check, conditional GET, Retry-After,
robots.txt with its Crawl-delay, and a cheaper meta-refresh check."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.redirect import (
    MetaRefreshMiddleware as ScrapyMetaRefreshMiddleware,
)
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.downloadermiddlewares.robotstxt import (
    RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware,
)
from scrapy.exceptions import IgnoreRequest

from crawler.addresses import is_metadata_host, is_public_host
from pipelines.corpus import knows_url, shared_corpus


class SkippedRequest(IgnoreRequest):
    """A request not sent on purpose (already stored, given up): not a failure of the source."""


GIVE_UP_AFTER = 3  # crawls in a row answering 4xx before an article URL is no longer tried


def given_up(db, url: str) -> bool:
    """A URL that answered 404/410/403... in several crawls is gone; stop asking for it."""
    row = db.execute(
        "SELECT 1 FROM fetch_failures WHERE url = ? AND attempts >= ? AND reason LIKE 'HTTP 4%'",
        [url, GIVE_UP_AFTER],
    ).fetchone()
    return row is not None


class SeenUrlMiddleware:
    """Drops an article request whose URL (in ``url_key`` form) is already in the corpus.

    Settings: none. Counts ``nkwatch/articles_already_stored``.
    """

    def __init__(self, crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        if request.meta.get("nkwatch_role") != "article":
            return None
        key = request.meta.get("nkwatch_key")
        db = shared_corpus(self.crawler)
        if key and knows_url(db, key):
            self.crawler.stats.inc_value("nkwatch/articles_already_stored")
            raise SkippedRequest(f"already stored: {request.url}")
        if given_up(db, request.url):
            self.crawler.stats.inc_value("nkwatch/articles_given_up")
            raise SkippedRequest(f"given up: {request.url} failed {GIVE_UP_AFTER} times with 4xx")
        return None


class ConditionalGetMiddleware:
    """Adds If-None-Match / If-Modified-Since to discovery requests from the saved state."""

    ROLES = ("feed", "sitemap", "section")

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self._states: dict | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request, spider=None):
        if request.meta.get("nkwatch_role") not in self.ROLES:
            return None
        if self._states is None:
            db = shared_corpus(self.crawler)
            self._states = {row["source"]: row for row in db["sources_state"].rows}
        state = self._states.get(request.meta.get("nkwatch_source"), {})
        if request.url == request.meta.get("nkwatch_source_url"):
            if state.get("etag"):
                request.headers.setdefault(b"If-None-Match", state["etag"])
            if state.get("last_modified"):
                request.headers.setdefault(b"If-Modified-Since", state["last_modified"])
        return None


class AddressGuardMiddleware:
    """Refuses requests to loopback, private, link-local and metadata addresses, before connecting.

    A source may opt in with ``allow_private = true`` (the demo web does); its requests, and
    robots.txt of its own host, pass. Settings: ``NKWATCH_ALLOW_PRIVATE_HOSTS`` (all pass).
    Counts ``nkwatch/requests_refused_private``.
    """

    def __init__(self, crawler) -> None:
        self.crawler = crawler
        self.allow_all = crawler.settings.getbool("NKWATCH_ALLOW_PRIVATE_HOSTS")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def allowed_hosts(self) -> set[str]:
        """Hosts of the sources that opted in to private addresses."""
        from crawler.health import SourceHealth

        runs = SourceHealth.from_crawler(self.crawler).runs.values()
        return {urlsplit(run.source.url).netloc for run in runs if run.source.allow_private}

    def process_request(self, request, spider=None):
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https"):
            raise IgnoreRequest(f"refused: {parts.scheme}: is not an http(s) URL")
        if is_metadata_host(parts.hostname or ""):
            self.crawler.stats.inc_value("nkwatch/requests_refused_private")
            raise IgnoreRequest(f"refused: {parts.hostname} is a cloud metadata address")
        if self.allow_all or request.meta.get("nkwatch_allow_private"):
            return None
        if is_public_host_cached(parts.hostname or ""):
            return None
        if parts.netloc in self.allowed_hosts():
            return None
        self.crawler.stats.inc_value("nkwatch/requests_refused_private")
        raise IgnoreRequest(f"refused: {parts.hostname} is a private, loopback or metadata address")


@lru_cache(maxsize=4096)
def is_public_host_cached(host: str) -> bool:
    return is_public_host(host, resolve=True)


class RetryAfterMiddleware(RetryMiddleware):
    """Scrapy's retries, but a 429/503 with ``Retry-After`` waits as long as the server asks.

    Waits longer than ``RETRY_AFTER_MAX_SECONDS`` are not honoured: the request fails with the
    reason, and the next crawl tries again. Only the one request waits; the crawl goes on.
    """

    def __init__(self, crawler) -> None:
        super().__init__(crawler.settings)
        self.crawler = crawler
        self.max_wait = crawler.settings.getfloat("RETRY_AFTER_MAX_SECONDS", 120)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_response(self, request, response, spider=None):
        if response.status in (429, 503) and response.headers.get(b"Retry-After"):
            wait = retry_after_seconds(response.headers[b"Retry-After"].decode("latin-1"))
            if wait is not None and wait > self.max_wait:
                raise IgnoreRequest(f"HTTP {response.status}: server asks to wait {wait:.0f} s")
            if wait and not request.meta.get("dont_retry"):
                await asyncio.sleep(wait)
        return super().process_response(request, response)


class RobotsTxtMiddleware(ScrapyRobotsTxtMiddleware):
    """Scrapy's robots.txt check, and the site's ``Crawl-delay`` obeyed as well.

    Scrapy reads the Crawl-delay line but does not act on it. Here it becomes the least delay
    of the site's download slot, kept in the downloader's per-slot settings so a slot that is
    dropped when idle comes back with it, with no jitter below it, and AutoThrottle told not to
    lower it. Delays over ``ROBOTSTXT_MAX_CRAWL_DELAY`` (default 60 s) are capped to it: a
    site asking for more is still crawled, slowly, and the stats say so.
    """

    def __init__(self, crawler) -> None:
        super().__init__(crawler)
        self.max_crawl_delay = crawler.settings.getfloat("ROBOTSTXT_MAX_CRAWL_DELAY", 60.0)

    def process_request_2(self, rp, request) -> None:
        super().process_request_2(rp, request)
        crawl_delay = getattr(rp, "crawl_delay", None)
        if crawl_delay is None:
            return
        agent = self._robotstxt_useragent or request.headers.get(
            b"User-Agent", self._default_useragent
        )
        delay = crawl_delay(agent)
        if not delay or delay <= 0:
            return
        if delay > self.max_crawl_delay:
            self._stats.inc_value("robotstxt/crawl_delay_capped")
            delay = self.max_crawl_delay
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        slot_settings = downloader.per_slot_settings.setdefault(key, {})
        if slot_settings.get("delay", 0.0) < delay:
            slot_settings.update(delay=delay, jitter=0.0)
            self._stats.max_value("robotstxt/crawl_delay_max", delay)
            self._stats.inc_value("robotstxt/crawl_delay_sites")
        slot = downloader.slots.get(key)
        if slot is not None and slot.delay < delay:
            slot.delay, slot.jitter = delay, 0.0
        request.meta["autothrottle_dont_adjust_delay"] = True


def retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class MetaRefreshMiddleware(ScrapyMetaRefreshMiddleware):
    """Scrapy's meta-refresh redirects, without their cost on the pages that have none.

    Scrapy decodes the whole body to look for the tag in its first 4,096 characters: a tenth of
    a millisecond a page on the reactor thread. Those characters lie within the first 16 KB of
    bytes in any ASCII-compatible encoding, so a page whose first 16 KB never say "refresh" has
    no such tag there; UTF-16 pages, where the bytes would not say it, still get the full check.
    """

    def process_response(self, request, response, spider=None):
        head = response.body[:16384]
        if b"refresh" not in head.lower() and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return response
        return super().process_response(request, response, spider)
