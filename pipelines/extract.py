"""Extraction: the one module that imports trafilatura.

``extract_article(html, url=None)`` turns one page into clean body text, reader comments kept
apart, and metadata. Everything else (the pipeline, ``nkwatch extract``, ``reextract``, the
benchmarks) calls it, so there is exactly one definition of "the text of a page".
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import re
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import lxml.html
import trafilatura
from trafilatura.settings import Extractor, use_config

from pipelines.decode import decode_html

logger = logging.getLogger(__name__)

EXTRACTOR_VERSION = f"nkwatch-1+trafilatura-{trafilatura.__version__}"
MIN_WORDS = 20
MAX_HTML_BYTES = 20 * 1024 * 1024

# Lines that are page furniture on any site that prints them alone on a line: share and print
# tools, "read more" and subscription prompts. Matched whole, case-insensitively.
CHROME_LINES = frozenset(
    line.casefold()
    for line in """
email story|email this story|e-mail this story|print story|print this story|print this article
comment on this story|view full site|more listening options|share this story|share this article
share on facebook|share on twitter|share on x|share via email|share|tweet|print|email
read more|read the full story|continue reading|advertisement|sponsored content|related stories
related articles|most read|most viewed|popular|subscribe|sign up for our newsletter
login to leave a comment|log in to comment|leave a comment|comments|back to top|listen
download our app|skip to content|skip to main content|cookie settings|accept cookies
""".replace("\n", "|").split("|")
    if line.strip()
)
_WS = re.compile(r"[ \t\u00a0\u3000]+")
_SCRIPT_RANGES = {
    "ko": re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
    "ja": re.compile(r"[\u3040-\u30ff]"),
    "zh": re.compile(r"[\u4e00-\u9fff]"),
}


@dataclass
class ExtractedArticle:
    """Clean text and metadata of one page."""

    text: str
    comments: str = ""
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    published_at: str | None = None
    modified_at: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    site_name: str | None = None
    word_count: int = 0
    extractor_version: str = EXTRACTOR_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Extraction:
    """The article, or None with the reason it could not be extracted."""

    article: ExtractedArticle | None
    reason: str | None = None


def build_extractor(*, favor: str = "balanced", url: str | None = None) -> Extractor:
    """The one trafilatura configuration nkwatch uses, built from the ``EXTRACT_*`` settings."""
    config = use_config()
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # signals do not work in worker processes
    config.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")
    return Extractor(
        config=config,
        output_format="python",
        precision=favor == "precision",
        recall=favor == "recall",
        comments=True,  # extracted so they can be kept apart, never mixed into the body
        tables=True,
        dedup=False,
        with_metadata=True,
        url=url,
    )


def extract_article(
    html: bytes | str,
    url: str | None = None,
    *,
    encoding: str | None = None,
    favor: str = "balanced",
    min_words: int = MIN_WORDS,
) -> Extraction:
    """Extract one page: clean body text, comments apart, and metadata; or None with the reason."""
    if isinstance(html, bytes):
        if len(html) > MAX_HTML_BYTES:
            return Extraction(None, f"page too large ({len(html) // 1024 // 1024} MB)")
        if _looks_binary(html):
            return Extraction(None, "not HTML: binary content")
        html = decode_html(html, encoding)
    if not html.strip():
        return Extraction(None, "empty page")
    try:
        tree = lxml.html.fromstring(html)
    except (lxml.etree.ParserError, ValueError) as error:
        return Extraction(None, f"unparseable HTML: {error}")
    options = build_extractor(favor=favor, url=url)
    try:
        document = trafilatura.bare_extraction(tree, url=url, options=options)
    except Exception as error:  # trafilatura raises assorted errors on broken trees
        return Extraction(None, f"extractor failed: {type(error).__name__}: {error}")
    if document is None or not (document.text or "").strip():
        return Extraction(None, "no article body found")
    text = clean_lines(document.text, title=document.title)
    word_count = count_words(text)
    if word_count < min_words:
        return Extraction(None, f"body too short ({word_count} words)")
    meta = page_metadata(tree)
    article = ExtractedArticle(
        text=text,
        comments=clean_lines(document.comments or ""),
        title=meta.get("title") or document.title,
        authors=split_authors(meta.get("authors") or document.author),
        published_at=meta.get("published_at") or _as_date(document.date),
        modified_at=meta.get("modified_at"),
        language=detect_language(text, meta.get("lang")),
        canonical_url=meta.get("canonical_url") or document.url,
        site_name=meta.get("site_name") or document.sitename,
        word_count=word_count,
    )
    return Extraction(article)


def clean_lines(text: str, *, title: str | None = None) -> str:
    """Normalise white space, drop furniture lines and lines repeated verbatim (a caption twice)."""
    seen: set[str] = set()
    kept: list[str] = []
    skip = {title.casefold()} if title else set()
    for raw in text.splitlines():
        line = _WS.sub(" ", unicodedata.normalize("NFC", raw)).strip()
        folded = line.casefold().rstrip(":")
        if not line or folded in CHROME_LINES or folded in skip:
            continue
        if len(line) > 30 and folded in seen:
            continue
        seen.add(folded)
        kept.append(line)
    return "\n".join(kept)


def count_words(text: str) -> int:
    """Words in Latin text; in Chinese/Japanese/Korean, every two CJK characters count as one."""
    cjk = sum(1 for ch in text if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7a3")
    latin = len(re.findall(r"[^\W\d_]{2,}", re.sub(r"[\u3040-\u9fff\uac00-\ud7a3]", " ", text)))
    return latin + cjk // 2


def detect_language(text: str, declared: str | None = None) -> str | None:
    """The language of the body text; the page's lang attribute only where the script agrees."""
    sample = text[:3000]
    counts = {lang: len(pattern.findall(sample)) for lang, pattern in _SCRIPT_RANGES.items()}
    letters = max(1, sum(ch.isalpha() for ch in sample))
    if counts["ko"] / letters > 0.2:
        return "ko"
    if counts["ja"] / letters > 0.05:
        return "ja"
    if counts["zh"] / letters > 0.3:
        return "zh"
    declared = (declared or "").split("-")[0].lower() or None
    if declared and declared not in _SCRIPT_RANGES:
        return declared
    try:
        import py3langid

        return py3langid.classify(sample)[0]
    except ImportError:  # optional: without it a Latin-script page keeps its declared language
        return declared


def split_authors(value: str | list[str] | None) -> list[str]:
    """Author names from a byline string ("A; B", "A and B", "By A") or a list."""
    if not value:
        return []
    names = value if isinstance(value, list) else re.split(r";|,| and |\|", value)
    cleaned = [re.sub(r"^(by|written by)\s+", "", n.strip(), flags=re.I).strip() for n in names]
    return [n for n in dict.fromkeys(cleaned) if n and len(n) < 80]


def page_metadata(tree: lxml.html.HtmlElement) -> dict[str, Any]:
    """Metadata as the page declares it: JSON-LD first, then Open Graph/meta tags, then markup."""
    found: dict[str, Any] = {}
    for ld in _json_ld_articles(tree):
        found.setdefault("title", ld.get("headline"))
        found.setdefault("published_at", _as_datetime(ld.get("datePublished")))
        found.setdefault("modified_at", _as_datetime(ld.get("dateModified")))
        found.setdefault("authors", _ld_names(ld.get("author")))
        publisher = ld.get("publisher")
        if isinstance(publisher, dict):
            found.setdefault("site_name", publisher.get("name"))
    metas = {
        (m.get("property") or m.get("name") or "").lower(): m.get("content")
        for m in tree.iter("meta")
        if m.get("content")
    }
    for key, names in {
        "title": ("og:title", "twitter:title"),
        "published_at": ("article:published_time", "og:published_time", "pubdate", "date"),
        "modified_at": ("article:modified_time", "og:updated_time"),
        "site_name": ("og:site_name", "application-name"),
        "authors": ("author", "article:author"),
    }.items():
        for name in names:
            if not found.get(key) and metas.get(name):
                value = metas[name]
                found[key] = _as_datetime(value) if key.endswith("_at") else value.strip()
    if not found.get("published_at"):
        for node in tree.iter("time"):
            if node.get("datetime"):
                found["published_at"] = _as_datetime(node.get("datetime"))
                break
    for link in tree.iter("link"):
        if (link.get("rel") or "").lower() == "canonical" and link.get("href"):
            found["canonical_url"] = link.get("href").strip()
    html_node = tree if tree.tag == "html" else tree.getroottree().getroot()
    found["lang"] = html_node.get("lang")
    return {k: v for k, v in found.items() if v}


def _json_ld_articles(tree: lxml.html.HtmlElement) -> list[dict[str, Any]]:
    found = []
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        stack = data if isinstance(data, list) else data.get("@graph", [data])
        for node in stack:
            kind = node.get("@type") if isinstance(node, dict) else None
            kinds = kind if isinstance(kind, list) else [kind]
            if any(k and "Article" in k for k in kinds):
                found.append(node)
    return found


def _ld_names(value: Any) -> list[str] | None:
    if not value:
        return None
    items = value if isinstance(value, list) else [value]
    names = [i.get("name") if isinstance(i, dict) else str(i) for i in items]
    return [n for n in names if n] or None


def _as_datetime(value: str | None) -> str | None:
    """An ISO-8601 string as UTC ``YYYY-MM-DDTHH:MM:SSZ`` (or a date alone); None if unreadable."""
    from pipelines.dates import to_utc_iso

    return to_utc_iso(value)


def _as_date(value: str | None) -> str | None:
    return _as_datetime(value)


def _looks_binary(body: bytes) -> bool:
    head = body[:4096]
    if head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b")):
        return True
    return head.count(b"\x00") > 8


class ExtractPipeline:
    """Runs ``extract_article`` on each fetched page in a pool of worker processes.

    Extraction is CPU-bound; on the reactor thread it would stall downloading and leave the
    other cores idle. Settings: ``EXTRACT_WORKERS`` (None: one per core, 0: inline),
    ``EXTRACT_MIN_WORDS``, ``EXTRACT_FAVOR``. Scrapy's scraper slot (``SCRAPER_SLOT_MAX_ACTIVE_SIZE``)
    bounds how many pages wait here, which is the backpressure on the downloader.
    """

    def __init__(self, crawler) -> None:
        settings = crawler.settings
        self.stats = crawler.stats
        workers = settings.get("EXTRACT_WORKERS")
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        self.options = {
            "min_words": settings.getint("EXTRACT_MIN_WORDS", MIN_WORDS),
            "favor": settings.get("EXTRACT_FAVOR", "balanced"),
        }
        self.pool: ProcessPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None) -> None:
        if self.workers > 0:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["pipelines.extract"])
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context)

    def close_spider(self, spider=None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    async def process_item(self, item, spider=None):
        args = (item.body, item.response_url)
        kwargs = {"encoding": item.encoding, **self.options}
        if self.pool is None:
            result = extract_article(*args, **kwargs)
        else:
            result = await asyncio.wrap_future(self.pool.submit(extract_article, *args, **kwargs))
        apply_extraction(item, result)
        if item.status != "ok":
            self.stats.inc_value(f"nkwatch/extract_failed/{item.source}")
            self.stats.inc_value("nkwatch/extract_failed")
            logger.warning("extraction failed: %s: %s", item.response_url, item.failure_reason)
        return item


def apply_extraction(item: Any, result: Extraction) -> None:
    """Copy an extraction onto the item; the feed entry fills what the page did not say."""
    item.extractor_version = EXTRACTOR_VERSION
    hints = item.hints or {}
    if result.article is None:
        item.status, item.failure_reason = "failed", result.reason
        item.title = item.title or hints.get("title")
        return
    article = result.article
    item.status, item.failure_reason = "ok", None
    item.text, item.comments = article.text, article.comments
    item.title = article.title or hints.get("title")
    item.authors = article.authors or list(hints.get("authors") or [])
    item.published_at = article.published_at or hints.get("published_at")
    item.modified_at = article.modified_at
    item.language = article.language or hints.get("language")
    item.canonical_url = article.canonical_url
    item.site_name = article.site_name
    item.word_count = article.word_count
    item.flags = date_flags(item.published_at, hints.get("published_at"))


def date_flags(published_at: str | None, listed_at: str | None) -> list[str]:
    """Flag a publication date in the future or far from the date the feed gave."""
    flags = []
    now = datetime.now(UTC).isoformat()
    if published_at and published_at > now:
        flags.append("date-in-future")
    if published_at and listed_at and published_at[:10] != listed_at[:10]:
        if abs((_day(published_at) - _day(listed_at)).days) > 2:
            flags.append("dates-disagree")
    return flags


def _day(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp[:10])
