"""Sitemaps and news sitemaps: the one place that parses them (entities never resolved)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from urllib.parse import urljoin

import lxml.etree
import scrapy
from scrapy.http import Response
from scrapy.utils.gz import gunzip

from crawler.feedreader import ENTITY_DECLARATION
from crawler.sources import SITEMAP_KINDS, Source
from crawler.spiders.base import SourceSpider
from pipelines.dates import to_local_iso, to_utc_iso

MAX_CHILD_SITEMAPS = 50
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit for one uncompressed file
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SitemapEntry:
    loc: str
    lastmod: str | None = None
    published_at: str | None = None
    title: str = ""
    language: str = ""
    published_local: str | None = None  # publication_date as written, with its UTC offset

    @property
    def newest_date(self) -> str | None:
        return self.published_at or self.lastmod

    def hints(self) -> dict:
        return {"title": self.title, "sitemap_published_at": self.published_at,
                "sitemap_published_local": self.published_local,
                "language": self.language}  # fmt: skip


@dataclass
class ParsedSitemap:
    """A urlset (``entries``) or a sitemap index (``children``), or why it is neither."""

    kind: str = ""  # "urlset" | "sitemapindex"
    entries: list[SitemapEntry] = field(default_factory=list)
    children: list[SitemapEntry] = field(default_factory=list)
    problem: str | None = None


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_sitemap(body: bytes, url: str) -> ParsedSitemap:
    """Parse sitemap XML without resolving entities, DTDs or anything on the network."""
    if not body.strip():
        return ParsedSitemap(problem="empty response")
    if body[:2] == GZIP_MAGIC:  # sitemap.xml.gz served as a file, not as Content-Encoding
        try:
            body = gunzip(body, max_size=MAX_SITEMAP_BYTES)
        except ValueError:  # scrapy's gunzip: the size limit was reached
            return ParsedSitemap(problem=f"gzipped sitemap over {MAX_SITEMAP_BYTES >> 20} MB")
        except (OSError, EOFError, zlib.error) as error:
            return ParsedSitemap(problem=f"broken gzip: {error}")
    if ENTITY_DECLARATION.search(body[:65536]):
        return ParsedSitemap(problem="refused: XML with entity declarations (entity expansion or "
                             "external entity)")  # fmt: skip
    parser = lxml.etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True
    )
    try:
        root = lxml.etree.parse(BytesIO(body), parser).getroot()
    except lxml.etree.XMLSyntaxError as error:
        return ParsedSitemap(problem=f"not XML: {error}")
    if root is None or _local(root.tag) not in ("urlset", "sitemapindex"):
        return ParsedSitemap(problem="not a sitemap (no <urlset> or <sitemapindex>)")
    result = ParsedSitemap(kind=_local(root.tag))
    for node in root:
        if _local(node.tag) not in ("url", "sitemap"):
            continue
        values: dict[str, str] = {}
        for child in node.iter():
            name = _local(child.tag)
            if name in ("loc", "lastmod", "publication_date", "title", "language") and child.text:
                values.setdefault(name, child.text.strip())
        if not values.get("loc"):
            continue
        entry = SitemapEntry(
            loc=urljoin(url, values["loc"]),
            lastmod=to_utc_iso(values.get("lastmod")),
            published_at=to_utc_iso(values.get("publication_date")),
            published_local=to_local_iso(values.get("publication_date")),
            title=values.get("title", ""),
            language=values.get("language", ""),
        )
        (result.children if result.kind == "sitemapindex" else result.entries).append(entry)
    return result


def is_recent(entry: SitemapEntry, days: int, now: datetime | None = None) -> bool:
    """Entries without any date are kept: a sitemap that omits dates still lists articles."""
    stamp = entry.newest_date
    if not stamp:
        return True
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    return stamp >= to_utc_iso(cutoff)


class SitemapSpider(SourceSpider):
    """Reads sitemaps, sitemap indexes and news sitemaps, keeping recent entries only."""

    name = "sitemaps"
    kinds = SITEMAP_KINDS

    def discovery_request(self, source: Source) -> scrapy.Request:
        return self.make_request(
            source.url, source, "sitemap", self.parse_sitemap, handle_httpstatus_list=[304]
        )

    def parse_sitemap(self, response: Response):
        source = self.health.source(response.meta["nkwatch_source"])
        if response.status == 304:
            self.health.not_modified(source.name)
            return
        sitemap = parse_sitemap(response.body, response.url)
        if sitemap.problem:
            self.health.failed_source(source.name, f"{sitemap.problem} ({response.url})")
            return
        if response.url == source.url or response.meta.get("redirect_urls", [None])[0] == source.url:
            self.health.listed(source.name, response, 0)
            self.health.moved_if_redirected(source.name, response)
        if sitemap.kind == "sitemapindex":
            children = [c for c in sitemap.children if is_recent(c, source.recent_days)]
            children.sort(key=lambda c: c.newest_date or "", reverse=True)
            for child in children[:MAX_CHILD_SITEMAPS]:
                yield self.make_request(child.loc, source, "sitemap", self.parse_sitemap)
            return
        entries = [e for e in sitemap.entries if is_recent(e, source.recent_days)]
        self.health.count_listed(source.name, len(entries))
        links = [(entry.loc, entry.hints()) for entry in entries]
        yield from self.article_requests(source, links, listed_on=response.url)
