"""Finding and checking sources for ``nkwatch sources add/check``, outside any crawl.

A plain blocking fetch is enough here: one user, a handful of URLs, and an answer to print.
Parsing goes through the spiders' own parsers, so ``check`` says exactly what a crawl would see.
"""

from __future__ import annotations

import gzip
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import lxml.html

from crawler import settings as defaults
from crawler.feedreader import parse_feed
from crawler.sources import Source
from crawler.spiders.sitemaps import parse_sitemap

MAX_BYTES = 10 * 1024 * 1024
TIMEOUT = 20
COMMON_FEED_PATHS = ("feed", "rss", "rss.xml", "feed.xml", "atom.xml", "index.xml", "feeds/atom.xml",
                     "rss/all.xml", "sitemap-news.xml", "news-sitemap.xml", "sitemap_news.xml")  # fmt: skip
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml",
              "application/feed+json", "text/xml", "application/xml")  # fmt: skip


class DiscoveryError(ValueError):
    """A URL that cannot become a source; the message says why in one line."""


@dataclass
class Fetched:
    url: str
    status: int
    content_type: str
    body: bytes


@dataclass
class Candidate:
    """Something that could be added as a source, with what a fetch of it found."""

    url: str
    kind: str
    title: str = ""
    entries: int = 0
    newest_title: str = ""
    newest_at: str | None = None
    warning: str | None = None
    found_by: str = ""

    def describe(self) -> str:
        newest = (
            f"; newest {self.newest_at or 'undated'}: {self.newest_title[:70]}"
            if self.entries
            else ""
        )
        return f"{self.kind} {self.url} — {self.entries} entries{newest}"


@dataclass
class Discovery:
    candidates: list[Candidate] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)


def fetch(url: str) -> Fetched:
    """GET a URL with nkwatch's User-Agent; errors become one-line DiscoveryErrors."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise DiscoveryError(f"{url}: only http(s) URLs can be sources")
    request = urllib.request.Request(url, headers={"User-Agent": defaults.USER_AGENT,
                                                   "Accept-Encoding": "gzip"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = response.read(MAX_BYTES + 1)
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)[: MAX_BYTES + 1]
            return Fetched(response.url, response.status,
                           response.headers.get("Content-Type", ""), body)  # fmt: skip
    except urllib.error.HTTPError as error:
        if error.code in (301, 302, 303, 307, 308):
            raise DiscoveryError(f"{url}: too many redirects (a redirect loop?)") from None
        raise DiscoveryError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DiscoveryError(f"{url}: cannot connect: {error.reason}") from None
    except TimeoutError:
        raise DiscoveryError(f"{url}: timed out after {TIMEOUT} s") from None
    except OSError as error:
        raise DiscoveryError(f"{url}: {error.strerror or error}") from None


def inspect(fetched: Fetched) -> Candidate | None:
    """What the fetched bytes are as a source: a feed or a sitemap (None if neither)."""
    feed = parse_feed(fetched.body, fetched.url, fetched.content_type)
    if not feed.problem:
        newest = feed.newest or (feed.entries[0] if feed.entries else None)
        kind = "atom" if feed.kind.startswith("atom") else "rss"
        return Candidate(fetched.url, kind, feed.title, len(feed.entries),
                         newest.title if newest else "", newest.published_at if newest else None,
                         feed.warning)  # fmt: skip
    sitemap = parse_sitemap(fetched.body, fetched.url)
    if not sitemap.problem:
        items = sitemap.entries or sitemap.children
        is_news = any(e.published_at for e in sitemap.entries)
        newest = max(items, key=lambda e: e.newest_date or "", default=None)
        return Candidate(fetched.url, "news-sitemap" if is_news else "sitemap", "", len(items),
                         newest.title if newest else "", newest.newest_date if newest else None)  # fmt: skip
    return None


def discover(url: str) -> Discovery:
    """A feed or sitemap URL is its own candidate; a homepage is searched for feeds.

    Search order: ``<link rel="alternate">`` feeds, then ``Sitemap:`` lines in robots.txt,
    then common feed paths. Only candidates that fetch and parse are returned.
    """
    page = fetch(url)
    found = Discovery(tried=[page.url])
    direct = inspect(page)
    if direct:
        direct.found_by = "the URL itself"
        found.candidates.append(direct)
        return found
    if b"<html" not in page.body[:4096].lower() and b"<!doctype" not in page.body[:4096].lower():
        raise DiscoveryError(
            f"{url}: neither a feed, a sitemap nor an HTML page ({page.content_type or 'no content type'})"
        )
    links = [(link, "a <link rel=alternate> on the page") for link in _alternate_links(page)]
    links += [(link, "robots.txt") for link in _robots_sitemaps(page.url)]
    links += [(urljoin(page.url, "/" + path), "a common path") for path in COMMON_FEED_PATHS]
    seen: set[str] = set()
    for link, how in links:
        if link in seen:
            continue
        seen.add(link)
        found.tried.append(link)
        try:
            candidate = inspect(fetch(link))
        except DiscoveryError:
            continue
        if candidate and candidate.url not in {c.url for c in found.candidates}:
            candidate.found_by = how
            found.candidates.append(candidate)
    return found


def _alternate_links(page: Fetched) -> list[str]:
    try:
        tree = lxml.html.fromstring(page.body)
    except (lxml.etree.ParserError, ValueError):
        return []
    links = []
    for node in tree.iter("link"):
        rel = (node.get("rel") or "").lower().split()
        kind = (node.get("type") or "").lower()
        if "alternate" in rel and kind in FEED_TYPES and node.get("href"):
            links.append(urljoin(page.url, node.get("href").strip()))
    return links


def _robots_sitemaps(url: str) -> list[str]:
    try:
        robots = fetch(urljoin(url, "/robots.txt"))
    except DiscoveryError:
        return []
    text = robots.body.decode("utf-8", "replace")
    return [m.group(1).strip() for m in re.finditer(r"(?im)^\s*sitemap:\s*(\S+)", text)]


def suggest_name(candidate: Candidate, taken: set[str]) -> str:
    """A source name from host and path: ``example-com-rss-all``; made unique against ``taken``."""
    parts = urlsplit(candidate.url)
    host = (parts.hostname or "source").removeprefix("www.")
    if parts.port:
        host += f"-{parts.port}"
    path = re.sub(r"\.(xml|rss|atom|rdf)$", "", parts.path.strip("/"))
    raw = f"{host}-{path}" if path else host
    base = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:60] or "source"
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    return name


def is_private_host(url: str) -> bool:
    """Loopback, private, link-local and similar: such sources must opt in (allow_private)."""
    from crawler.addresses import is_public_host

    return not is_public_host(urlsplit(url).hostname or "")


def candidate_source(candidate: Candidate, name: str, interval: int, language: str) -> Source:
    return Source(name=name, url=candidate.url, kind=candidate.kind, interval_minutes=interval,
                  language=language, allow_private=is_private_host(candidate.url))  # fmt: skip
