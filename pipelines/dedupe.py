"""Deduplication: content hashes, the near-duplicate index, and story assignment.

One story, many sightings. ``DedupePipeline`` computes, per extracted article, a hash of its
normalised text (exact duplicates) and a MinHash signature of its shingles (near duplicates);
``assign_story`` is called by the store inside its transaction, so an article sees every
article written before it, committed or not, and links it to a story.

The near-duplicate index is LSH banding kept on disk: each article's signature is cut into
bands, each band hashed to a bucket, and one ``dedupe_buckets`` row written per band. Finding
candidates is one primary-key probe per band, so nothing is rebuilt when a process starts and
the cost per article does not grow with the corpus. Candidates are then verified from their
stored signatures before anything is merged.

The index layout (shingles, permutations, bands) is fixed here and not a setting on purpose:
changing it would make new signatures incomparable with the ones already on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

import numpy as np
import sqlite_utils
from xxhash import xxh32_intdigest

from pipelines.corpus import utc_now

# --- the index layout (see the module docstring before changing any of these) ---------------
SIGNATURE_VERSION = 1
NUM_PERM = 128  # body MinHash: 32 bands of 4 rows
BANDS, ROWS = 32, 4
LEAD_PERM = 15  # lead MinHash, over the opening shingles only: 5 bands of 3 rows
LEAD_BANDS, LEAD_ROWS = 5, 3
LEAD_SHINGLES = 48  # how many opening shingles make "the lead"
WORD_SHINGLE = 3  # words per shingle in space-delimited scripts (shingle() assumes 3)
CHAR_SHINGLE = 3  # characters per shingle in Chinese and Japanese

# --- decisions ----------------------------------------------------------------------------
MIN_WORDS = 40  # shorter own text (headline-only, a page of quotes) is merged on exact hash only
NEAR_JACCARD = 0.5  # estimated Jaccard at or above which two texts are one story
CONTAINED = 0.8  # a truncated copy: this share of the shorter text's shingles in the longer
CONTAINED_LEAD_JACCARD = 0.5  # ...and the two leads agree at least this much
CONTAINED_MIN_JACCARD = 0.03  # ...and the texts overlap at all (guards the estimator's noise)
CANONICAL_MIN_JACCARD = 0.2  # rel=canonical names the other page: a looser text check suffices
BUCKET_FANOUT = 64  # newest articles read per bucket: a boilerplate-filled bucket stays cheap
MAX_CANDIDATES = 48  # candidates verified per article, most band collisions first
FARM_TRUST = 0.5  # sources trusted less than this never represent a story over others

_HEADER = struct.Struct("<BBHI")  # version, mode, reserved, distinct shingle count
_MODES = {"words": 0, "chars": 1}
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)
_ASCII_NON_WORD = {code: " " for code in range(128) if not chr(code).isalnum()}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Quoted speech, paired on one line. Quotes are left out of shingles so that two different
# articles quoting the same long statement are not taken for copies of each other.
_QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”|„[^“”\n]*[“”]|«[^»\n]*»|「[^」\n]*」|『[^』\n]*』')


def normalise_text(text: str) -> str:
    """Text as compared for exact duplicates: NFKC, case-folded, punctuation and spacing gone."""
    if text.isascii():  # the same result without the Unicode passes, three times faster
        return " ".join(text.lower().translate(_ASCII_NON_WORD).split())
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_hash(text: str) -> str:
    """The exact-duplicate key: BLAKE2b-128 of the normalised text, in hex."""
    return hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=16).hexdigest()


# --- shingles and signatures ------------------------------------------------------------------


@dataclass
class Shingled:
    """A text's shingles as compared for near duplicates, and whether it is long enough to."""

    mode: str  # "words" or "chars"
    shingles: list[bytes]  # in text order, repeats kept (the lead is the first ones)
    words: int  # own-text length in words (two CJK characters count as one word)

    @property
    def comparable(self) -> bool:
        return self.words >= MIN_WORDS and len(self.shingles) > 0


def shingle(text: str) -> Shingled:
    """Word shingles for space-delimited scripts, character shingles for Chinese and Japanese.

    Quoted passages are dropped first, so ``words`` counts the article's own text: a page that
    is mostly quotes ends up short and is merged on its exact hash only.
    """
    own = _QUOTED.sub(" ", unicodedata.normalize("NFKC", text)).casefold()
    tokens = _WORD.findall(own)
    cjk = len(_CJK.findall(own))
    spaced = sum(1 for token in tokens if not _CJK.search(token)) if cjk else len(tokens)
    if cjk > 2 * spaced:
        chars = "".join(tokens)
        grams = [chars[i : i + CHAR_SHINGLE] for i in range(len(chars) - CHAR_SHINGLE + 1)]
        return Shingled("chars", [g.encode("utf-8") for g in grams], spaced + cjk // 2)
    if len(tokens) < WORD_SHINGLE:
        grams = [" ".join(tokens)] if tokens else []
    else:
        grams = [f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False)]
    return Shingled("words", [g.encode("utf-8") for g in grams], spaced + cjk // 2)


@lru_cache(maxsize=2)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations ``h -> a*h + b mod 2**32`` (``a`` odd) drawn from ``seed``.

    The same draws, in the same order, as datasketch's ``MinHash(scheme="affine32")``, whose
    values the stored signatures hold; computing them here keeps datasketch (and the scipy it
    imports, ~64 MB in every crawl process) out of the crawl.
    """
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, mixing each input hash once before the permutations."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def _minhash(shingles: list[bytes], num_perm: int, seed: int) -> np.ndarray:
    """MinHash values of a set of shingles: xxh32 of each, mixed, permuted, the minimum kept."""
    if not shingles:
        return np.full(num_perm, 0xFFFFFFFF, dtype="<u4")
    a, b = _permutations(num_perm, seed)
    hashes = np.fromiter(map(xxh32_intdigest, shingles), dtype=np.uint32, count=len(shingles))
    permuted = _fmix32(hashes).reshape(-1, 1) * a + b
    return permuted.min(axis=0).astype("<u4")


@dataclass
class Signature:
    """What the index keeps per article: body and lead MinHash values and the shingle count."""

    mode: str
    shingle_count: int
    body: np.ndarray  # uint32[NUM_PERM]
    lead: np.ndarray  # uint32[LEAD_PERM]

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(SIGNATURE_VERSION, _MODES[self.mode], 0, self.shingle_count)
        return header + self.body.astype("<u4").tobytes() + self.lead.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> Signature | None:
        """The signature, or None for an empty blob or one written by another index layout."""
        if not blob or len(blob) != _HEADER.size + 4 * (NUM_PERM + LEAD_PERM):
            return None
        version, mode, _, count = _HEADER.unpack_from(blob)
        if version != SIGNATURE_VERSION:
            return None
        values = np.frombuffer(blob, dtype="<u4", offset=_HEADER.size)
        mode_name = next(name for name, code in _MODES.items() if code == mode)
        return cls(mode_name, count, values[:NUM_PERM], values[NUM_PERM:])

    def buckets(self) -> list[tuple[int, int]]:
        """(band, bucket) pairs: body bands 0..BANDS-1, then the lead bands."""
        keys = []
        for band in range(BANDS):
            chunk = self.body[band * ROWS : (band + 1) * ROWS].tobytes()
            keys.append((band, xxh32_intdigest(chunk, seed=band) & 0x7FFFFFFF))
        for band in range(LEAD_BANDS):
            chunk = self.lead[band * LEAD_ROWS : (band + 1) * LEAD_ROWS].tobytes()
            keys.append((BANDS + band, xxh32_intdigest(chunk, seed=BANDS + band) & 0x7FFFFFFF))
        return keys


def text_signature(text: str) -> bytes:
    """The signature bytes of a text, or ``b""`` when it is too short to near-merge safely."""
    shingled = shingle(text)
    if not shingled.comparable:
        return b""
    distinct = list(dict.fromkeys(shingled.shingles))
    lead = list(dict.fromkeys(shingled.shingles[:LEAD_SHINGLES]))
    signature = Signature(
        mode=shingled.mode,
        shingle_count=len(distinct),
        body=_minhash(distinct, NUM_PERM, seed=1),
        lead=_minhash(lead, LEAD_PERM, seed=2),
    )
    return signature.to_bytes()


# --- verification -----------------------------------------------------------------------------


@dataclass
class Similarity:
    jaccard: float  # estimated Jaccard of the two shingle sets
    containment: float  # estimated share of the shorter text's shingles found in the longer
    lead_jaccard: float

    @property
    def score(self) -> float:
        return max(self.jaccard, self.containment * self.lead_jaccard)


def compare(a: Signature, b: Signature) -> Similarity | None:
    """Estimate how alike two signatures are; None if they were shingled differently."""
    if a.mode != b.mode:
        return None
    jaccard = float(np.mean(a.body == b.body))
    small, big = (a, b) if a.shingle_count <= b.shingle_count else (b, a)
    # P(min over big <= min over small) = |big| / |union|: precise even when sizes differ a lot,
    # which the Jaccard-based containment estimate is not (a lead against its full article).
    below = float(np.mean(big.body <= small.body))
    union = big.shingle_count / below if below else float("inf")
    shared = small.shingle_count + big.shingle_count - union
    containment = min(1.0, max(0.0, shared / small.shingle_count)) if small.shingle_count else 0.0
    return Similarity(jaccard, containment, float(np.mean(a.lead == b.lead)))


def is_same_story(similarity: Similarity, *, canonical_link: bool = False) -> bool:
    """Near-duplicate verdict: alike enough overall, or a copy truncated to the other's lead."""
    if similarity.jaccard >= (CANONICAL_MIN_JACCARD if canonical_link else NEAR_JACCARD):
        return True
    return (
        similarity.containment >= CONTAINED
        and similarity.lead_jaccard >= CONTAINED_LEAD_JACCARD
        and similarity.jaccard >= CONTAINED_MIN_JACCARD
    )


# --- the pipeline -------------------------------------------------------------------------------


def canonical_key(item: Any) -> str | None:
    """The item's rel=canonical (else its final URL) in ``url_key`` form, as the corpus stores it."""
    from crawler.urls import is_fetchable, url_key  # here: extraction workers need no Scrapy

    base = item.response_url or item.url
    target = urljoin(base, item.canonical_url) if item.canonical_url else base
    if target and is_fetchable(target):
        return url_key(target)
    return item.canonical_url


def fingerprints(text: str, with_signature: bool = True) -> tuple[str, bytes]:
    """An article's content hash and (when asked) its signature bytes, in one call."""
    return content_hash(text), text_signature(text) if with_signature else b""


class DedupePipeline:
    """Fingerprints each extracted article: content hash, MinHash signature, canonical URL key.

    CPU only and no database writes: the store links the article to its story (``assign_story``)
    inside its own transaction. In a crawl the fingerprints are computed in the extraction
    worker (``pipelines.pagework``); the signature only for relevant articles, the ones the
    store keeps the text of (``assign_story`` computes a missing one when it needs it).
    Settings: none (see the module docstring for why).
    """

    def __init__(self, crawler=None) -> None:
        self.crawler = crawler
        if crawler is not None:
            from pipelines.pagework import FINGERPRINTS, request_stage

            request_stage(crawler, FINGERPRINTS, True)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_item(self, item, spider=None):
        item.canonical_url = canonical_key(item)
        if item.status != "ok" or not item.text:
            return item
        work = getattr(item, "page_work", None)
        if work is not None and work.content_hash:
            item.content_hash, item.signature = work.content_hash, work.signature
        else:
            item.content_hash, item.signature = fingerprints(item.text, bool(item.relevant))
        return item


# --- story assignment ---------------------------------------------------------------------------


@dataclass
class Match:
    story_id: int
    article_id: int
    matched_by: str  # "url" (rel=canonical), "exact" (same text) or "near"
    similarity: float


def assign_story(db: sqlite_utils.Database, article_id: int, item) -> tuple[int, bool]:
    """Link a stored article to the story it belongs to, creating one if it is new.

    Looks for the same page (rel=canonical), the same text (content hash), then near copies
    through the on-disk LSH buckets, verified from stored signatures. Records the article's
    signature and buckets, counts the sighting and keeps the story's representative the
    original. Returns ``(story_id, is_new_story)``.
    """
    if item.text and not item.content_hash:
        item.content_hash = content_hash(item.text)
    if item.text and not item.signature:
        item.signature = text_signature(item.text)
    signature = Signature.from_bytes(item.signature)
    buckets = signature.buckets() if signature is not None else []
    match = (
        _match_by_canonical(db, article_id, item, signature)
        or _match_exact(db, article_id, item)
        or _match_near(db, article_id, signature, buckets)
    )
    db.execute(
        "INSERT OR REPLACE INTO dedupe_signatures "
        "(article_id, signature, source_trust, matched_by, similarity) VALUES (?, ?, ?, ?, ?)",
        [article_id, item.signature or b"", item.source_trust,
         match.matched_by if match else "first", match.similarity if match else None],
    )  # fmt: skip
    if buckets and not (match and match.matched_by == "exact"):
        # An exact copy would only repeat its twin's buckets: leave them out, keep the index lean.
        _index_buckets(db, article_id, buckets)
    if match is None:
        return _new_story(db, article_id, item), True
    item.duplicate_of = match.article_id
    _join_story(db, match.story_id, article_id, item)
    return match.story_id, False


def refresh_signature(db: sqlite_utils.Database, article_id: int, text: str) -> bool:
    """Replace a stored article's signature and LSH buckets after its text changed.

    The story it belongs to stays: story ids are what users cite and export cursors follow,
    so a new text only changes how later copies are matched against it. The old buckets are
    found from the old signature (index probes, no scan of the bucket table). Returns whether
    the article had a signature to refresh.
    """
    row = db.execute(
        "SELECT signature, matched_by FROM dedupe_signatures WHERE article_id = ?", [article_id]
    ).fetchone()
    if row is None:
        return False
    old = Signature.from_bytes(row[0])
    if old is not None:
        db.conn.executemany(
            "DELETE FROM dedupe_buckets WHERE band = ? AND bucket = ? AND article_id = ?",
            [(band, bucket, article_id) for band, bucket in old.buckets()],
        )
    signature = text_signature(text) if text else b""
    db.execute(
        "UPDATE dedupe_signatures SET signature = ? WHERE article_id = ?", [signature, article_id]
    )
    new = Signature.from_bytes(signature)
    if new is not None and row[1] != "exact":  # as assign_story: an exact copy adds no buckets
        _index_buckets(db, article_id, new.buckets())
    return True


def _index_buckets(db, article_id: int, buckets: list[tuple[int, int]]) -> None:
    db.conn.executemany(
        "INSERT OR IGNORE INTO dedupe_buckets (band, bucket, article_id) VALUES (?, ?, ?)",
        [(band, bucket, article_id) for band, bucket in buckets],
    )


def _match_by_canonical(db, article_id: int, item, signature: Signature | None) -> Match | None:
    """The same page under another URL: rel=canonical names a stored article, or one names us.

    A canonical pointing at a site's home page (a common template bug) proves nothing, and the
    texts must still broadly agree, so one wrong tag cannot fold a site into one story.
    """
    canonical = item.canonical_url
    if not canonical or canonical == item.url or urlsplit(canonical).path in ("", "/"):
        canonical = None
    rows = db.execute(
        "SELECT a.id, a.story_id, s.signature FROM articles a "
        "LEFT JOIN dedupe_signatures s ON s.article_id = a.id "
        "WHERE a.id IN (SELECT id FROM articles WHERE url = ? UNION "
        "SELECT id FROM articles WHERE canonical_url = ?) "
        "AND a.id != ? AND a.story_id IS NOT NULL LIMIT 8",
        [canonical or "", item.url, article_id],
    ).fetchall()
    for other_id, story_id, blob in rows:
        other = Signature.from_bytes(blob)
        if signature is None or other is None:
            return Match(story_id, other_id, "url", 1.0)
        similarity = compare(signature, other)
        if similarity and is_same_story(similarity, canonical_link=True):
            return Match(story_id, other_id, "url", round(similarity.score, 3))
    return None


def _match_exact(db, article_id: int, item) -> Match | None:
    if not item.content_hash:
        return None
    row = db.execute(
        "SELECT id, story_id FROM articles WHERE content_hash = ? AND id != ? "
        "AND story_id IS NOT NULL LIMIT 1",
        [item.content_hash, article_id],
    ).fetchone()
    return Match(row[1], row[0], "exact", 1.0) if row else None


@lru_cache(maxsize=1)
def _probe_sql() -> str:
    one = (
        "SELECT * FROM (SELECT article_id FROM dedupe_buckets WHERE band = ? AND bucket = ? "
        "ORDER BY article_id DESC LIMIT ?)"
    )
    return " UNION ALL ".join([one] * (BANDS + LEAD_BANDS))


def _match_near(
    db, article_id: int, signature: Signature | None, buckets: list[tuple[int, int]]
) -> Match | None:
    """Candidates from the LSH buckets (index probes only), verified from stored signatures."""
    if signature is None:
        return None
    params: list[int] = []
    for band, bucket in buckets:
        params += [band, bucket, BUCKET_FANOUT]
    collisions: dict[int, int] = {}
    for (candidate,) in db.execute(_probe_sql(), params):
        if candidate != article_id:
            collisions[candidate] = collisions.get(candidate, 0) + 1
    if not collisions:
        return None
    chosen = sorted(collisions, key=lambda c: (-collisions[c], -c))[:MAX_CANDIDATES]
    marks = ",".join("?" * len(chosen))
    rows = db.execute(
        f"SELECT s.article_id, s.signature, a.story_id FROM dedupe_signatures s "
        f"JOIN articles a ON a.id = s.article_id "
        f"WHERE s.article_id IN ({marks}) AND a.story_id IS NOT NULL",
        chosen,
    ).fetchall()
    best: Match | None = None
    for other_id, blob, story_id in rows:
        other = Signature.from_bytes(blob)
        similarity = compare(signature, other) if other is not None else None
        if similarity is None or not is_same_story(similarity):
            continue
        score = round(similarity.score, 3)
        if best is None or (score, other_id) > (best.similarity, best.article_id):
            best = Match(story_id, other_id, "near", score)
    return best


def _new_story(db, article_id: int, item) -> int:
    cursor = db.execute(
        "INSERT INTO stories (representative_id, title, first_seen_at, first_published_at, "
        "sightings, sites) VALUES (?, ?, ?, ?, 1, 1)",
        [article_id, item.title, item.fetched_at or utc_now(), item.published_at],
    )
    db.execute("UPDATE articles SET story_id = ? WHERE id = ?", [cursor.lastrowid, article_id])
    return cursor.lastrowid


def _site(url: str | None) -> str:
    return urlsplit(url or "").netloc


def _join_story(db, story_id: int, article_id: int, item) -> None:
    db.execute("UPDATE articles SET story_id = ? WHERE id = ?", [story_id, article_id])
    story = db.execute(
        "SELECT representative_id, first_published_at, first_seen_at FROM stories WHERE id = ?",
        [story_id],
    ).fetchone()
    site = _site(item.url)
    others = db.execute(
        "SELECT url FROM articles WHERE story_id = ? AND id != ?", [story_id, article_id]
    )
    new_site = all(_site(url) != site for (url,) in others)
    representative_id, title = story[0], None
    current = _ranked_article(db, story[0])
    candidate = representative_rank(
        article_id, item.published_at, item.url, item.canonical_url, item.authors,
        item.source_trust,
    )  # fmt: skip
    if current is None or candidate < current:
        representative_id, title = article_id, item.title
    dates = [d for d in (story[1], item.published_at) if d]
    seen = [d for d in (story[2], item.fetched_at) if d]
    db.execute(
        "UPDATE stories SET sightings = sightings + 1, sites = sites + ?, "
        "representative_id = ?, title = COALESCE(?, title), first_published_at = ?, "
        "first_seen_at = ? WHERE id = ?",
        [int(new_site), representative_id, title, min(dates) if dates else None,
         min(seen) if seen else utc_now(), story_id],
    )  # fmt: skip


def representative_rank(
    article_id: int,
    published_at: str | None,
    url: str | None,
    canonical_url: str | None,
    authors: list[str] | None,
    source_trust: float | None,
) -> tuple:
    """Sort key of a story's candidate representatives; the smallest is the original.

    A content farm (trust below ``FARM_TRUST``) never outranks a trusted outlet, whatever dates
    it claims. Then the earliest publication day; then a page whose rel=canonical is itself,
    a byline and higher source trust break ties; then the exact time, then the first stored.
    """
    trust = 1.0 if source_trust is None else source_trust
    return (
        trust < FARM_TRUST,
        published_at is None,
        (published_at or "")[:10],
        bool(canonical_url) and canonical_url != url,
        not authors,
        -trust,
        published_at or "",
        article_id,
    )


def _ranked_article(db, article_id: int | None) -> tuple | None:
    row = db.execute(
        "SELECT a.id, a.published_at, a.url, a.canonical_url, a.authors, s.source_trust "
        "FROM articles a LEFT JOIN dedupe_signatures s ON s.article_id = a.id WHERE a.id = ?",
        [article_id],
    ).fetchone()
    if row is None:
        return None
    authors = json.loads(row[4]) if row[4] else []
    return representative_rank(row[0], row[1], row[2], row[3], authors, row[5])


# --- reading stories (the CLI calls these) ------------------------------------------------------

STORY_COLUMNS = (
    "s.id, s.title, s.sightings, s.sites, s.first_seen_at, s.first_published_at, "
    "s.representative_id, r.source AS representative_source, r.url AS representative_url, "
    "r.response_url AS representative_response_url, r.site_name AS representative_site"
)


def list_stories(
    db: sqlite_utils.Database, *, limit: int = 20, min_sightings: int = 1, sort: str = "recent"
) -> list[dict]:
    """Stories, newest first (``sort="recent"``) or most sighted first (``"sightings"``)."""
    order = {
        "recent": "s.first_published_at DESC, s.id DESC",
        "sightings": "s.sightings DESC, s.first_published_at DESC, s.id DESC",
    }[sort]
    return list(
        db.query(
            f"SELECT {STORY_COLUMNS} FROM stories s "
            f"LEFT JOIN articles r ON r.id = s.representative_id "
            f"WHERE s.sightings >= ? ORDER BY {order} LIMIT ?",
            [min_sightings, limit],
        )
    )


def get_story(db: sqlite_utils.Database, story_id: int) -> dict | None:
    """One story with every sighting (oldest publication first), or None if there is none."""
    rows = list(
        db.query(
            f"SELECT {STORY_COLUMNS} FROM stories s "
            f"LEFT JOIN articles r ON r.id = s.representative_id WHERE s.id = ?",
            [story_id],
        )
    )
    if not rows:
        return None
    story = rows[0]
    story["sightings_list"] = [
        {**row, "authors": json.loads(row["authors"] or "[]"),
         "representative": row["id"] == story["representative_id"]}
        for row in db.query(
            "SELECT a.id, a.source, a.site_name, a.url, a.response_url, a.canonical_url, a.title, "
            "a.authors, "
            "a.published_at, a.published_local, a.fetched_at, a.language, d.source_trust, "
            "d.matched_by, "
            "d.similarity FROM articles a LEFT JOIN dedupe_signatures d ON d.article_id = a.id "
            "WHERE a.story_id = ? ORDER BY a.published_at IS NULL, a.published_at, a.id",
            [story_id],
        )
    ]  # fmt: skip
    return story
