"""The one item that flows through the pipelines: a fetched article page and what we learn of it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ArticleItem:
    """One fetched article page; each pipeline stage fills its own fields and passes it on."""

    # set by the spider (what was asked for and what came back)
    url: str  # canonical form of the requested URL: the key that stops re-fetching
    response_url: str
    source: str
    fetched_at: str
    http_status: int
    body: bytes = b""
    encoding: str | None = None  # Scrapy's verdict (headers, meta, BOM, detection)
    raw_packed: bytes = b""  # the body packed by a worker (pipelines.rawpages), for raw_pages
    source_trust: float = 1.0  # the source's trust: content farms rank below the outlets they copy
    discovered_via: str = ""  # the feed, sitemap or section page that listed it
    hints: dict[str, Any] = field(
        default_factory=dict
    )  # feed entry's title, date, authors, language

    # set by extract
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    published_at: str | None = None  # UTC: what dates are sorted and filtered by
    published_local: str | None = None  # the same moment with the offset the page (feed) gave
    modified_at: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    site_name: str | None = None
    text: str = ""
    comments: str = ""
    word_count: int = 0
    extractor_version: str = ""
    flags: list[str] = field(default_factory=list)  # e.g. "date-in-future", "dates-disagree"
    status: str = "ok"  # "ok" | "failed" (extraction failed: no text, reason in failure_reason)
    failure_reason: str | None = None

    # set by relevance
    topic_scores: list[dict[str, Any]] = field(default_factory=list)
    indicators: list[dict[str, Any]] = field(default_factory=list)
    relevant: bool = True

    # set by dedupe
    content_hash: str = ""
    signature: bytes = b""
    duplicate_of: int | None = None  # article id of an exact or near duplicate already stored

    # set by pagework: the worker's results, read by the stage pipelines; never stored or queued
    page_work: Any = field(default=None, repr=False, compare=False, metadata={"transient": True})


def persistent_fields(item: ArticleItem) -> dict[str, Any]:
    """The item's fields as stored and queued: everything but the transient ones."""
    return {
        f.name: getattr(item, f.name)
        for f in dataclasses.fields(item)
        if not f.metadata.get("transient")
    }
