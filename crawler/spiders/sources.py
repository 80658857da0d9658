"""The spider ``nkwatch crawl`` runs: every kind of source in one crawl, one reactor."""

from __future__ import annotations

import scrapy

from crawler.sources import FEED_KINDS, KINDS, SITEMAP_KINDS, Source
from crawler.spiders.feeds import FeedSpider
from crawler.spiders.sections import SectionSpider
from crawler.spiders.sitemaps import SitemapSpider


class AllSourcesSpider(FeedSpider, SitemapSpider, SectionSpider):
    """Sends each source to the discovery request of its kind."""

    name = "sources"
    kinds = KINDS

    def discovery_request(self, source: Source) -> scrapy.Request:
        if source.kind in FEED_KINDS:
            return FeedSpider.discovery_request(self, source)
        if source.kind in SITEMAP_KINDS:
            return SitemapSpider.discovery_request(self, source)
        return SectionSpider.discovery_request(self, source)
