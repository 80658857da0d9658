"""Rebuild stored articles' clean text from their raw pages, with no network.

Two passes, so that every page is cleaned with what its whole site teaches: the first extracts
every stored page in the worker pool (both cores) and counts each site's lines; the second
removes the learned lines and updates the articles in batched transactions, judging each new
text against the topics again (scores, evidence and indicators replaced) and refreshing its
near-duplicate signature. Stories stay as they are: their ids are what users cite. Between the two,
the extractions wait in a temporary table on disk, not in memory, so a corpus of a million
pages re-extracts in the memory of a thousand. Pages are read in id order, a batch at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from pipelines.boilerplate import SiteBoilerplates, clean_item, page_lines
from pipelines.dedupe import content_hash, refresh_signature
from pipelines.extract import ExtractedArticle, Extraction, apply_extraction, extract_article
from pipelines.rawpages import unpack
from pipelines.relevance import Topics, judge_article, load_topics
from pipelines.store import write_judgement

READ_BATCH = 200  # stored pages read (and sent to the workers) at a time
PROGRESS_SECONDS = 5.0


def extract_stored_page(
    blob: bytes, url: str, encoding: str | None
) -> tuple[Extraction, tuple[str, list] | None]:
    """A worker's part: the extraction of one stored page, and its lines for the site counts."""
    result = extract_article(unpack(blob), url, encoding=encoding)
    article = result.article
    return result, page_lines(article.text, article.comments) if article is not None else None


class StoredArticle:
    """The fields of an ArticleItem that extraction reads and writes, for a stored article."""

    def __init__(self, url: str, published_at: str | None) -> None:
        self.response_url = url
        self.hints = {"published_at": published_at}
        self.title, self.flags, self.status, self.failure_reason = None, [], "ok", None
        self.published_local = None
        self.text = self.comments = ""
        self.word_count = 0


def reextract_corpus(
    db, source_names: list[str], *, pool=None, progress: Callable[[str], None] | None = None,
    topics: Topics | None = None,
) -> dict[str, int]:
    """Extract every stored page again, learn each site's boilerplate from all of them, update
    the articles whose text is kept. ``pool``: an executor (None: extract in this process);
    ``topics``: what the new texts are judged against (None: the topics a crawl would use)."""
    boilerplates = SiteBoilerplates()
    topics = topics or load_topics()
    counts = {"pages": 0, "updated": 0, "failed": 0, "skipped": 0, "relevance_changed": 0}
    total = _count_pages(db, source_names)
    db.execute("CREATE TEMP TABLE IF NOT EXISTS reextracted (id INTEGER PRIMARY KEY, "
               "url TEXT, published_at TEXT, result TEXT)")  # fmt: skip
    db.execute("DELETE FROM temp.reextracted")
    shown = time.monotonic()
    for rows in _stored_pages(db, source_names):
        jobs = [(row["html_packed"], row["url"], row["encoding"]) for row in rows]
        done = pool.map(extract_stored_page, *zip(*jobs, strict=True), chunksize=8) if pool \
            else (extract_stored_page(*job) for job in jobs)  # fmt: skip
        kept = []
        for row, (result, lines) in zip(rows, done, strict=True):
            counts["pages"] += 1
            if lines is not None:
                boilerplates.site(row["url"]).count_page(*lines, result.article.word_count)
            if row["status"] != "ok":
                counts["skipped"] += 1  # off-topic, duplicate or failed before: text not kept
                continue
            kept.append((row["id"], row["url"], row["published_at"], _dump(result)))
        with db.atomic():
            db.conn.executemany("INSERT INTO temp.reextracted VALUES (?, ?, ?, ?)", kept)
        if progress and time.monotonic() - shown >= PROGRESS_SECONDS:
            progress(f"extracted {counts['pages']:,} of {total:,} stored pages")
            shown = time.monotonic()
    _update_articles(db, boilerplates, topics, counts)
    db.execute("DROP TABLE temp.reextracted")
    boilerplates.save(db)
    counts["sites"] = len(boilerplates.sites)
    return counts


def _update_articles(
    db, boilerplates: SiteBoilerplates, topics: Topics, counts: dict[str, int]
) -> None:
    """The second pass: clean each kept extraction with its site's lines, judge it, write."""
    last = 0
    while True:
        rows = db.execute("SELECT t.id, t.url, t.published_at, t.result, a.relevant "
                          "FROM temp.reextracted t JOIN articles a ON a.id = t.id "
                          "WHERE t.id > ? ORDER BY t.id LIMIT ?", [last, READ_BATCH]).fetchall()  # fmt: skip
        if not rows:
            return
        with db.atomic():
            for article_id, url, published_at, dumped, was_relevant in rows:
                item = StoredArticle(url, published_at)
                apply_extraction(item, _load(dumped))
                if item.status == "ok":
                    clean_item(item, boilerplates)
                counts["updated" if item.status == "ok" else "failed"] += 1
                _update(db, article_id, item)
                if item.status == "ok":
                    relevant = _judge_again(db, article_id, item, topics)
                    counts["relevance_changed"] += relevant != bool(was_relevant)
        last = rows[-1][0]


def _judge_again(db, article_id: int, item, topics: Topics) -> bool:
    """Scores, evidence and indicators of the new text replace the old; the signature too.

    An article that no longer passes any topic keeps its text and its story here (the raw page
    is kept either way); its ``relevant`` flag says so, and the summary counts it."""
    scores, relevant, indicators = judge_article(
        item.title, item.text, item.language, item.response_url, topics
    )
    write_judgement(db, article_id, scores, indicators, replace=True)
    db.execute("UPDATE articles SET relevant = ? WHERE id = ?", [int(relevant), article_id])
    refresh_signature(db, article_id, item.text)
    return relevant


def _count_pages(db, source_names: list[str]) -> int:
    where, params = _where(source_names)
    sql = f"SELECT count(*) FROM articles a JOIN raw_pages r ON r.article_id = a.id WHERE 1 = 1{where}"
    return db.execute(sql, params).fetchone()[0]


def _stored_pages(db, source_names: list[str]) -> Iterator[list[dict[str, Any]]]:
    """Stored pages in id order, ``READ_BATCH`` at a time (keyset paging: no growing OFFSET)."""
    where, params = _where(source_names)
    last = 0
    while True:
        rows = list(db.query(
            "SELECT a.id, a.status, coalesce(nullif(a.response_url, ''), a.url) AS url, "
            "a.published_at, "
            "r.html_packed, r.encoding FROM articles a JOIN raw_pages r ON r.article_id = a.id "
            f"WHERE a.id > ?{where} ORDER BY a.id LIMIT ?", [last, *params, READ_BATCH]))  # fmt: skip
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def _where(source_names: list[str]) -> tuple[str, list[str]]:
    if not source_names:
        return "", []
    return f" AND a.source IN ({','.join('?' for _ in source_names)})", list(source_names)


def _dump(result: Extraction) -> str:
    article = result.article.to_dict() if result.article is not None else None
    return json.dumps({"article": article, "reason": result.reason}, ensure_ascii=False)


def _load(dumped: str) -> Extraction:
    data = json.loads(dumped)
    article = ExtractedArticle(**data["article"]) if data["article"] is not None else None
    return Extraction(article, data["reason"])


def _update(db, article_id: int, item) -> None:
    flags = item.flags + ([f"failed: {item.failure_reason}"] if item.failure_reason else [])
    values = {
        "status": item.status, "text": item.text or None, "comments": item.comments or None,
        "word_count": item.word_count, "extractor_version": item.extractor_version,
        "flags": json.dumps(flags, ensure_ascii=False),
        "content_hash": content_hash(item.text) if item.text else None,
    }  # fmt: skip
    if item.status == "ok":
        values.update({
            "title": item.title, "authors": json.dumps(item.authors, ensure_ascii=False),
            "published_at": item.published_at, "published_local": item.published_local,
            "modified_at": item.modified_at,
            "language": item.language, "site_name": item.site_name,
        })  # fmt: skip
    db["articles"].update(article_id, values)
