"""The store stage of a distributed crawl: finished items go onto a Redis stream for the writer.

Used in place of ``pipelines.store.StorePipeline`` when a worker runs the crawl (it sets
``ITEM_PIPELINES``); ``pipelines.writer`` drains the stream into the corpus through the same
``write_item`` as the single-machine store. An item is one stream entry holding every
``ArticleItem`` field as JSON, the page body gzip-compressed and base64-encoded, so the writer
stores exactly the row the single-machine store would.

While the crawl runs this stage also renews the source's lease (``NKWATCH_LEASE_*``): the lease
then lasts as long as the crawl can still push items, even if the worker that started it died.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import logging
import time

from twisted.internet import task

from crawler.items import ArticleItem, persistent_fields

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
PUSH_ATTEMPTS = 3  # a push failing this often (Redis away) fails the item, not the crawl
BYTES_FIELDS = ("body", "signature")

# --- the broker: names and connection shared by crawls, workers and the writer ------------------

BROKER_ENV = "NKWATCH_BROKER"
ITEMS_STREAM = "nkwatch:items"  # finished items and crawl records, in order, for the writer
WRITER_GROUP = "nkwatch-writer"
DEAD_LETTERS = "nkwatch:dead-letters"  # records the writer could not store, with the reason
SEEN_KEYS = "nkwatch:seen"  # url_keys the writer has committed: the seen-URL check of workers
VALIDATORS = "nkwatch:validators"  # source -> {"etag", "last_modified"}, written after commit
CRAWL_HISTORY = "nkwatch:crawls"  # the latest crawl records, newest first
LEASE_PREFIX = "nkwatch:lease:"  # one crawl per source at a time, across workers
QUEUED_PREFIX = "nkwatch:queued:"  # a job for this source waits or runs: don't enqueue another
DONE_PREFIX = "nkwatch:done:"  # this job's crawl ran (perhaps on a worker that later died)

_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


class BrokerError(Exception):
    """The broker cannot be used; the message is one line naming it and what went wrong."""


class DistributedExtraMissing(BrokerError):
    """``redis``/``rq`` are not installed: waiting will not help, unlike an unreachable broker."""


def connect(url: str, *, check: bool = True):
    """A Redis client for ``url``; ``check`` pings it so a wrong URL fails here, in one line.

    ``redis`` is imported only here: without a broker nkwatch never needs it installed.
    """
    try:
        import redis
    except ImportError:
        raise DistributedExtraMissing(
            "distributed mode needs the 'distributed' extra: pip install 'nkwatch[distributed]'"
        ) from None
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        raise BrokerError(f"broker {url!r}: expected redis://HOST:PORT/DB")
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
    if check:
        try:
            client.ping()
        except redis.RedisError as error:
            raise BrokerError(
                f"broker {url}: unreachable ({describe_redis_error(error)})"
            ) from None
    return client


def describe_redis_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]


def is_redis_error(error: BaseException) -> bool:
    try:
        import redis
    except ImportError:
        return False
    return isinstance(error, redis.RedisError)


def lease_key(source: str) -> str:
    return LEASE_PREFIX + source


def renew_lease(conn, source: str, token: str, seconds: float) -> bool:
    """Extend the lease if we still hold it; False if it expired or someone else holds it."""
    return bool(conn.eval(_RENEW, 1, lease_key(source), token, int(seconds * 1000)))


# --- items on the stream ----------------------------------------------------------------------


def item_to_record(item: ArticleItem) -> dict[str, str]:
    """One stream entry's fields for a finished item."""
    fields = persistent_fields(item)
    if fields.get("raw_packed"):  # the worker packed the page already: the writer needs no body
        fields["body"] = b""
    for name in BYTES_FIELDS:
        fields[name] = base64.b64encode(gzip.compress(fields[name] or b"", 6)).decode("ascii")
    return {"kind": "item", "v": str(RECORD_VERSION), "source": item.source or "", "url": item.url or "",
            "item": json.dumps(fields, ensure_ascii=False, default=_encode_bytes)}  # fmt: skip


def item_from_record(fields: dict[str, str]) -> ArticleItem:
    """The item back from its stream entry; raises ValueError saying what is wrong with it."""
    try:
        values = json.loads(fields["item"], object_hook=_decode_bytes)
        for name in BYTES_FIELDS:
            values[name] = gzip.decompress(base64.b64decode(values.get(name) or ""))
        known = {f.name for f in dataclasses.fields(ArticleItem)}
        return ArticleItem(**{k: v for k, v in values.items() if k in known})
    except (KeyError, TypeError, ValueError, OSError, EOFError) as error:
        raise ValueError(f"undecodable item record: {type(error).__name__}: {error}") from None


def _encode_bytes(value):
    """Bytes nested in hints or scores survive the trip as tagged base64."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_bytes(value: dict):
    if len(value) == 1 and "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    return value


class QueueStorePipeline:
    """Pushes each finished item to ``ITEMS_STREAM``.

    Settings: ``NKWATCH_BROKER``; ``NKWATCH_LEASE_SOURCE``, ``NKWATCH_LEASE_TOKEN``,
    ``NKWATCH_LEASE_SECONDS`` (the lease this crawl renews). Counts ``nkwatch/queued`` and
    ``nkwatch/queue_push_failed``; an item that cannot be pushed is recorded as a failed
    article of its source, so the source keeps no validators and the next crawl fetches it.
    """

    def __init__(self, crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.conn = connect(settings.get("NKWATCH_BROKER"), check=False)
        self.lease_source = settings.get("NKWATCH_LEASE_SOURCE") or None
        self.lease_token = settings.get("NKWATCH_LEASE_TOKEN") or None
        self.lease_seconds = settings.getfloat("NKWATCH_LEASE_SECONDS", 30.0)
        self.timer: task.LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def open_spider(self, spider=None) -> None:
        if self.lease_source and self.lease_token:
            self.timer = task.LoopingCall(self._renew_lease)
            self.timer.start(max(0.5, self.lease_seconds / 3), now=True)

    def close_spider(self, spider=None) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()

    def process_item(self, item, spider=None):
        try:
            record = item_to_record(item)
        except (TypeError, ValueError) as error:  # a field JSON cannot hold: say which item
            return self._not_queued(item, f"unserializable item: {error}")
        for attempt in range(PUSH_ATTEMPTS):
            try:
                self.conn.xadd(ITEMS_STREAM, record)
                self.crawler.stats.inc_value("nkwatch/queued")
                return item
            except Exception as error:
                if not is_redis_error(error):
                    raise
                reason = describe_redis_error(error)
                time.sleep(0.2 * (attempt + 1))
        return self._not_queued(item, f"not queued for the writer: {reason}")

    def _not_queued(self, item, reason: str):
        """Count the item as a failed article of its source: the crawl then keeps no feed
        validators, and the next crawl fetches the URL again."""
        from crawler.health import SourceHealth

        self.crawler.stats.inc_value("nkwatch/queue_push_failed")
        SourceHealth.from_crawler(self.crawler).failed_article(
            item.source, item.response_url, reason
        )
        return item

    def _renew_lease(self) -> None:
        try:
            renew_lease(self.conn, self.lease_source, self.lease_token, self.lease_seconds)
        except Exception as error:
            if not is_redis_error(error):
                raise
            logger.warning("lease on %s not renewed: %s", self.lease_source,
                           describe_redis_error(error))  # fmt: skip
