"""Section pages: the article links a site's section or front page lists."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response, TextResponse
from scrapy.linkextractors import LinkExtractor

from crawler.sources import Source
from crawler.spiders.base import SourceSpider

# Without a pattern, a link "looks like an article" when its path ends in a slug or an id:
# /2024/09/some-story.html, /news/123456, /article/some-long-slug-words.
DEFAULT_ARTICLE_PATTERN = r"/(\d{4}/\d{1,2}/|\d{5,}|[a-z0-9]+(-[a-z0-9]+){3,})[^/?#]*(\.html?)?$"


def article_links(response: TextResponse, pattern: str) -> list[tuple[str, dict]]:
    """Same-site links whose URL matches the article pattern, in page order, each once."""
    site = urlsplit(response.url).netloc
    matcher = re.compile(pattern or DEFAULT_ARTICLE_PATTERN)
    found: dict[str, dict] = {}
    for link in LinkExtractor(unique=True).extract_links(response):
        if urlsplit(link.url).netloc == site and matcher.search(link.url):
            found.setdefault(link.url, {"title": (link.text or "").strip()})
    return list(found.items())


class SectionSpider(SourceSpider):
    """Reads section pages and follows the links that match the source's article pattern."""

    name = "sections"
    kinds = ("section",)

    def discovery_request(self, source: Source) -> scrapy.Request:
        return self.make_request(source.url, source, "section", self.parse_section)

    def parse_section(self, response: Response):
        source = self.health.source(response.meta["nkwatch_source"])
        if not isinstance(response, TextResponse):
            self.health.failed_source(source.name, f"not an HTML page ({response.url})")
            return
        links = article_links(response, source.article_pattern)
        if not links:
            self.health.failed_source(source.name, f"no article links found ({response.url})")
            return
        self.health.listed(source.name, response, len(links))
        self.health.moved_if_redirected(source.name, response)
        yield from self.article_requests(source, links, listed_on=response.url)
