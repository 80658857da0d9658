"""Deduplication: content hashes, the near-duplicate index, and story assignment.

One story, many sightings. ``assign_story`` is called by the store inside its transaction,
so an article sees every article written before it, committed or not.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import sqlite_utils

from pipelines.corpus import utc_now

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Text as compared for exact duplicates: NFKC, case-folded, punctuation and spacing gone."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(text: str) -> str:
    return hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=16).hexdigest()


class DedupePipeline:
    """Computes the content hash of each extracted article (story assignment is in the store)."""

    @classmethod
    def from_crawler(cls, crawler):
        return cls()

    def process_item(self, item, spider=None):
        if item.status == "ok" and item.text:
            item.content_hash = content_hash(item.text)
        return item


def assign_story(db: sqlite_utils.Database, article_id: int, item) -> tuple[int, bool]:
    """Link the article to the story it belongs to, creating one if it is new."""
    row = None
    if item.content_hash:
        row = db.execute(
            "SELECT story_id FROM articles WHERE content_hash = ? AND id != ? "
            "AND story_id IS NOT NULL LIMIT 1",
            [item.content_hash, article_id],
        ).fetchone()
    if row:
        story_id = row[0]
        db.execute("UPDATE articles SET story_id = ? WHERE id = ?", [story_id, article_id])
        db.execute("UPDATE stories SET sightings = sightings + 1 WHERE id = ?", [story_id])
        return story_id, False
    cursor = db.execute(
        "INSERT INTO stories (representative_id, title, first_seen_at, first_published_at, "
        "sightings, sites) VALUES (?, ?, ?, ?, 1, 1)",
        [article_id, item.title, utc_now(), item.published_at],
    )
    db.execute("UPDATE articles SET story_id = ? WHERE id = ?", [cursor.lastrowid, article_id])
    return cursor.lastrowid, True
