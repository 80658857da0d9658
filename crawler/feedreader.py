"""Reading RSS and Atom: the one place that parses feeds (with feedparser, from fetched bytes).

Apart from the spider so that an extraction worker can parse a feed without importing Scrapy
(``FeedSpider`` hands large feeds to the worker pool), and so that ``sources add`` reads a feed
exactly as a crawl does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser

from pipelines.dates import to_utc_iso

ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.I)


@dataclass
class FeedEntry:
    link: str
    title: str = ""
    published_at: str | None = None
    authors: list[str] = field(default_factory=list)
    summary: str = ""

    def hints(self) -> dict[str, Any]:
        return {"title": self.title, "published_at": self.published_at, "authors": self.authors}


@dataclass
class ParsedFeed:
    """What a feed holds, or why it is not a usable feed (``problem``)."""

    title: str = ""
    kind: str = ""
    entries: list[FeedEntry] = field(default_factory=list)
    problem: str | None = None
    warning: str | None = None

    @property
    def newest(self) -> FeedEntry | None:
        dated = [e for e in self.entries if e.published_at]
        return max(dated, key=lambda e: e.published_at) if dated else None


def parse_feed(body: bytes, url: str, content_type: str = "", limit: int = 500) -> ParsedFeed:
    """Parse feed bytes; entry links are made absolute against ``url``; newest first."""
    if not body.strip():
        return ParsedFeed(problem="empty response")
    if ENTITY_DECLARATION.search(body[:65536]):
        return ParsedFeed(problem="refused: XML with entity declarations (entity expansion or "
                          "external entity)")  # fmt: skip
    parsed = feedparser.parse(
        body, response_headers={"content-location": url, "content-type": content_type or "text/xml"}
    )
    version = parsed.get("version") or ""
    if not version:
        head = body[:512].lstrip().lower()
        looks_html = head.startswith((b"<!doctype html", b"<html")) or b"<html" in head
        reason = "an HTML page, not a feed" if looks_html else "not an RSS/Atom feed"
        if parsed.get("bozo"):
            reason += f" ({_bozo_reason(parsed)})" if not looks_html else ""
        return ParsedFeed(problem=reason)
    entries = []
    seen_links: set[str] = set()
    duplicates = 0
    for raw in parsed.entries:
        # FeedBurner-style feeds link through a tracking redirect and name the article itself
        # in feedburner:origLink: fetch that, so the stored URL is the publisher's.
        link = raw.get("feedburner_origlink") or raw.get("link") or _first_alternate(raw) or ""
        if not link:
            continue
        if link in seen_links:
            duplicates += 1
            continue
        seen_links.add(link)
        stamp = raw.get("published_parsed") or raw.get("updated_parsed")
        entries.append(
            FeedEntry(
                link=urljoin(url, link.strip()),
                title=(raw.get("title") or "").strip(),
                published_at=to_utc_iso(stamp) if stamp else None,
                authors=[a.get("name") for a in raw.get("authors", []) if a.get("name")],
                summary=(raw.get("summary") or "")[:500],
            )
        )
    entries.sort(key=lambda e: e.published_at or "", reverse=True)
    result = ParsedFeed(
        title=(parsed.feed.get("title") or "").strip(), kind=version, entries=entries[:limit]
    )
    warnings = []
    if parsed.get("bozo"):
        warnings.append(f"malformed feed, read leniently: {_bozo_reason(parsed)}")
    if duplicates:
        warnings.append(f"{duplicates} duplicate entries skipped")
    if len(entries) > limit:
        warnings.append(f"{len(entries)} entries, cut to the newest {limit}")
    if not entries:
        warnings.append("feed has no entries")
    result.warning = "; ".join(warnings) or None
    return result


def _bozo_reason(parsed: Any) -> str:
    error = parsed.get("bozo_exception")
    return f"{type(error).__name__}: {error}".splitlines()[0][:160] if error else "malformed"


def _first_alternate(raw: Any) -> str | None:
    for link in raw.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    return None
