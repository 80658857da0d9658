"""What every nkwatch spider shares: reading the sources, asking for articles, parsing them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.health import SourceHealth
from crawler.items import ArticleItem
from crawler.middlewares import SkippedRequest
from crawler.sources import Source, SourcesError, load_sources
from crawler.urls import clean_url, is_fetchable, url_key
from pipelines.corpus import utc_now

HTML_TYPES = (b"text/html", b"application/xhtml+xml")


class SourceSpider(scrapy.Spider):
    """Base spider: one discovery request per source of its kinds, then one per article."""

    kinds: tuple[str, ...] = ()

    def __init__(self, *args: Any, source: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.only_sources = [name for name in source.split(",") if name]

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.health = SourceHealth.from_crawler(crawler)
        return spider

    def selected_sources(self) -> list[Source]:
        """Enabled sources of this spider's kinds, narrowed by ``-a source=`` / the settings."""
        try:
            sources = load_sources(self.settings.get("NKWATCH_SOURCES") or None)
        except SourcesError as error:
            self.logger.error("%s", error)
            return []
        wanted = self.only_sources or self.settings.getlist("NKWATCH_SOURCE_NAMES")
        chosen = [s for s in sources if s.enabled and s.kind in self.kinds]
        if wanted:
            chosen = [s for s in sources if s.name in wanted and s.kind in self.kinds]
        return chosen

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for source in self.selected_sources():
            self.health.started(source)
            yield self.discovery_request(source)

    def discovery_request(self, source: Source) -> scrapy.Request:
        raise NotImplementedError

    def make_request(
        self, url: str, source: Source, role: str, callback, errback=None, **meta: Any
    ) -> scrapy.Request:
        """A request tagged with its source and role; each site (host:port) is its own slot."""
        return scrapy.Request(
            url,
            callback=callback,
            errback=errback or (self.article_failed if role == "article" else self.discovery_failed),
            dont_filter=role != "article",
            meta={"nkwatch_source": source.name, "nkwatch_source_url": source.url,
                  "nkwatch_role": role, "nkwatch_allow_private": source.allow_private,
                  "download_slot": urlsplit(url).netloc, **meta},
        )  # fmt: skip

    def article_requests(
        self, source: Source, links: Iterable[tuple[str, dict[str, Any]]], listed_on: str
    ) -> Iterable[scrapy.Request]:
        """Requests for the article links a feed/sitemap/section listed, unsafe links refused."""
        for link, hints in links:
            if not is_fetchable(link):
                self.health.refused(source.name, link, "not an http(s) link")
                continue
            url = clean_url(link)
            self.crawler.stats.inc_value("nkwatch/article_links")
            yield self.make_request(
                url, source, "article", self.parse_article, nkwatch_hints=hints,
                nkwatch_listed_on=listed_on, nkwatch_key=url_key(url),
            )  # fmt: skip

    def parse_article(self, response: Response):
        source = response.meta["nkwatch_source"]
        content_type = response.headers.get(b"Content-Type", b"").split(b";")[0].strip().lower()
        if content_type and content_type not in HTML_TYPES:
            self.health.failed_article(
                source, response.url, f"not HTML ({content_type.decode('latin-1')})"
            )
            return
        yield ArticleItem(
            url=response.meta["nkwatch_key"],
            response_url=response.url,
            source=source,
            source_trust=self.health.source(source).trust,
            fetched_at=utc_now(),
            http_status=response.status,
            body=response.body,
            encoding=response.encoding if isinstance(response, TextResponse) else None,
            discovered_via=response.meta.get("nkwatch_listed_on", ""),
            hints=response.meta.get("nkwatch_hints", {}),
        )

    def article_failed(self, failure: Failure) -> None:
        if failure.check(SkippedRequest):
            return
        request = failure.request
        self.health.failed_article(
            request.meta["nkwatch_source"], request.url, describe_failure(failure)
        )

    def discovery_failed(self, failure: Failure) -> None:
        request = failure.request
        self.health.failed_source(request.meta["nkwatch_source"], describe_failure(failure))

    def closed(self, reason: str) -> None:
        self.health.save(finished=reason == "finished")


def describe_failure(failure: Failure) -> str:
    """A one-line reason a person can act on: "HTTP 404", "timeout after 30s", "DNS lookup"."""
    error = failure.value
    if isinstance(error, HttpError):
        return f"HTTP {error.response.status}"
    if isinstance(error, IgnoreRequest) and str(error):
        return str(error)
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Timeout" in name:
        return "timed out"
    if "DNSLookup" in name or "Resolve" in name:
        return f"DNS lookup failed ({urlsplit(failure.request.url).hostname})"
    if "ConnectionRefused" in name:
        return "connection refused"
    return f"{name}: {text}"[:200] if text else name
