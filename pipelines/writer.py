"""The one writer of distributed mode: drains the Redis stream of finished items into the corpus.

Items are stored by ``pipelines.store.write_item``, the code path of the single-machine store,
a batch per transaction. A batch is acknowledged (``XACK``, then ``XDEL``) only after its
commit, in one Redis transaction with what other machines learn from it (the seen url_keys,
the feeds' validators). A writer killed between commit and acknowledgement gets the same
entries again on restart (they are still pending for its consumer name) and the store's
``ON CONFLICT(url) DO NOTHING`` makes the second write a no-op: nothing lost, nothing doubled.

A record the writer cannot store (undecodable, or rejected by the database) is a poison item:
it goes to the dead-letter list with the reason and is acknowledged, and the batch around it is
stored one record at a time so no good item is held back. A database that is busy or full is
not poison: the batch stays pending and is retried.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipelines.corpus import open_corpus, utc_now
from pipelines.queue_store import (
    DEAD_LETTERS,
    ITEMS_STREAM,
    SEEN_KEYS,
    VALIDATORS,
    WRITER_GROUP,
    BrokerError,
    DistributedExtraMissing,
    connect,
    describe_redis_error,
    is_redis_error,
    item_from_record,
)
from pipelines.store import write_item

logger = logging.getLogger(__name__)

CRASH_AFTER_COMMIT_ENV = "NKWATCH_WRITER_CRASH_AFTER_COMMIT"  # tests: SIGKILL before the ack
SEED_CHUNK = 5000
POISON = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
          ValueError, TypeError, KeyError, AttributeError)  # fmt: skip


class WriterStats(Counter):
    """The store's counters (``nkwatch/stored``...) without a Scrapy crawler."""

    def inc_value(self, key: str, count: int = 1) -> None:
        self[key] += count


@dataclass
class Entry:
    """One stream entry, decoded: an item to store or a crawl's closing record."""

    entry_id: bytes
    kind: str
    value: Any
    seen_keys: list[str] = field(default_factory=list)


def seen_keys_of(item) -> list[str]:
    """The keys ``knows_url`` would match: the URL, and rel=canonical on the same site."""
    keys = [item.url]
    if (
        item.canonical_url
        and item.canonical_url != item.url
        and _site(item.canonical_url) == _site(item.url)
    ):
        keys.append(item.canonical_url)
    return keys


def _site(key: str) -> str:
    return "/".join(key.split("/", 3)[:3]) + "/"


class Writer:
    """Drains ``ITEMS_STREAM`` into the corpus at ``db_path``; see the module docstring."""

    def __init__(self, broker: str, db_path: str, *, batch_size: int = 200,
                 block_seconds: float = 1.0, consumer: str = "writer", keep_raw: bool = True,
                 keep_offtopic_text: bool = False, say=print) -> None:  # fmt: skip
        self.broker, self.db_path = broker, db_path
        self.batch_size, self.block_ms = max(1, batch_size), int(block_seconds * 1000)
        self.consumer, self.say = consumer, say
        self.keep_raw, self.keep_offtopic_text = keep_raw, keep_offtopic_text
        self.crash_after_commit = os.environ.get(CRASH_AFTER_COMMIT_ENV) == "1"
        self.stats = WriterStats()
        self.db = open_corpus(db_path)
        self.conn = None
        self.pending_first = True  # after a (re)start, entries delivered but never acknowledged

    # --- the loop ------------------------------------------------------------------------
    def run(self, *, idle_exit: float | None = None) -> WriterStats:
        """Store until stopped (or the stream stayed empty ``idle_exit`` seconds); a lost or
        restarted Redis is reported in one line and waited out."""
        idle_since, pause = time.monotonic(), 1.0
        while True:
            try:
                if self.conn is None:
                    self._connect()
                    pause = 1.0
                stored = self.drain_once()
            except DistributedExtraMissing:
                raise
            except BrokerError as error:
                self._lost(f"{error}; retrying in {pause:g} s", pause)
                pause = min(30.0, pause * 2)
                continue
            except sqlite3.OperationalError as error:  # busy or full: the batch stays pending
                self._lost(f"corpus {self.db_path}: {error}; retrying in {pause:g} s", pause)
                pause = min(30.0, pause * 2)
                continue
            except Exception as error:
                if not is_redis_error(error):
                    raise
                self._lost(f"broker {self.broker}: {describe_redis_error(error)}; "
                           f"retrying in {pause:g} s", pause)  # fmt: skip
                pause = min(30.0, pause * 2)
                continue
            if stored:
                idle_since = time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                return self.stats

    def _lost(self, message: str, pause: float) -> None:
        self.say(f"writer: {message}")
        self.conn, self.pending_first = None, True
        time.sleep(pause)

    def _connect(self) -> None:
        conn = connect(self.broker)
        try:
            conn.xgroup_create(ITEMS_STREAM, WRITER_GROUP, id="0", mkstream=True)
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise
        self.conn = conn
        seeded = self.seed()
        self.say(f"writer: draining {self.broker} into {self.db_path}"
                 + (f" (seeded {seeded} seen URLs from the corpus)" if seeded else ""))  # fmt: skip

    def seed(self) -> int:
        """Fill the seen set and validators from the corpus when Redis has none (a new or
        restarted Redis), so workers do not fetch again what is already stored."""
        if self.conn.exists(SEEN_KEYS):
            return 0
        count = 0
        rows = self.db.execute("SELECT url, canonical_url FROM articles")
        while chunk := rows.fetchmany(SEED_CHUNK):
            keys = {key for url, canonical in chunk for key in _row_keys(url, canonical)}
            if keys:
                self.conn.sadd(SEEN_KEYS, *keys)
                count += len(keys)
        for source, etag, last_modified in self.db.execute(
            "SELECT source, etag, last_modified FROM sources_state "
            "WHERE etag IS NOT NULL OR last_modified IS NOT NULL"
        ):
            self.conn.hsetnx(VALIDATORS, source,
                             json.dumps({"etag": etag, "last_modified": last_modified}))  # fmt: skip
        return count

    # --- one batch ---------------------------------------------------------------------------
    def drain_once(self) -> int:
        """Read one batch, store it, acknowledge it; returns how many entries it held."""
        start = "0" if self.pending_first else ">"
        reply = self.conn.xreadgroup(WRITER_GROUP, self.consumer, {ITEMS_STREAM: start},
                                     count=self.batch_size, block=None if start == "0" else self.block_ms)  # fmt: skip
        entries = reply[0][1] if reply else []
        if start == "0" and not entries:
            self.pending_first = False
            return 0
        if not entries:
            return 0
        decoded, dead = [], []
        for entry_id, fields in entries:
            try:
                decoded.append(decode_entry(entry_id, fields))
            except ValueError as error:
                dead.append((entry_id, fields, str(error)))
        good, rejected = self._commit(decoded)
        dead += [(entry.entry_id, {}, reason) for entry, reason in rejected]
        if self.crash_after_commit and good:
            os.kill(os.getpid(), signal.SIGKILL)  # the test's crash between commit and ack
        self._acknowledge(good, dead, [entry_id for entry_id, _ in entries])
        for entry_id, _fields, reason in dead:
            self.say(f"writer: dead letter {entry_id.decode()}: {reason}")
        return len(entries)

    def _commit(self, entries: list[Entry]) -> tuple[list[Entry], list[tuple[Entry, str]]]:
        """Store the batch in one transaction; if a record is rejected, store one at a time."""
        try:
            self._store(entries)
            return entries, []
        except POISON:
            pass
        good, rejected = [], []
        for entry in entries:
            try:
                self._store([entry])
                good.append(entry)
            except POISON as error:
                rejected.append((entry, f"{type(error).__name__}: {error}"[:300]))
        return good, rejected

    def _store(self, entries: list[Entry]) -> None:
        """One transaction; its counts join the writer's only once it is committed."""
        counts = WriterStats()
        with transaction(self.db):
            for entry in entries:
                if entry.kind == "item":
                    write_item(self.db, entry.value, counts, keep_raw=self.keep_raw,
                               keep_offtopic_text=self.keep_offtopic_text)  # fmt: skip
                elif apply_crawl_record(self.db, entry.value):
                    counts.inc_value("nkwatch/crawl_records")
        self.stats.update(counts)

    def _acknowledge(self, good: list[Entry], dead: list, entry_ids: list[bytes]) -> None:
        """After the commit, in one Redis transaction: what workers learn, then the ack."""
        with self.conn.pipeline(transaction=True) as pipe:
            keys = [key for entry in good for key in entry.seen_keys]
            if keys:
                pipe.sadd(SEEN_KEYS, *keys)
            for entry in good:
                if entry.kind == "crawl" and entry.value.get("status") == "ok":
                    pipe.hset(VALIDATORS, entry.value["source"], json.dumps(
                        {"etag": entry.value.get("etag"),
                         "last_modified": entry.value.get("last_modified")}))  # fmt: skip
            for entry_id, fields, reason in dead:
                pipe.rpush(DEAD_LETTERS, json.dumps(
                    {"entry_id": entry_id.decode(), "reason": reason, "dead_at": utc_now(),
                     "fields": {_text(k): _text(v)[:2000] for k, v in fields.items()}},
                    ensure_ascii=False))  # fmt: skip
            pipe.xack(ITEMS_STREAM, WRITER_GROUP, *entry_ids)
            pipe.xdel(ITEMS_STREAM, *entry_ids)
            pipe.execute()
        self.stats.inc_value("nkwatch/dead_letters", len(dead))


@contextmanager
def transaction(db):
    """An explicit transaction: sqlite-utils 4 commits each statement run outside one, so
    ``with db.conn:`` alone would not make a batch atomic."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()


def decode_entry(entry_id: bytes, fields: dict) -> Entry:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    kind = fields.get("kind")
    if kind == "item":
        item = item_from_record(fields)
        return Entry(entry_id, "item", item, seen_keys_of(item))
    if kind == "crawl":
        try:
            record = json.loads(fields["record"])
            record["source"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"undecodable crawl record: {error}") from None
        return Entry(entry_id, "crawl", record)
    raise ValueError(f"unknown record kind {kind!r}")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _row_keys(url: str, canonical: str | None) -> list[str]:
    if canonical and canonical != url and _site(canonical) == _site(url):
        return [url, canonical]
    return [url]


def apply_crawl_record(db, record: dict) -> bool:
    """A worker's crawl, as the single-machine crawl would have recorded it: a ``runs`` row,
    the source's state (validators only from a complete crawl) and its failed URLs.

    Idempotent: a record already applied (same ``last_crawl_at``) is skipped on redelivery.
    """
    source, ended_at = record["source"], record.get("ended_at") or utc_now()
    previous = db.execute(
        "SELECT last_crawl_at, articles_total, consecutive_failures FROM sources_state "
        "WHERE source = ?",
        [source],
    ).fetchone()
    if previous and previous[0] == ended_at:
        return False
    before = (previous[1] if previous else 0) or 0
    total = db.execute("SELECT COUNT(*) FROM articles WHERE source = ?", [source]).fetchone()[0]
    failures = (previous[2] if previous else 0) or 0
    error = record.get("source_error") if record["status"] == "ok" else record.get("reason")
    state = {"source": source, "last_crawl_at": ended_at, "articles_total": total}
    if total > before:
        state["last_new_article_at"] = ended_at
    if error:
        state.update(consecutive_failures=failures + 1, last_error=error)
    else:
        state.update(last_success_at=ended_at, consecutive_failures=0, last_error=None)
    if record["status"] == "ok":
        state.update(etag=record.get("etag"), last_modified=record.get("last_modified"))
    else:
        state.update(etag=None, last_modified=None)
    columns = list(state)
    db.execute(
        f"INSERT INTO sources_state ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        f" ON CONFLICT(source) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns if c != "source"),
        [state[c] for c in columns],
    )
    db.execute(
        "INSERT INTO runs (started_at, ended_at, status, sources, requests, new_articles, "
        "errors, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [record.get("started_at"), ended_at, "ok" if record["status"] == "ok" else "failed",
         f"sources:{source}", record.get("requests"), max(0, total - before),
         record.get("errors"),
         "; ".join(x for x in (record.get("reason"), f"on worker {record.get('worker')}") if x)],
    )  # fmt: skip
    for url, reason in record.get("failures") or []:
        db.execute(
            "INSERT INTO fetch_failures (url, source, reason, attempts, last_attempt_at)"
            " VALUES (?, ?, ?, 1, ?) ON CONFLICT(url) DO UPDATE SET"
            " attempts = attempts + 1, reason = excluded.reason,"
            " last_attempt_at = excluded.last_attempt_at",
            [url, source, reason, ended_at],
        )
    return True
