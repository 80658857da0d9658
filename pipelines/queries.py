"""Read queries that export, search and stats share: filters, their validation, search, counts.

Filters become one SQL ``WHERE`` fragment over ``articles AS a`` so every reader selects the
same rows for the same options. Dates compare as strings: the corpus stores UTC ISO-8601 with
seconds and a ``Z``, and user dates are normalised to that form first.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlite_utils

from pipelines.dates import to_utc_iso

STATUSES = ("ok", "offtopic", "failed")
# Korean, Japanese and Chinese scripts: unicode61 keeps a run of them as one token, so FTS5
# cannot find a word inside it; such queries scan the text instead (see ``search``).
_CJK = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")  # fmt: skip


class QueryError(ValueError):
    """Bad input to a read (unknown source or topic, a date that is not a date)."""


@dataclass
class Filters:
    """Which articles a reader wants; empty fields do not filter."""

    since: str | None = None  # UTC ISO-8601, inclusive
    until: str | None = None  # UTC ISO-8601, exclusive
    topics: list[str] = field(default_factory=list)  # passed any of these
    sources: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    min_score: float | None = None  # a topic score at least this (of --topic if given)
    statuses: list[str] = field(default_factory=lambda: ["ok"])


def parse_when(text: str, *, end: bool = False) -> str:
    """A user date or datetime as the corpus's UTC ISO-8601; a bare ``end`` date means its end."""
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z]") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if end and len(raw) == 10:  # a whole day: everything before the next midnight
        moment += timedelta(days=1)
    elif end:  # an instant: include it (the bound is exclusive)
        moment += timedelta(seconds=1)
    return to_utc_iso(moment)


def known_sources(db: sqlite_utils.Database) -> list[str]:
    rows = db.execute(
        "SELECT source FROM articles UNION SELECT source FROM sources_state ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows if row[0]]


def known_topics(db: sqlite_utils.Database) -> list[str]:
    rows = db.execute("SELECT DISTINCT topic FROM topic_scores ORDER BY topic").fetchall()
    return [row[0] for row in rows]


def validate_filters(db: sqlite_utils.Database, filters: Filters) -> None:
    """Raise ``QueryError`` naming the first source or topic the corpus has never seen."""
    sources = set(known_sources(db))
    for name in filters.sources:
        if name not in sources:
            raise QueryError(f"unknown source {name!r}: the corpus has {_listing(sources)}")
    topics = set(known_topics(db))
    for name in filters.topics:
        if name not in topics:
            raise QueryError(f"unknown topic {name!r}: the corpus has {_listing(topics)}")
    statuses = set(STATUSES) | {r[0] for r in db.execute("SELECT DISTINCT status FROM articles")}
    for status in filters.statuses:
        if status not in statuses:
            raise QueryError(f"unknown status {status!r}: the corpus has {_listing(statuses)}")


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) if names else "none yet"


def filter_sql(filters: Filters) -> tuple[str, list[Any]]:
    """The filters as a SQL condition over ``articles AS a``, with its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if filters.statuses:
        clauses.append(f"a.status IN ({_marks(filters.statuses)})")
        params += filters.statuses
    if filters.since:
        clauses.append("COALESCE(a.published_at, a.fetched_at) >= ?")
        params.append(filters.since)
    if filters.until:
        clauses.append("COALESCE(a.published_at, a.fetched_at) < ?")
        params.append(filters.until)
    if filters.sources:
        clauses.append(f"a.source IN ({_marks(filters.sources)})")
        params += filters.sources
    if filters.languages:
        # "zh" also selects "zh-CN": the stored code may carry a region
        clauses.append(
            "(" + " OR ".join("lower(a.language) = ? OR lower(a.language) LIKE ?" for _ in filters.languages) + ")"
        )  # fmt: skip
        for code in filters.languages:
            params += [code.lower(), code.lower() + "-%"]
    if filters.topics or filters.min_score is not None:
        score = "" if filters.min_score is None else " AND t.score >= ?"
        topics = (
            f" AND t.passed AND t.topic IN ({_marks(filters.topics)})" if filters.topics else ""
        )
        clauses.append(
            f"EXISTS (SELECT 1 FROM topic_scores t WHERE t.article_id = a.id{topics}{score})"
        )
        params += filters.topics
        if filters.min_score is not None:
            params.append(filters.min_score)
    return (" AND ".join(clauses) or "1"), params


def _marks(values: list[Any]) -> str:
    return ", ".join("?" for _ in values)


# --- search ----------------------------------------------------------------------------------

SEARCH_COLUMNS = (
    "a.id, a.title, a.source, a.language, a.published_at, a.published_local, "
    "a.response_url AS url, a.story_id"
)


def is_cjk(query: str) -> bool:
    return bool(_CJK.search(query))


def search(
    db: sqlite_utils.Database, query: str, filters: Filters, limit: int = 20
) -> tuple[list[dict], str]:
    """Articles matching ``query``, best first, with a snippet; and how the query was run.

    Latin-script queries go to FTS5 (bm25, title weighted 5x). A query FTS5 rejects as syntax
    is retried with each word quoted. Korean, Japanese and Chinese queries scan title and text
    for every word as a substring, because unicode61 keeps a run of those scripts as one token.
    """
    if not query.strip():
        raise QueryError("empty search query")
    if is_cjk(query):
        return _search_substrings(db, query.split(), filters, limit), "substring"
    try:
        return _search_fts(db, query, filters, limit), "fts5"
    except sqlite3.OperationalError:
        pass  # FTS5 syntax (an open quote, a bare operator): retried as plain words below
    quoted = " ".join('"' + word.replace('"', '""') + '"' for word in query.split())
    try:
        return _search_fts(db, quoted, filters, limit), "fts5 (words quoted)"
    except sqlite3.OperationalError as error:
        raise QueryError(f"cannot search for {query!r}: {error}") from None


def _search_fts(db, match: str, filters: Filters, limit: int) -> list[dict]:
    where, params = filter_sql(filters)
    sql = (
        f"SELECT {SEARCH_COLUMNS}, snippet(articles_fts, -1, '[', ']', '…', 16) AS snippet, "
        "bm25(articles_fts, 5.0, 1.0) AS rank FROM articles_fts "
        "JOIN articles a ON a.id = articles_fts.rowid "
        f"WHERE articles_fts MATCH ? AND {where} ORDER BY rank LIMIT ?"
    )
    return [dict(row) for row in _rows(db, sql, [match, *params, limit])]


def _search_substrings(db, words: list[str], filters: Filters, limit: int) -> list[dict]:
    where, params = filter_sql(filters)
    found: list[str] = []
    found_params: list[Any] = []
    hits: list[str] = []
    hit_params: list[Any] = []
    for word in words:
        pattern = "%" + re.sub(r"([%_\\])", r"\\\1", word) + "%"
        found.append("(a.title LIKE ? ESCAPE '\\' OR a.text LIKE ? ESCAPE '\\')")
        found_params += [pattern, pattern]
        # occurrences in the title count five times, as in the FTS ranking
        hits.append(
            "5 * (length(COALESCE(a.title, '')) - length(replace(COALESCE(a.title, ''), ?, ''))) / length(?)"
            " + (length(COALESCE(a.text, '')) - length(replace(COALESCE(a.text, ''), ?, ''))) / length(?)"
        )  # fmt: skip
        hit_params += [word, word, word, word]
    first = words[0]
    sql = (
        f"SELECT {SEARCH_COLUMNS}, "
        "CASE WHEN instr(a.text, ?) > 0 THEN '…' || substr(a.text, max(1, instr(a.text, ?) - 40), length(?) + 80) || '…' "
        "ELSE substr(COALESCE(a.text, ''), 1, 120) END AS snippet, "
        f"-({' + '.join(hits)}) AS rank FROM articles a "
        f"WHERE {' AND '.join(found)} AND {where} ORDER BY rank, a.id LIMIT ?"
    )  # fmt: skip
    args = [first, first, first, *hit_params, *found_params, *params, limit]
    rows = [dict(row) for row in _rows(db, sql, args)]
    for row in rows:
        for word in words:
            row["snippet"] = row["snippet"].replace(word, f"[{word}]")
    return rows


def _rows(db: sqlite_utils.Database, sql: str, params: list[Any]):
    cursor = db.conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    for values in cursor:
        yield dict(zip(names, values, strict=True))


# --- stats -----------------------------------------------------------------------------------


def corpus_stats(db: sqlite_utils.Database, *, by: str = "published", days: int = 14) -> dict:
    """Counts per day, source, topic and language, as lists of row dicts ready to print.

    ``by="published"`` dates an article by its publication (falling back to when it was
    fetched) and a story by its first publication; ``by="seen"`` uses when nkwatch saw them.
    """
    article_day, story_day = _day_columns(by)
    per_day = list(
        _rows(
            db,
            f"WITH days AS (SELECT {article_day} AS day FROM articles a UNION "
            f"SELECT {story_day} FROM stories s) "
            "SELECT day, "
            f"(SELECT count(*) FROM articles a WHERE {article_day} = day) AS articles, "
            f"(SELECT count(*) FROM articles a WHERE {article_day} = day AND a.status = 'ok') AS ok, "
            f"(SELECT count(*) FROM stories s WHERE {story_day} = day) AS new_stories, "
            f"(SELECT count(*) FROM stories s JOIN articles a ON a.id = s.representative_id "
            f"WHERE {story_day} = day AND a.relevant AND a.status = 'ok') AS relevant_stories "
            "FROM days WHERE day IS NOT NULL ORDER BY day DESC LIMIT ?",
            [days],
        )
    )  # fmt: skip
    return {
        "totals": _totals(db),
        "per_day": per_day[::-1],
        "per_source": list(
            _rows(
                db,
                "SELECT source, count(*) AS articles, sum(status = 'ok') AS ok, "
                "sum(status = 'offtopic') AS offtopic, sum(status = 'failed') AS failed, "
                "count(DISTINCT story_id) AS stories, max(fetched_at) AS last_fetched_at "
                "FROM articles GROUP BY source ORDER BY articles DESC, source",
                [],
            )
        ),
        "per_topic": list(
            _rows(
                db,
                "SELECT t.topic, count(*) AS scored, sum(t.passed) AS passed, "
                "count(DISTINCT CASE WHEN t.passed THEN a.story_id END) AS stories, "
                "round(avg(t.score), 3) AS mean_score FROM topic_scores t "
                "JOIN articles a ON a.id = t.article_id GROUP BY t.topic ORDER BY passed DESC, t.topic",
                [],
            )
        ),  # fmt: skip
        "per_language": list(
            _rows(
                db,
                "SELECT COALESCE(language, '?') AS language, count(*) AS articles, "
                "sum(status = 'ok') AS ok, count(DISTINCT story_id) AS stories "
                "FROM articles GROUP BY 1 ORDER BY articles DESC, language",
                [],
            )
        ),
    }


def _day_columns(by: str) -> tuple[str, str]:
    if by == "published":
        return (
            "substr(COALESCE(a.published_at, a.fetched_at), 1, 10)",
            "substr(COALESCE(s.first_published_at, s.first_seen_at), 1, 10)",
        )
    if by == "seen":
        return "substr(a.fetched_at, 1, 10)", "substr(s.first_seen_at, 1, 10)"
    raise QueryError(f"unknown date basis {by!r}: use published or seen")


def _totals(db: sqlite_utils.Database) -> dict[str, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM articles WHERE status = 'ok'), "
        "(SELECT count(*) FROM stories), (SELECT count(*) FROM articles WHERE relevant AND status = 'ok')"
    ).fetchone()  # fmt: skip
    return dict(zip(("articles", "ok", "stories", "relevant_articles"), row, strict=True))


def relevant_stories_per_day(db: sqlite_utils.Database, *, by: str = "seen") -> list[dict]:
    """New relevant stories per day and topic passed by the story's representative article.

    A corpus without topic scores counts every relevant story under the topic ``relevant``.
    """
    _, story_day = _day_columns(by)
    return list(
        _rows(
            db,
            f"SELECT {story_day} AS day, COALESCE(t.topic, 'relevant') AS topic, "
            "count(DISTINCT s.id) AS stories FROM stories s "
            "JOIN articles a ON a.id = s.representative_id "
            "LEFT JOIN topic_scores t ON t.article_id = a.id AND t.passed "
            "WHERE a.relevant AND a.status = 'ok' AND (t.topic IS NOT NULL OR NOT EXISTS "
            "(SELECT 1 FROM topic_scores x WHERE x.article_id = a.id AND x.passed)) "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            [],
        )
    )
