"""Exports of the corpus: the streaming row query, JSONL/CSV/Parquet/Atom writers, consumer cursors.

Rows come from one SQL cursor ordered by article id and go straight to the writer, so memory
stays flat however large the corpus (Parquet holds one batch of ``PARQUET_BATCH_ROWS``; Atom
is written entry by entry). A file is written under a temporary name beside the
target and renamed only when complete; a consumer's cursor moves only after that rename, so
an interrupted export neither leaves a file that looks whole nor loses articles.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import lxml.etree
import sqlite_utils

from pipelines.corpus import utc_now
from pipelines.queries import Filters, filter_sql, known_topics

FORMATS = ("jsonl", "csv", "parquet", "atom")
PARQUET_BATCH_ROWS = 1000
ATOM_SUMMARY_CHARS = 600
# A spreadsheet runs a cell starting with one of these as a formula (or DDE command).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    """An export that cannot start or finish; the message names the input at fault."""


@dataclass(frozen=True)
class ExportField:
    name: str
    type: str  # the Parquet type, written as docs/schema.md writes it
    meaning: str


# Parquet has no seconds unit, so timestamps are milliseconds (holding whole seconds).
TIMESTAMP = "timestamp[ms, UTC]"
ARTICLE_FIELDS = (
    ExportField("id", "int64", "article id in the corpus; incremental exports follow it"),
    ExportField("url", "string", "the address the page was served from, after redirects"),
    ExportField("canonical_url", "string", "the page's rel=canonical address (or the final URL)"),
    ExportField("source", "string", "name of the source (feed, sitemap or section) it came from"),
    ExportField("fetched_at", TIMESTAMP, "when nkwatch fetched the page"),
    ExportField("published_at", TIMESTAMP, "publication time the page or feed gave; null if none"),
    ExportField("published_local", "string",
                "the same time as the page or feed wrote it, ISO 8601 with its UTC offset"),
    ExportField("story_id", "int64", "the story this article is a sighting of"),
    ExportField("title", "string", "headline"),
    ExportField("authors", "list<string>", "bylines, in page order"),
    ExportField("language", "string", "language code (ISO 639-1, maybe with a region)"),
    ExportField("text", "string", "the article's main text as extracted"),
    ExportField("status", "string", "ok, offtopic (text not kept) or failed (extraction failed)"),
    ExportField("word_count", "int64", "words in text"),
    ExportField("topic_scores", "map<string, double>", "relevance score per watch topic"),
    ExportField("topics_passed", "list<string>", "watch topics whose threshold the article met"),
    ExportField("content_hash", "string", "hash of the normalised text; equal text, equal hash"),
    ExportField("extractor_version", "string", "nkwatch and trafilatura versions that extracted"),
)
STORY_FIELDS = (
    *ARTICLE_FIELDS,
    ExportField("first_seen_at", TIMESTAMP, "when nkwatch first saw the story"),
    ExportField(
        "sightings",
        "list<struct<article_id: int64, url: string, source: string, fetched_at: timestamp[ms, UTC]>>",
        "every article of the story, oldest first (the representative included)",
    ),
)


def fields_for(per: str) -> tuple[ExportField, ...]:
    return STORY_FIELDS if per == "story" else ARTICLE_FIELDS


# --- the row query ---------------------------------------------------------------------------

_ARTICLE_SELECT = """
SELECT a.id, a.response_url AS url, a.canonical_url, a.source, a.fetched_at, a.published_at,
  a.published_local,
  a.story_id, a.title, a.authors, a.language, a.text, a.status, a.word_count,
  (SELECT json_group_object(t.topic, t.score) FROM topic_scores t
     WHERE t.article_id = a.id) AS topic_scores,
  (SELECT json_group_array(topic) FROM (SELECT t.topic FROM topic_scores t
     WHERE t.article_id = a.id AND t.passed ORDER BY t.topic)) AS topics_passed,
  a.content_hash, a.extractor_version"""
_STORY_EXTRA = """,
  s.first_seen_at,
  (SELECT json_group_array(json_object('article_id', x.id, 'url', x.response_url,
     'source', x.source, 'fetched_at', x.fetched_at))
   FROM (SELECT * FROM articles x WHERE x.story_id = s.id ORDER BY x.id) x) AS sightings"""
_JSON_COLUMNS = ("authors", "topic_scores", "topics_passed", "sightings")


def high_water_mark(db: sqlite_utils.Database) -> int:
    """The largest article id now; an export covers ids up to it and no further."""
    return db.execute("SELECT COALESCE(max(id), 0) FROM articles").fetchone()[0]


def iter_rows(
    db: sqlite_utils.Database, filters: Filters, *, per: str = "article", after_id: int = 0,
    upto_id: int | None = None,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Export rows in id order, streamed from one cursor.

    ``per="article"``: every article with ``after_id < id <= upto_id`` that passes the filters.
    ``per="story"``: one row per story first sighted in that range, the story's representative
    article (which the filters test) with the list of its sightings.
    """
    upto_id = high_water_mark(db) if upto_id is None else upto_id
    where, params = filter_sql(filters)
    if per == "story":
        sql = (
            f"{_ARTICLE_SELECT}{_STORY_EXTRA} FROM stories s JOIN articles a ON a.id = s.representative_id "
            "WHERE (SELECT min(x.id) FROM articles x WHERE x.story_id = s.id) BETWEEN ? AND ? "
            f"AND {where} ORDER BY a.id"
        )  # fmt: skip
    elif per == "article":
        sql = f"{_ARTICLE_SELECT} FROM articles a WHERE a.id BETWEEN ? AND ? AND {where} ORDER BY a.id"
    else:
        raise ExportError(f"unknown --per {per!r}: use story or article")
    cursor = db.conn.execute(sql, [after_id + 1, upto_id, *params])
    names = [d[0] for d in cursor.description]
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        for column in _JSON_COLUMNS:
            if column in row:
                row[column] = json.loads(
                    row[column] or ("{}" if column == "topic_scores" else "[]")
                )
        yield row


# --- consumer cursors ------------------------------------------------------------------------


def consumer_cursor(db: sqlite_utils.Database, consumer: str) -> int:
    row = db.execute(
        "SELECT last_article_id FROM export_cursors WHERE consumer = ?", [consumer]
    ).fetchone()
    return row[0] if row else 0


def save_consumer_cursor(db: sqlite_utils.Database, consumer: str, last_article_id: int) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO export_cursors (consumer, last_article_id, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(consumer) DO UPDATE SET last_article_id = excluded.last_article_id, "
            "updated_at = excluded.updated_at",
            [consumer, last_article_id, utc_now()],
        )


# --- output ----------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(out: Path | None) -> Iterator[IO[bytes]]:
    """A binary stream for the export: stdout, or a temp file renamed to ``out`` on success."""
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a directory")
    folder = out.parent if str(out.parent) else Path(".")
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=folder)
    except OSError as error:
        raise ExportError(f"cannot write {out}: {error.strerror or error}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        temp.chmod(0o666 & ~umask)  # mkstemp makes it private; an export is an ordinary file
        os.replace(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_export(
    rows: Iterable[dict], stream: IO[bytes], fmt: str, *, per: str = "article", bom: bool = False,
    feed_topics: list[str] | None = None,
) -> int:  # fmt: skip
    """Write ``rows`` to ``stream`` in ``fmt``; returns how many rows were written."""
    if fmt == "jsonl":
        return write_jsonl(rows, stream)
    if fmt == "csv":
        return write_csv(rows, stream, fields_for(per), bom=bom)
    if fmt == "parquet":
        return write_parquet(rows, stream, fields_for(per))
    if fmt == "atom":
        return write_atom(rows, stream, feed_topics or [])
    raise ExportError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def write_jsonl(rows: Iterable[dict], stream: IO[bytes]) -> int:
    count = 0
    for row in rows:
        stream.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        count += 1
    return count


def neutralise_cell(value: Any) -> Any:
    """A cell a spreadsheet would run as a formula, made inert by a leading apostrophe."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(
    rows: Iterable[dict], stream: IO[bytes], fields: tuple[ExportField, ...], *, bom: bool = False
) -> int:
    """UTF-8 CSV; lists and mappings as JSON; formula-like cells neutralised; BOM for Excel."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig" if bom else "utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow([f.name for f in fields])
    count = 0
    for row in rows:
        writer.writerow([neutralise_cell(_csv_value(row[f.name])) for f in fields])
        count += 1
    text.flush()
    text.detach()
    return count


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


# --- Parquet ---------------------------------------------------------------------------------


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ExportError(
            "Parquet needs pyarrow: pip install 'nkwatch[export]' (or pip install pyarrow)"
        ) from None
    return pyarrow


def arrow_type(pa, name: str):
    """The pyarrow type for a type as docs/schema.md writes it."""
    simple = {
        "int64": pa.int64(),
        "double": pa.float64(),
        "string": pa.string(),
        TIMESTAMP: pa.timestamp("ms", tz="UTC"),
        "list<string>": pa.list_(pa.string()),
        "map<string, double>": pa.map_(pa.string(), pa.float64()),
    }
    if name in simple:
        return simple[name]
    if name.startswith("list<struct<") and name.endswith(">>"):
        members = re.split(r", (?=\w+: )", name[len("list<struct<") : -2])
        return pa.list_(
            pa.struct([(m.split(": ")[0], arrow_type(pa, m.split(": ", 1)[1])) for m in members])
        )
    raise ExportError(f"no Parquet type for {name!r}")


def parquet_schema(fields: tuple[ExportField, ...]):
    pa = _pyarrow()
    return pa.schema([(f.name, arrow_type(pa, f.type)) for f in fields])


def write_parquet(rows: Iterable[dict], stream: IO[bytes], fields: tuple[ExportField, ...]) -> int:
    """Typed Parquet in row groups of ``PARQUET_BATCH_ROWS``."""
    pa = _pyarrow()
    schema = parquet_schema(fields)
    count = 0
    with pa.parquet.ParquetWriter(stream, schema) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(_arrow_row(row))
            count += 1
            if len(batch) >= PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return count


def _arrow_row(row: dict) -> dict:
    converted = dict(row)
    for name in ("fetched_at", "published_at", "first_seen_at"):
        if name in converted:
            converted[name] = parse_timestamp(converted[name])
    converted["topic_scores"] = list(row["topic_scores"].items())
    if "sightings" in row:
        converted["sightings"] = [
            {**s, "fetched_at": parse_timestamp(s["fetched_at"])} for s in row["sightings"]
        ]
    return converted


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- Atom ------------------------------------------------------------------------------------


ATOM = "http://www.w3.org/2005/Atom"
# XML 1.0 forbids most control characters; a page's text may hold them (lxml refuses to write them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def write_atom(rows: Iterable[dict], stream: IO[bytes], topics: list[str]) -> int:
    """An Atom feed with one entry per row; the watch topics are the feed's categories.

    Written incrementally (``lxml.etree.xmlfile``): each entry goes to the stream as it is
    made, so a feed of a million stories needs the memory of one.
    """
    count = 0
    with lxml.etree.xmlfile(stream, encoding="utf-8") as out:
        out.write_declaration()
        with out.element(f"{{{ATOM}}}feed", nsmap={None: ATOM}):
            head = [
                ("id", "urn:nkwatch:feed:" + (",".join(sorted(topics)) or "all")),
                ("title", "nkwatch: " + (", ".join(topics) or "all watched stories")),
                ("subtitle", "New stories found by nkwatch, one entry per story"),
                ("updated", _atom_time(datetime.now(UTC))),
            ]
            for name, value in head:
                out.write(_atom_element(name, value))
            author = lxml.etree.Element(f"{{{ATOM}}}author")
            _atom_child(author, "name", "nkwatch")
            out.write(author)
            for topic in topics:
                out.write(lxml.etree.Element(f"{{{ATOM}}}category", term=topic, label=topic))
            for row in rows:
                out.write(_atom_entry(row))
                count += 1
    return count


def _atom_entry(row: dict) -> lxml.etree._Element:
    entry = lxml.etree.Element(f"{{{ATOM}}}entry")
    _atom_child(entry, "id", row["canonical_url"] or row["url"])
    _atom_child(entry, "title", row["title"] or row["url"])
    lxml.etree.SubElement(entry, f"{{{ATOM}}}link", href=_xml_text(row["url"]), rel="alternate")
    seen = parse_timestamp(row.get("first_seen_at") or row["fetched_at"])
    _atom_child(entry, "updated", _atom_time(seen))
    if row["published_at"]:
        _atom_child(entry, "published", _atom_time(parse_timestamp(row["published_at"])))
    for name in row["authors"]:
        _atom_child(lxml.etree.SubElement(entry, f"{{{ATOM}}}author"), "name", name)
    for topic in row["topics_passed"]:
        lxml.etree.SubElement(entry, f"{{{ATOM}}}category", term=topic, label=topic)
    text = row["text"] or ""
    summary = text[:ATOM_SUMMARY_CHARS] + ("…" if len(text) > ATOM_SUMMARY_CHARS else "")
    sources = sorted({s["source"] for s in row.get("sightings", [])} or {row["source"]})
    _atom_child(entry, "summary", f"{summary}\n\nSeen at: {', '.join(sources)}")
    return entry


def _atom_element(name: str, text: str) -> lxml.etree._Element:
    element = lxml.etree.Element(f"{{{ATOM}}}{name}")
    element.text = _xml_text(text)
    return element


def _atom_child(parent: lxml.etree._Element, name: str, text: str) -> None:
    lxml.etree.SubElement(parent, f"{{{ATOM}}}{name}").text = _xml_text(text)


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("", value) if _NOT_XML.search(value) else value


def feed_topics(db: sqlite_utils.Database, filters: Filters) -> list[str]:
    """The topics an Atom feed is about: those asked for, else every topic the corpus scores."""
    return list(filters.topics) or known_topics(db)
