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

logger = logging.getLogger(__name__)

MIN_PAGES = 4  # a line on fewer pages than this is never learned
MIN_SHARE = 0.3  # ...nor one on fewer than this share of the site's pages
MAX_LINE_CHARS = 240  # longer lines are prose; furniture is short
MAX_REMOVED_SHARE = 0.5  # a page that would lose more of its words than this keeps them all
SHORT_SHARE = 0.25  # a body under this share of the site's median word count is flagged
_WS = re.compile(r"\s+")


def site_of(url: str | None) -> str:
    """The site a page belongs to: its host (and port), lower-case, without ``www.``."""
    netloc = urlsplit(url or "").netloc.lower().rsplit("@", 1)[-1]
    return netloc.removeprefix("www.")


def line_hash(line: str) -> str:
    """The key a line is counted under: NFKC, case-folded, white space collapsed."""
    normal = _WS.sub(" ", unicodedata.normalize("NFKC", line).casefold()).strip()
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=8).hexdigest()


@dataclass
class SiteBoilerplate:
    """What one site's pages have in common, and the cleaning that follows from it."""

    site: str
    pages: int = 0
    line_pages: Counter = field(default_factory=Counter)  # line hash -> distinct pages
    examples: dict[str, str] = field(default_factory=dict)  # line hash -> the line as printed
    word_counts: deque = field(default_factory=lambda: deque(maxlen=500))
    seen_pages: set[str] = field(default_factory=set)
    min_pages: int = MIN_PAGES
    min_share: float = MIN_SHARE

    def observe(self, text: str, comments: str = "", word_count: int | None = None) -> None:
        """Count the lines of one page (its uncleaned extraction), once per distinct page."""
        page_key = line_hash(text)
        if page_key in self.seen_pages:
            return
        self.seen_pages.add(page_key)
        self.pages += 1
        if word_count is not None:
            self.word_counts.append(word_count)
        for line in {*text.splitlines(), *comments.splitlines()}:
            line = line.strip()
            if line and len(line) <= MAX_LINE_CHARS:
                key = line_hash(line)
                self.line_pages[key] += 1
                self.examples.setdefault(key, line)

    def learned(self) -> set[str]:
        """Hashes of the lines this site prints on enough of its pages to be furniture."""
        need = max(self.min_pages, math.ceil(self.min_share * self.pages))
        return {key for key, count in self.line_pages.items() if count >= need}

    def strip(self, text: str) -> tuple[str, int]:
        """The text without learned lines, and how many lines went (0: nothing or too much)."""
        learned = self.learned()
        if not learned:
            return text, 0
        lines = text.splitlines()
        kept = [line for line in lines if line_hash(line.strip()) not in learned]
        removed = len(lines) - len(kept)
        if not removed:
            return text, 0
        before, after = _words(text), _words("\n".join(kept))
        if after < before * (1 - MAX_REMOVED_SHARE):
            return text, 0
        return "\n".join(kept), removed

    def median_words(self) -> float | None:
        return statistics.median(self.word_counts) if self.word_counts else None

    def is_short(self, word_count: int) -> bool:
        """Is this body far shorter than the site's usual (once the site has enough pages)?"""
        median = self.median_words()
        enough = len(self.word_counts) >= self.min_pages
        return bool(enough and median and word_count < SHORT_SHARE * median)


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

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None) -> None:
        from pipelines.corpus import shared_corpus

        self.db = shared_corpus(self.crawler)
        self.boilerplates.load(self.db)

    def close_spider(self, spider=None) -> None:
        self.boilerplates.save(self.db)

    def process_item(self, item, spider=None):
        if item.status != "ok" or not item.text:
            return item
        site = self.boilerplates.site(item.response_url)
        site.observe(item.text, item.comments, item.word_count)
        clean_item(item, self.boilerplates)
        return item


def clean_item(item, boilerplates: SiteBoilerplates) -> None:
    """Remove the site's learned lines from an extracted item and add the health flags."""
    from pipelines.extract import count_words

    site = boilerplates.site(item.response_url)
    text, comments, removed = boilerplates.clean(item.response_url, item.text, item.comments)
    if removed:
        item.text, item.comments = text, comments
        item.word_count = count_words(text)
        item.flags = [*item.flags, f"boilerplate-removed:{removed}"]
    if site.is_short(item.word_count):
        item.flags = [*item.flags, "short-for-site"]
