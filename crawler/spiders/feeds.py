"""RSS and Atom sources: the spider that reads feeds (``crawler.feedreader``) and follows them."""

from __future__ import annotations

import scrapy
from scrapy.http import Response

from crawler.feedreader import parse_feed
from crawler.sources import FEED_KINDS, Source
from crawler.spiders.base import SourceSpider
from pipelines.pagework import run_in_workers

IN_WORKER_BYTES = 64 * 1024  # feeds larger than this are parsed in an extraction worker


class FeedSpider(SourceSpider):
    """Reads every RSS/Atom source and downloads the articles its entries link to."""

    name = "feeds"
    kinds = FEED_KINDS

    def discovery_request(self, source: Source) -> scrapy.Request:
        return self.make_request(
            source.url, source, "feed", self.parse_feed, handle_httpstatus_list=[304]
        )

    async def parse_feed(self, response: Response):
        source = self.health.source(response.meta["nkwatch_source"])
        if response.status == 304:
            self.health.not_modified(source.name)
            return
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1")
        limit = self.settings.getint("NKWATCH_MAX_ENTRIES_PER_FEED")
        # feedparser costs ~0.4 ms an entry: a big feed goes to a worker, so the reactor is not
        # held for a fifth of a second while downloads and the store wait
        args = (response.body, response.url, content_type, limit)
        if len(response.body) > IN_WORKER_BYTES:
            feed = await run_in_workers(self.crawler, parse_feed, *args)
        else:
            feed = parse_feed(*args)
        if feed.problem:
            self.health.failed_source(source.name, f"{feed.problem} ({response.url})")
            return
        if feed.warning:
            self.logger.warning("%s: %s", source.name, feed.warning)
        self.health.listed(source.name, response, len(feed.entries))
        self.health.moved_if_redirected(source.name, response)
        links = [(entry.link, entry.hints()) for entry in feed.entries]
        for request in self.article_requests(source, links, listed_on=response.url):
            yield request
