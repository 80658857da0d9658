"""Per-site boilerplate: lines a site prints on many of its pages, learned and removed.

No single page can tell its slogan, hotline or "View Full Site" link from its story; a site's
pages together can. A line (normalised) that turns up on at least ``min_pages`` distinct pages
of a site, and on at least ``min_share`` of them, is that site's furniture. Counting is by
distinct page text, so a story republished on the same site twice does not teach its own lines,
and a page that would lose most of its words keeps them all (it is more likely a near-copy of
another story than a page made of furniture). What is learned depends only on the set of pages
seen, not their order, so ``nkwatch reextract`` (which learns from every stored page of a site
before cleaning any) gives the same text on every run. A crawl learns as it goes, starting from
what earlier crawls stored in ``site_boilerplate``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import statistics
import unicodedata
from collections import Counter, deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import sqlite_utils

from pipelines.corpus import utc_now
from pipelines.pagework import BOILERPLATE, request_stage

logger = logging.getLogger(__name__)

MIN_PAGES = 4  # a line on fewer pages than this is never learned
MIN_SHARE = 0.3  # ...nor one on fewer than this share of the site's pages
MAX_LINE_CHARS = 240  # longer lines are prose; furniture is short
MAX_REMOVED_SHARE = 0.5  # a page that would lose more of its words than this keeps them all
SHORT_SHARE = 0.25  # a body under this share of the site's median word count is flagged
MEDIAN_EVERY = 10  # pages between recomputations of a site's median body length
BUCKET_PAGES = 100  # lossy counting: rare lines are forgotten every this many pages of a site
COUNT_ERROR = 1 / BUCKET_PAGES  # ...so a kept count is short by at most this share of pages
_WS = re.compile(r"\s+")


def site_of(url: str | None) -> str:
    """The site a page belongs to: its host (and port), lower-case, without ``www.``."""
    netloc = urlsplit(url or "").netloc.lower().rsplit("@", 1)[-1]
    return netloc.removeprefix("www.")


def line_hash(line: str) -> str:
    """The key a line is counted under: NFKC, case-folded, white space collapsed."""
    if line.isascii():  # the same result without the Unicode passes, three times faster
        normal = " ".join(line.lower().split())
    else:
        normal = _WS.sub(" ", unicodedata.normalize("NFKC", line).casefold()).strip()
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=8).hexdigest()


def page_lines(text: str, comments: str = "") -> tuple[str, list[tuple[str, str]]]:
    """A page's identity (the hash of its text) and its countable lines, each once, as
    (line hash, the line as printed): what a site's counts need of a page."""
    lines: dict[str, str] = {}
    for line in (*text.splitlines(), *comments.splitlines()):
        line = line.strip()
        if line and len(line) <= MAX_LINE_CHARS:
            lines.setdefault(line_hash(line), line)
    return line_hash(text), list(lines.items())


def strip_text(
    text: str, learned: frozenset[str] | set[str], known: dict[str, str] | None = None
) -> tuple[str, int]:
    """The text without learned lines, and how many lines went (0: nothing or too much).

    ``known`` maps lines to their hashes where the caller has them already (``page_lines``).
    """
    if not learned or not text:
        return text, 0
    lines = text.splitlines()
    kept = [line for line in lines if not _is_learned(line.strip(), learned, known or {})]
    removed = len(lines) - len(kept)
    if not removed:
        return text, 0
    before, after = _words(text), _words("\n".join(kept))
    if after < before * (1 - MAX_REMOVED_SHARE):
        return text, 0
    return "\n".join(kept), removed


def _is_learned(line: str, learned: frozenset[str] | set[str], known: dict[str, str]) -> bool:
    if len(line) > MAX_LINE_CHARS:
        return False
    key = known.get(line)
    return (key if key is not None else line_hash(line)) in learned


def strip_lines(
    text: str, comments: str, learned: frozenset[str] | set[str],
    known: dict[str, str] | None = None,
) -> tuple[str, str, int]:
    """Text and comments without learned lines, and how many lines went in all."""
    text, removed = strip_text(text, learned, known)
    comments, removed_comments = strip_text(comments, learned, known)
    return text, comments, removed + removed_comments


@dataclass
class SiteBoilerplate:
    """What one site's pages have in common, and the cleaning that follows from it.

    Lines are counted with lossy counting (Manku and Motwani): every ``BUCKET_PAGES`` pages,
    lines whose count could not reach ``COUNT_ERROR`` of the pages seen are forgotten. A site
    prints a few new lines on every page (captions, subheads), so exact counts would grow with
    every page crawled; these stay bounded, and a line's count is short by at most
    ``COUNT_ERROR`` of the site's pages, far below the ``min_share`` that makes it furniture.
    """

    site: str
    pages: int = 0
    line_pages: Counter = field(default_factory=Counter)  # line hash -> distinct pages
    examples: dict[str, str] = field(default_factory=dict)  # line hash -> the line as printed
    word_counts: deque = field(default_factory=lambda: deque(maxlen=500))
    seen_pages: set[str] = field(default_factory=set)
    min_pages: int = MIN_PAGES
    min_share: float = MIN_SHARE
    undercount: dict[str, int] = field(default_factory=dict)  # how short a line's count may be
    _learned: frozenset[str] | None = None  # cached until a count or the threshold moves
    _learned_need: int = 0
    _median: float | None = None
    _median_pages: int = 0

    def observe(self, text: str, comments: str = "", word_count: int | None = None) -> None:
        """Count the lines of one page (its uncleaned extraction), once per distinct page."""
        page_key, lines = page_lines(text, comments)
        self.count_page(page_key, lines, word_count)

    def count_page(
        self, page_key: str, lines: list[tuple[str, str]], word_count: int | None = None
    ) -> None:
        """Count a page given as ``page_lines`` gives it (an extraction worker computes that)."""
        if page_key in self.seen_pages:
            return
        self.seen_pages.add(page_key)
        self.pages += 1
        if word_count is not None:
            self.word_counts.append(word_count)
        bucket = -(-self.pages // BUCKET_PAGES)
        need = self.need()
        for key, line in lines:
            count = self.line_pages[key] = self.line_pages.get(key, 0) + 1
            if count == 1:
                self.examples[key] = line
                self.undercount[key] = bucket - 1
            if count == need:
                self._learned = None
        if self.pages % BUCKET_PAGES == 0:
            self._forget_rare(bucket)

    def _forget_rare(self, bucket: int) -> None:
        rare = [key for key, count in self.line_pages.items()
                if count + self.undercount.get(key, 0) <= bucket]  # fmt: skip
        for key in rare:
            del self.line_pages[key]
            self.examples.pop(key, None)
            self.undercount.pop(key, None)

    def need(self) -> int:
        """Pages a line must be on to be learned, at the site's current page count."""
        return max(self.min_pages, math.ceil(self.min_share * self.pages))

    def learned(self) -> frozenset[str]:
        """Hashes of the lines this site prints on enough of its pages to be furniture."""
        need = self.need()
        if self._learned is None or need != self._learned_need:
            self._learned = frozenset(k for k, count in self.line_pages.items() if count >= need)
            self._learned_need = need
        return self._learned

    def strip(self, text: str) -> tuple[str, int]:
        """The text without learned lines, and how many lines went (0: nothing or too much)."""
        return strip_text(text, self.learned())

    def median_words(self) -> float | None:
        """The median body length of the site's recent pages (recomputed every few pages: over a
        window of hundreds it barely moves, and sorting it for every page showed in profiles)."""
        if not self.word_counts:
            return None
        if self._median is None or abs(self.pages - self._median_pages) >= MEDIAN_EVERY \
                or len(self.word_counts) < 50:  # fmt: skip
            self._median = statistics.median(self.word_counts)
            self._median_pages = self.pages
        return self._median

    def is_short(self, word_count: int) -> bool:
        """Is this body far shorter than the site's usual (once the site has enough pages)?"""
        if len(self.word_counts) < self.min_pages:
            return False
        median = self.median_words()
        return bool(median and word_count < SHORT_SHARE * median)


def _words(text: str) -> int:
    from pipelines.extract import count_words

    return count_words(text)


class SiteBoilerplates:
    """Every site's boilerplate, loaded from and saved to the corpus."""

    def __init__(self, *, min_pages: int = MIN_PAGES, min_share: float = MIN_SHARE) -> None:
        self.sites: dict[str, SiteBoilerplate] = {}
        self.min_pages, self.min_share = min_pages, min_share

    def site(self, url_or_site: str) -> SiteBoilerplate:
        site = site_of(url_or_site) if "/" in url_or_site else url_or_site
        if site not in self.sites:
            self.sites[site] = SiteBoilerplate(site, min_pages=self.min_pages,
                                               min_share=self.min_share)  # fmt: skip
        return self.sites[site]

    def clean(self, url: str, text: str, comments: str = "") -> tuple[str, str, int]:
        """Text and comments of a page of ``url``'s site without its learned lines."""
        site = self.site(url)
        text, removed = site.strip(text)
        comments, removed_comments = site.strip(comments)
        return text, comments, removed + removed_comments

    def load(self, db: sqlite_utils.Database, sites: list[str] | None = None) -> None:
        """Read what earlier crawls learned (all sites, or only ``sites``)."""
        if "site_profiles" not in db.table_names():
            return
        where, params = ("", []) if sites is None else (
            f" WHERE site IN ({','.join('?' for _ in sites)})", list(sites))  # fmt: skip
        for row in db.query("SELECT * FROM site_profiles" + where, params):
            site = self.site(row["site"])
            site.pages = row["pages"]
            if row["median_words"]:
                site.word_counts.extend([row["median_words"]] * min(row["pages"], 50))
        for row in db.query("SELECT * FROM site_boilerplate" + where, params):
            site = self.site(row["site"])
            site.line_pages[row["line_hash"]] = row["pages_seen"]
            site.examples[row["line_hash"]] = row["line"]

    def save(self, db: sqlite_utils.Database) -> None:
        """Replace each known site's counts in the corpus, in one transaction."""
        now = utc_now()
        with db.atomic():
            for name, site in sorted(self.sites.items()):
                db.execute("DELETE FROM site_boilerplate WHERE site = ?", [name])
                db.execute(
                    "INSERT OR REPLACE INTO site_profiles (site, pages, median_words, updated_at) "
                    "VALUES (?, ?, ?, ?)",
                    [name, site.pages, site.median_words(), now],
                )
                db.conn.executemany(
                    "INSERT INTO site_boilerplate (site, line_hash, line, pages_seen) "
                    "VALUES (?, ?, ?, ?)",
                    [(name, key, site.examples.get(key, ""), count)
                     for key, count in sorted(site.line_pages.items())],
                )  # fmt: skip

    def learned_lines(self, site: str) -> list[str]:
        """The learned lines of a site as printed, most widespread first (for people)."""
        entry = self.site(site)
        keys = sorted(entry.learned(), key=lambda k: (-entry.line_pages[k], entry.examples[k]))
        return [entry.examples[k] for k in keys]


class BoilerplatePipeline:
    """Learns each site's furniture from the pages of a crawl and removes it from their text.

    Runs after extraction and before relevance and dedupe, so scores and hashes see clean text.
    In a crawl the cleaning itself happens in the extraction worker (``pipelines.pagework``),
    with the learned lines sent along; this pipeline counts the page's lines for its site.
    Adds ``boilerplate-removed:N`` and ``short-for-site`` to ``item.flags``. Settings:
    ``BOILERPLATE_ENABLED``, ``BOILERPLATE_MIN_PAGES``, ``BOILERPLATE_MIN_SHARE``.
    """

    def __init__(self, crawler) -> None:
        from scrapy.exceptions import NotConfigured

        settings = crawler.settings
        if not settings.getbool("BOILERPLATE_ENABLED", True):
            raise NotConfigured("BOILERPLATE_ENABLED is off")
        self.crawler = crawler
        self.boilerplates = SiteBoilerplates(
            min_pages=settings.getint("BOILERPLATE_MIN_PAGES", MIN_PAGES),
            min_share=settings.getfloat("BOILERPLATE_MIN_SHARE", MIN_SHARE),
        )
        request_stage(crawler, BOILERPLATE, self.learned_for)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None) -> None:
        from pipelines.corpus import shared_corpus

        self.db = shared_corpus(self.crawler)
        self.boilerplates.load(self.db)

    def close_spider(self, spider=None) -> None:
        self.boilerplates.save(self.db)

    def learned_for(self, url: str) -> frozenset[str]:
        """The learned lines of ``url``'s site, for the extraction worker to remove."""
        return self.boilerplates.site(url).learned()

    def process_item(self, item, spider=None):
        if item.status != "ok" or not item.text:
            return item
        work = item.page_work
        if work is None or work.page_key is None:  # not cleaned by a worker: do it here
            self.boilerplates.site(item.response_url).observe(item.text, item.comments,
                                                              item.word_count)  # fmt: skip
            clean_item(item, self.boilerplates)
            return item
        site = self.boilerplates.site(item.response_url)
        site.count_page(work.page_key, work.line_hashes, item.word_count)
        add_health_flags(item, site, work.boilerplate_removed)
        return item


def clean_item(item, boilerplates: SiteBoilerplates) -> None:
    """Remove the site's learned lines from an extracted item and add the health flags."""
    from pipelines.extract import count_words

    site = boilerplates.site(item.response_url)
    text, comments, removed = boilerplates.clean(item.response_url, item.text, item.comments)
    if removed:
        item.text, item.comments = text, comments
        item.word_count = count_words(text)
    add_health_flags(item, site, removed)


def add_health_flags(item, site: SiteBoilerplate, removed: int) -> None:
    """``boilerplate-removed:N`` when lines went, ``short-for-site`` when the body is unusually
    short for its site."""
    if removed:
        item.flags = [*item.flags, f"boilerplate-removed:{removed}"]
    if site.is_short(item.word_count):
        item.flags = [*item.flags, "short-for-site"]
