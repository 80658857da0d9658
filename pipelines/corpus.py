"""The corpus: the only module that knows table shapes (schema, migrations) and the shared queries.

Every writer and reader opens the database through ``open_corpus`` so WAL mode, the busy
timeout and the migrations are applied the same way everywhere. Migrations are numbered
functions; ``PRAGMA user_version`` records how far a file has come, so an old database is
upgraded in place and a new one is built by the same steps.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from pipelines.dates import to_utc_iso

Migration = Callable[[sqlite_utils.Database], None]


def utc_now() -> str:
    """Now as UTC ISO-8601 with seconds, the one timestamp format the corpus stores."""
    return to_utc_iso(datetime.now(UTC))


def _m001_core(db: sqlite_utils.Database) -> None:
    db["articles"].create(
        {
            "id": int,
            "url": str,  # url_key of the requested URL: what stops a second fetch
            "response_url": str,
            "canonical_url": str,  # rel=canonical (or the final URL), in url_key form
            "source": str,
            "discovered_via": str,
            "fetched_at": str,
            "http_status": int,
            "status": str,  # "ok" (text kept) | "offtopic" (text dropped) | "duplicate"
            "title": str,
            "authors": str,  # JSON list
            "published_at": str,
            "modified_at": str,
            "language": str,
            "site_name": str,
            "text": str,
            "comments": str,
            "word_count": int,
            "content_hash": str,
            "extractor_version": str,
            "flags": str,  # JSON list of extraction/date warnings
            "story_id": int,
            "relevant": int,
        },
        pk="id",
        not_null={"url", "source", "fetched_at"},
    )
    db["articles"].create_index(["url"], unique=True)
    db["articles"].create_index(["canonical_url"])
    db["articles"].create_index(["content_hash"])
    db["articles"].create_index(["story_id"])
    db["articles"].create_index(["source", "fetched_at"])
    db["articles"].create_index(["published_at"])
    db["raw_pages"].create(
        {"article_id": int, "html_gz": bytes, "encoding": str, "content_type": str},
        pk="article_id",
        foreign_keys=[("article_id", "articles", "id")],
    )
    db["fetch_failures"].create(
        {"url": str, "source": str, "reason": str, "attempts": int, "last_attempt_at": str},
        pk="url",
    )
    db["sources_state"].create(
        {
            "source": str,
            "etag": str,
            "last_modified": str,
            "last_crawl_at": str,
            "last_success_at": str,
            "last_new_article_at": str,
            "consecutive_failures": int,
            "last_error": str,
            "articles_total": int,
            "extraction_failures": int,
        },
        pk="source",
    )
    db["runs"].create(
        {
            "id": int,
            "started_at": str,
            "ended_at": str,
            "status": str,  # running | ok | failed
            "sources": str,
            "pid": int,
            "requests": int,
            "new_articles": int,
            "new_stories": int,
            "errors": int,
            "reason": str,
        },
        pk="id",
    )
    db["stories"].create(
        {
            "id": int,
            "representative_id": int,
            "title": str,
            "first_seen_at": str,
            "first_published_at": str,
            "sightings": int,
            "sites": int,
        },
        pk="id",
    )
    db["topic_scores"].create(
        {"article_id": int, "topic": str, "score": float, "passed": int, "evidence": str},
        pk=("article_id", "topic"),
    )
    db["topic_scores"].create_index(["topic", "passed"])
    db["indicators"].create(
        {"id": int, "article_id": int, "kind": str, "value": str, "context": str}, pk="id"
    )
    db["indicators"].create_index(["kind", "value"])
    db["indicators"].create_index(["article_id"])
    # The near-duplicate index lives on disk: one row per (band, bucket) an article falls in,
    # so a lookup is an index probe and memory does not grow with the corpus.
    db["dedupe_signatures"].create({"article_id": int, "signature": bytes}, pk="article_id")
    db["dedupe_buckets"].create({"band": int, "bucket": int, "article_id": int})
    db["dedupe_buckets"].create_index(["band", "bucket"])
    db["export_cursors"].create(
        {"consumer": str, "last_article_id": int, "updated_at": str}, pk="consumer"
    )
    db["articles"].enable_fts(["title", "text"], create_triggers=True, tokenize="unicode61")


def _m_dedupe_lsh(db: sqlite_utils.Database) -> None:
    """LSH buckets clustered on their key (WITHOUT ROWID): a probe reads one b-tree and the index
    is stored once, not twice; signatures record trust and how each article joined its story."""
    db.execute(
        "CREATE TABLE dedupe_buckets_clustered (band INTEGER NOT NULL, bucket INTEGER NOT NULL, "
        "article_id INTEGER NOT NULL, PRIMARY KEY (band, bucket, article_id)) WITHOUT ROWID"
    )
    db.execute(
        "INSERT OR IGNORE INTO dedupe_buckets_clustered SELECT band, bucket, article_id "
        "FROM dedupe_buckets WHERE band IS NOT NULL AND bucket IS NOT NULL"
    )
    db.execute("DROP TABLE dedupe_buckets")
    db.execute("ALTER TABLE dedupe_buckets_clustered RENAME TO dedupe_buckets")
    db["dedupe_signatures"].add_column("source_trust", float)
    db["dedupe_signatures"].add_column("matched_by", str)  # first | url | exact | near
    db["dedupe_signatures"].add_column("similarity", float)
    db["stories"].create_index(["first_published_at"])
    db["stories"].create_index(["sightings"])
    # Linking an article to its story updates articles.story_id; the FTS update trigger must
    # not re-index title and text for that (it cost more than the whole dedupe step).
    trigger = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'articles_au'"
    ).fetchone()
    if trigger and 'AFTER UPDATE ON "articles"' in trigger[0]:
        db.execute("DROP TRIGGER articles_au")
        db.execute(trigger[0].replace('AFTER UPDATE ON "articles"',
                                      'AFTER UPDATE OF "title", "text" ON "articles"'))  # fmt: skip


def _m_extract_boilerplate(db: sqlite_utils.Database) -> None:
    """Per-site boilerplate learning (``pipelines.boilerplate``): line counts and site sizes."""
    db["site_boilerplate"].create(
        {"site": str, "line_hash": str, "line": str, "pages_seen": int},
        pk=("site", "line_hash"),
    )
    db["site_profiles"].create(
        {"site": str, "pages": int, "median_words": float, "updated_at": str}, pk="site"
    )


def _m_schedules_daemon(db: sqlite_utils.Database) -> None:
    """The daemon's schedule per source: the adaptive polling factor survives restarts, and
    ``nkwatch status`` reads the next run from here (NULL while no daemon schedules it)."""
    db["source_schedule"].create(
        {"source": str, "poll_factor": float, "interval_seconds": float, "next_run_at": str,
         "updated_at": str},
        pk="source",
    )  # fmt: skip
    db["runs"].create_index(["status"])


def _m_raw_pages_packed(db: sqlite_utils.Database) -> None:
    """Raw pages are zstandard-packed now (``pipelines.rawpages``); the column's name said gzip.
    Rows written before keep their gzip, which ``rawpages.unpack`` still reads."""
    db.execute("ALTER TABLE raw_pages RENAME COLUMN html_gz TO html_packed")


def _m_published_local(db: sqlite_utils.Database) -> None:
    """The publication time as the page wrote it, with its UTC offset, beside the UTC one that
    sorting and filtering use: a story published at 08:00 in Seoul is dated the day it was."""
    db["articles"].add_column("published_local", str)


MIGRATIONS: list[Migration] = [
    _m001_core,
    _m_dedupe_lsh,
    _m_extract_boilerplate,
    _m_schedules_daemon,
    _m_raw_pages_packed,
    _m_published_local,
]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply the migrations this file has not had yet; returns the schema version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.atomic():
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


def open_corpus(path: str | Path, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open (creating and migrating if needed) the corpus at ``path`` in WAL mode."""
    path = Path(path)
    if readonly:
        if not path.exists():
            raise FileNotFoundError(f"no corpus at {path}: run `nkwatch crawl` or `nkwatch demo`")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        if conn.execute("PRAGMA user_version").fetchone()[0] < len(MIGRATIONS):
            # A file from an older nkwatch, or one whose first crawl was killed before its
            # schema committed: bring it up to date once, so readers see every table.
            conn.close()
            open_corpus(path).close()
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        return sqlite_utils.Database(conn)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA busy_timeout = 30000")
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = ON")
    migrate(db)
    return db


# --- shared reads ----------------------------------------------------------------------------


def knows_url(db: sqlite_utils.Database, key: str) -> bool:
    """Has this url_key been stored, or named as rel=canonical by a page of the same site?

    A page on another site naming it (syndication) does not count: the original must still
    be fetched, to represent its story.
    """
    site = "/".join(key.split("/", 3)[:3]) + "/"
    row = db.execute(
        "SELECT 1 FROM articles WHERE url = ? UNION ALL "
        "SELECT 1 FROM articles WHERE canonical_url = ? AND substr(url, 1, ?) = ? LIMIT 1",
        [key, key, len(site), site],
    ).fetchone()
    return row is not None


def source_states(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Per-source crawl state keyed by source name."""
    return {row["source"]: row for row in db["sources_state"].rows}


def iter_articles(db: sqlite_utils.Database, where: str = "", params: Any = ()) -> Iterator[dict]:
    """Stored articles, oldest first, with JSON columns decoded."""
    sql = "SELECT * FROM articles" + (f" WHERE {where}" if where else "") + " ORDER BY id"
    for row in db.query(sql, params):
        row["authors"] = json.loads(row["authors"] or "[]")
        row["flags"] = json.loads(row["flags"] or "[]")
        yield row


def shared_corpus(crawler: Any) -> sqlite_utils.Database:
    """One connection per crawl, opened on first use and shared by its components.

    Scrapy runs every component on the reactor thread, so sharing is safe, and it lets the
    seen-URL check see rows the store has written but not yet committed.
    """
    db = getattr(crawler, "_nkwatch_corpus", None)
    if db is None:
        db = open_corpus(crawler.settings.get("NKWATCH_DB"))
        crawler._nkwatch_corpus = db
    return db
