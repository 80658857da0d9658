"""Downloader middlewares: the address guard, the seen-URL check and conditional GET."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from scrapy.exceptions import IgnoreRequest

from crawler.addresses import is_public_host
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
        if self.allow_all or request.meta.get("nkwatch_allow_private"):
            return None
        parts = urlsplit(request.url)
        if is_public_host_cached(parts.hostname or ""):
            return None
        if parts.netloc in self.allowed_hosts():
            return None
        self.crawler.stats.inc_value("nkwatch/requests_refused_private")
        raise IgnoreRequest(f"refused: {parts.hostname} is a private, loopback or metadata address")


@lru_cache(maxsize=4096)
def is_public_host_cached(host: str) -> bool:
    return is_public_host(host, resolve=True)
