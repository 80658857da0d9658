"""Reading RSS, Atom and JSON Feed: the one place that parses feeds (feedparser for RSS and Atom).

Apart from the spider so that an extraction worker can parse a feed without importing Scrapy
(``FeedSpider`` hands large feeds to the worker pool), and so that ``sources add`` reads a feed
exactly as a crawl does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import feedparser

from pipelines.dates import to_local_iso, to_utc_iso

ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.I)


@dataclass
class FeedEntry:
    link: str
    title: str = ""
    published_at: str | None = None
    authors: list[str] = field(default_factory=list)
    summary: str = ""
    published_local: str | None = None  # as the feed wrote it, with its UTC offset

    def hints(self) -> dict[str, Any]:
        return {"title": self.title, "published_at": self.published_at, "authors": self.authors,
                "published_local": self.published_local}  # fmt: skip


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
    if body.lstrip()[:1] == b"{":
        return _parse_json_feed(body, url, limit)
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
    for raw in parsed.entries:
        # FeedBurner-style feeds link through a tracking redirect and name the article itself
        # in feedburner:origLink: fetch that, so the stored URL is the publisher's.
        link = raw.get("feedburner_origlink") or raw.get("link") or _first_alternate(raw) or ""
        stamp = raw.get("published_parsed") or raw.get("updated_parsed")
        entries.append(
            FeedEntry(
                link=link,
                title=(raw.get("title") or "").strip(),
                published_at=to_utc_iso(stamp) if stamp else None,
                authors=[a.get("name") for a in raw.get("authors", []) if a.get("name")],
                summary=(raw.get("summary") or "")[:500],
                published_local=to_local_iso(raw.get("published") or raw.get("updated"))
                if stamp else None,
            )
        )
    warning = f"malformed feed, read leniently: {_bozo_reason(parsed)}" if parsed.get("bozo") else None
    title = (parsed.feed.get("title") or "").strip()
    return _finish(entries, url, title, version, limit, warning)


def _parse_json_feed(body: bytes, url: str, limit: int) -> ParsedFeed:
    """A JSON Feed (jsonfeed.org, versions 1 and 1.1), which feedparser does not read."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        return ParsedFeed(problem=f"not a feed: broken JSON ({str(error).splitlines()[0][:120]})")
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or "jsonfeed.org" not in version:
        return ParsedFeed(problem="not a feed: JSON without a jsonfeed.org version")
    items = data.get("items")
    entries = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url") or ""
        people = item.get("authors") or ([item["author"]] if item.get("author") else [])
        summary = item.get("summary") or item.get("content_text") or ""
        stamp = item.get("date_published") or item.get("date_modified")
        entries.append(
            FeedEntry(
                link=link if isinstance(link, str) else "",
                title=str(item.get("title") or "").strip(),
                published_at=to_utc_iso(stamp),
                authors=[p["name"] for p in people if isinstance(p, dict) and p.get("name")],
                summary=str(summary)[:500],
                published_local=to_local_iso(stamp),
            )
        )
    kind = "json" + version.rstrip("/").rsplit("/", 1)[-1].replace("version", "").replace(".", "")
    return _finish(entries, url, str(data.get("title") or "").strip(), kind, limit, None)


def _finish(
    entries: list[FeedEntry], url: str, title: str, kind: str, limit: int, warning: str | None
) -> ParsedFeed:
    """Entries with a link, made absolute and each once, newest first, cut to ``limit``."""
    kept: list[FeedEntry] = []
    seen_links: set[str] = set()
    duplicates = 0
    for entry in entries:
        if not entry.link.strip():
            continue
        if entry.link in seen_links:
            duplicates += 1
            continue
        seen_links.add(entry.link)
        entry.link = urljoin(url, entry.link.strip())
        kept.append(entry)
    kept.sort(key=lambda e: e.published_at or "", reverse=True)
    warnings = [warning] if warning else []
    if duplicates:
        warnings.append(f"{duplicates} duplicate entries skipped")
    if len(kept) > limit:
        warnings.append(f"{len(kept)} entries, cut to the newest {limit}")
    if not kept:
        warnings.append("feed has no entries")
    return ParsedFeed(title=title, kind=kind, entries=kept[:limit],
                      warning="; ".join(warnings) or None)  # fmt: skip


def _bozo_reason(parsed: Any) -> str:
    error = parsed.get("bozo_exception")
    return f"{type(error).__name__}: {error}".splitlines()[0][:160] if error else "malformed"


def _first_alternate(raw: Any) -> str | None:
    for link in raw.get("links", []):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    return None
