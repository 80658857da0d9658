"""The spider ``nkwatch crawl`` runs: every kind of source in one crawl, one reactor."""

from __future__ import annotations

import scrapy

from crawler.sources import KINDS, Source
from crawler.spiders.feeds import FeedSpider


class AllSourcesSpider(FeedSpider):
    """Dispatches each source to the discovery request of its kind."""

    name = "sources"
    kinds = KINDS

    def discovery_request(self, source: Source) -> scrapy.Request:
        return FeedSpider.discovery_request(self, source)
