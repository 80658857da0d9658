"""The item pipeline that writes: articles, raw pages, topic scores and indicators, in batches.

A batch is one transaction, committed every ``STORE_BATCH_SIZE`` items or
``STORE_FLUSH_SECONDS`` seconds, whichever comes first, and when the crawl closes. A crawl
killed mid-batch loses only uncommitted rows, which the next crawl fetches again (their URLs
are not in the corpus, and the feed's ETag is saved only after the final commit). Every insert
is keyed on the article's ``url`` with ``ON CONFLICT DO NOTHING``, so a rerun never duplicates.
"""

from __future__ import annotations

import json
import logging
import time

from twisted.internet import task

from pipelines.corpus import shared_corpus
from pipelines.dedupe import assign_story
from pipelines.rawpages import pack

logger = logging.getLogger(__name__)

ARTICLE_COLUMNS = (
    "url", "response_url", "canonical_url", "source", "discovered_via", "fetched_at",
    "http_status", "status", "title", "authors", "published_at", "modified_at", "language",
    "site_name", "text", "comments", "word_count", "content_hash", "extractor_version", "flags",
    "relevant", "published_local",
)  # fmt: skip
INSERT_ARTICLE = (
    f"INSERT INTO articles ({', '.join(ARTICLE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ARTICLE_COLUMNS)}) ON CONFLICT(url) DO NOTHING"
)


class StorePipeline:
    """Writes each finished item to the corpus; see the module docstring for the guarantees.

    Settings: ``NKWATCH_DB``, ``STORE_BATCH_SIZE``, ``STORE_FLUSH_SECONDS``, ``STORE_KEEP_RAW``,
    ``STORE_KEEP_OFFTOPIC_TEXT``.
    """

    def __init__(self, crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.stats = crawler.stats
        self.batch_size = max(1, settings.getint("STORE_BATCH_SIZE", 50))
        self.flush_seconds = settings.getfloat("STORE_FLUSH_SECONDS", 1.0)
        self.keep_raw = settings.getbool("STORE_KEEP_RAW", True)
        self.keep_offtopic_text = settings.getbool("STORE_KEEP_OFFTOPIC_TEXT", False)
        self.pending: list = []
        self.last_flush = time.monotonic()
        self.timer: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None) -> None:
        self.db = shared_corpus(self.crawler)
        self.timer = task.LoopingCall(self._flush_if_stale)
        self.timer.start(max(0.1, self.flush_seconds / 2), now=False)

    def close_spider(self, spider=None) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        self.flush()

    def process_item(self, item, spider=None):
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self.flush()
        return item

    def _flush_if_stale(self) -> None:
        if self.pending and time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write every pending item in one transaction."""
        items, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if not items:
            return
        with self.db.atomic():
            for item in items:
                self._write(item)
        self.stats.inc_value("nkwatch/store_batches")

    def _write(self, item) -> None:
        write_item(self.db, item, self.stats, keep_raw=self.keep_raw,
                   keep_offtopic_text=self.keep_offtopic_text)  # fmt: skip


def write_item(db, item, stats, *, keep_raw: bool = True, keep_offtopic_text: bool = False) -> bool:
    """Insert one finished item (article, raw page, scores, indicators, story) in the caller's
    transaction; the single-machine store and the distributed writer both write through here.
    Returns False when the URL was already stored (nothing written)."""
    keep_text = item.status == "ok" and (item.relevant or keep_offtopic_text)
    status = item.status if item.status != "ok" or keep_text else "offtopic"
    row = {
        **{column: getattr(item, column, None) for column in ARTICLE_COLUMNS},
        "status": status,
        "authors": json.dumps(item.authors, ensure_ascii=False),
        "flags": json.dumps(
            item.flags + ([f"failed: {item.failure_reason}"] if item.failure_reason else []),
            ensure_ascii=False,
        ),
        "text": item.text if keep_text else None,
        "comments": item.comments if keep_text else None,
        "relevant": int(bool(item.relevant)),
    }
    cursor = db.execute(INSERT_ARTICLE, [row[c] for c in ARTICLE_COLUMNS])
    if cursor.rowcount == 0:
        stats.inc_value("nkwatch/store_already_present")
        return False
    article_id = cursor.lastrowid
    stats.inc_value("nkwatch/stored")
    stats.inc_value(f"nkwatch/stored/{item.source}")
    if status == "failed":
        stats.inc_value("nkwatch/stored_failed")
    elif status == "ok" and item.relevant:
        stats.inc_value("nkwatch/stored_relevant")
    if keep_raw and (item.raw_packed or item.body):
        db.execute(
            "INSERT INTO raw_pages (article_id, html_packed, encoding, content_type) "
            "VALUES (?, ?, ?, ?)",
            [article_id, item.raw_packed or pack(item.body), item.encoding, "text/html"],
        )
    for score in item.topic_scores:
        if score["passed"]:
            stats.inc_value(f"nkwatch/relevant/{score['topic']}")
    write_judgement(db, article_id, item.topic_scores, item.indicators)
    if status == "ok":
        story_id, new_story = assign_story(db, article_id, item)
        if new_story:
            stats.inc_value("nkwatch/new_stories")
    db.execute("DELETE FROM fetch_failures WHERE url = ?", [item.response_url])
    return True


def write_judgement(
    db, article_id: int, scores: list[dict], indicators: list[dict], *, replace: bool = False
) -> None:
    """An article's topic scores (with their evidence) and indicators; ``replace`` drops the ones
    stored before (``nkwatch reextract`` judges the new text again)."""
    if replace:
        db.execute("DELETE FROM topic_scores WHERE article_id = ?", [article_id])
        db.execute("DELETE FROM indicators WHERE article_id = ?", [article_id])
    db.conn.executemany(
        "INSERT INTO topic_scores (article_id, topic, score, passed, evidence) "
        "VALUES (?, ?, ?, ?, ?)",
        [(article_id, score["topic"], score["score"], int(score["passed"]),
          json.dumps(score.get("evidence", []), ensure_ascii=False)) for score in scores],
    )  # fmt: skip
    db.conn.executemany(
        "INSERT INTO indicators (article_id, kind, value, context) VALUES (?, ?, ?, ?)",
        [(article_id, i["kind"], i["value"], i.get("context")) for i in indicators],
    )
