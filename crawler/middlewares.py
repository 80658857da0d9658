"""Downloader middlewares: the seen-URL check and conditional GET for feeds."""

from __future__ import annotations

from scrapy.exceptions import IgnoreRequest

from pipelines.corpus import knows_url, shared_corpus


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
        if key and knows_url(shared_corpus(self.crawler), key):
            self.crawler.stats.inc_value("nkwatch/articles_already_stored")
            raise IgnoreRequest(f"already stored: {request.url}")
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
