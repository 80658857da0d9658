"""``nkwatch export``, ``search``, ``stats`` and ``serve``: getting the corpus out and looking in.

Thin wrappers: the row query and writers live in ``pipelines.export``, the shared filters,
search and counts in ``pipelines.queries``. Every expected failure is one line on stderr.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from crawler.commands.options import db_option
from pipelines.corpus import open_corpus
from pipelines.export import (
    FORMATS,
    ExportError,
    atomic_output,
    consumer_cursor,
    feed_topics,
    high_water_mark,
    iter_rows,
    save_consumer_cursor,
    write_export,
)
from pipelines.queries import (
    STATUSES,
    Filters,
    QueryError,
    corpus_stats,
    parse_when,
    relevant_stories_per_day,
    search,
    validate_filters,
)


def _filter_options(function):
    """The options that select articles, the same for export and search."""
    options = [
        click.option("--since", help="Published (else fetched) on or after DATE (YYYY-MM-DD or ISO-8601, UTC)."),
        click.option("--until", help="Published (else fetched) on or before DATE (a bare date includes the day)."),
        click.option("--topic", "topics", multiple=True, help="Passed this watch topic (repeatable: any of them)."),
        click.option("--source", "sources", multiple=True, help="From this source (repeatable)."),
        click.option("--lang", "languages", multiple=True, help="In this language code, e.g. en, ko, ja, zh (repeatable)."),
        click.option("--min-score", type=float, help="A topic score (of --topic, if given) at least X."),
        click.option("--status", "statuses", multiple=True,
                     help=f"Article status to include: {', '.join(STATUSES)} or all (repeatable; default ok)."),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _filters(db, params: dict[str, Any]) -> Filters:
    statuses = list(params["statuses"] or ["ok"])
    filters = Filters(
        since=parse_when(params["since"]) if params["since"] else None,
        until=parse_when(params["until"], end=True) if params["until"] else None,
        topics=list(params["topics"]),
        sources=list(params["sources"]),
        languages=list(params["languages"]),
        min_score=params["min_score"],
        statuses=[] if "all" in statuses else statuses,
    )
    validate_filters(db, filters)
    return filters


def _open(db_path: str, *, write: bool = False):
    """The corpus, which must exist: a reader never creates an empty one by mistake."""
    if not Path(db_path).is_file():
        raise click.ClickException(f"no corpus at {db_path}: run `nkwatch crawl` or `nkwatch demo`")
    return open_corpus(db_path) if write else open_corpus(db_path, readonly=True)


def _fail_politely(function):
    """Turn the read and export errors into one-line click errors."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ExportError, QueryError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper


# --- export ----------------------------------------------------------------------------------


@click.command("export")
@db_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@_filter_options
@click.option("--per", type=click.Choice(["article", "story"]), default=None,
              help="One row per article, or per story (its representative, with sightings). "
                   "Default: story for atom, article otherwise.")  # fmt: skip
@click.option(
    "--consumer", help="Export only what this consumer has not had; move its cursor after."
)
@click.option("--out", type=click.Path(path_type=Path),
              help="Write to FILE (complete or not at all); default (or -) standard output.")  # fmt: skip
@click.option("--bom", is_flag=True, help="CSV: start with a UTF-8 BOM so Excel reads UTF-8.")
@_fail_politely
def export_command(db: str, fmt: str, per: str | None, consumer: str | None, out: Path | None,
                   bom: bool, **filter_params: Any) -> None:  # fmt: skip
    """Export articles or stories as JSONL, CSV, Parquet or Atom, with provenance."""
    per = per or ("story" if fmt == "atom" else "article")
    out = None if out is not None and str(out) == "-" else out
    if fmt == "parquet" and out is None:
        raise click.ClickException("Parquet is binary: give --out FILE.parquet")
    corpus = _open(db, write=consumer is not None)
    filters = _filters(corpus, filter_params)
    after_id = consumer_cursor(corpus, consumer) if consumer else 0
    upto_id = high_water_mark(corpus)
    rows = iter_rows(corpus, filters, per=per, after_id=after_id, upto_id=upto_id)
    with atomic_output(out) as stream:
        count = write_export(rows, stream, fmt, per=per, bom=bom,
                             feed_topics=feed_topics(corpus, filters))  # fmt: skip
    where = str(out) if out else "standard output"
    noun = "stories" if per == "story" else "articles"
    if consumer:
        moved = upto_id > after_id
        if moved:
            save_consumer_cursor(corpus, consumer, upto_id)
        if count == 0:
            click.echo(f"nothing new for consumer {consumer!r} (up to article {upto_id}); "
                       f"wrote an empty {fmt} to {where}", err=True)  # fmt: skip
            return
        click.echo(f"exported {count} {noun} to {where}; consumer {consumer!r} now at article "
                   f"{upto_id} (was {after_id})", err=True)  # fmt: skip
        return
    click.echo(f"exported {count} {noun} to {where}", err=True)


# --- search ----------------------------------------------------------------------------------


@click.command("search")
@click.argument("query")
@db_option
@_filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
@_fail_politely
def search_command(query: str, db: str, limit: int, as_json: bool, **filter_params: Any) -> None:
    """Full-text search over titles and texts, best first, with snippets.

    Words are ANDed; FTS5 syntax ("a phrase", OR, NOT, prefix*) works for Latin script. Korean,
    Japanese and Chinese words are found as substrings of the title or text.
    """
    corpus = _open(db)
    hits, method = search(corpus, query, _filters(corpus, filter_params), limit)
    if as_json:
        click.echo(json.dumps({"query": query, "method": method, "hits": hits},
                              ensure_ascii=False, indent=2))  # fmt: skip
        return
    if not hits:
        click.echo(f"no article matches {query!r}", err=True)
        return
    for number, hit in enumerate(hits, start=1):
        date = (hit["published_local"] or hit["published_at"] or "")[:10]  # the page's own day
        click.echo(f"{number:3}. {hit['title']}")
        click.echo(
            f"     {hit['source']} · {hit['language'] or '?'} · {date} · story {hit['story_id']}"
        )
        click.echo(f"     {' '.join((hit['snippet'] or '').split())}")
        click.echo(f"     {hit['url']}")
    click.echo(f"{len(hits)} hit(s) ({method})", err=True)


# --- stats -----------------------------------------------------------------------------------


@click.command("stats")
@db_option
@click.option("--by", type=click.Choice(["published", "seen"]), default="published", show_default=True,
              help="Date articles and stories by publication or by when nkwatch saw them.")  # fmt: skip
@click.option("--days", type=click.IntRange(1), default=14, show_default=True,
              help="How many of the latest days to list.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw new relevant stories per day by topic into FILE.png (needs matplotlib).")  # fmt: skip
@_fail_politely
def stats_command(db: str, by: str, days: int, as_json: bool, plot: Path | None) -> None:
    """Articles and stories per day, source, topic and language."""
    corpus = _open(db)
    counts = corpus_stats(corpus, by=by, days=days)
    if plot is not None:
        _plot(relevant_stories_per_day(corpus, by=by), plot, by)
    if as_json:
        click.echo(json.dumps(counts, ensure_ascii=False, indent=2))
        return
    totals = counts["totals"]
    click.echo(f"{totals['articles']} articles ({totals['ok']} ok, {totals['relevant_articles']} "
               f"relevant), {totals['stories']} stories")  # fmt: skip
    for title, key in (
        (f"Per day ({by}, latest {days})", "per_day"),
        ("Per source", "per_source"),
        ("Per topic", "per_topic"),
        ("Per language", "per_language"),
    ):
        click.echo(f"\n{title}")
        click.echo(format_table(counts[key]) if counts[key] else "  (none)")
    if plot is not None:
        click.echo(f"\nPlot written to {plot}", err=True)


def format_table(rows: list[dict]) -> str:
    """Rows as aligned columns: text left, numbers right."""
    columns = list(rows[0])
    cells = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[c], int | float) for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "  " + "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _plot(rows: list[dict], path: Path, by: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise click.ClickException("--plot needs matplotlib: pip install matplotlib") from None
    days = sorted({row["day"] for row in rows})
    topics = sorted({row["topic"] for row in rows})
    counts = {(row["day"], row["topic"]): row["stories"] for row in rows}
    figure, axes = plt.subplots(figsize=(max(6, min(20, len(days) * 0.3)), 4))
    bottom = [0] * len(days)
    for topic in topics:
        heights = [counts.get((day, topic), 0) for day in days]
        axes.bar(days, heights, bottom=bottom, label=topic)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_title(f"New relevant stories per day by topic ({by})")
    axes.set_ylabel("stories")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.tick_params(axis="x", labelrotation=90, labelsize=7)
    if topics:
        axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise click.ClickException(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        plt.close(figure)


# --- serve -----------------------------------------------------------------------------------


def datasette_metadata(database: str) -> dict[str, Any]:
    """Datasette metadata for the corpus: facets, sort orders, canned queries, noise hidden."""
    return {
        "title": "nkwatch corpus",
        "description": "Articles on North Korean phone scams and IT workers under false identities.",
        "databases": {
            database: {
                "tables": {
                    "articles": {
                        "facets": ["source", "language", "status", "relevant", {"array": "authors"}],
                        "sort_desc": "id",
                        "label_column": "title",
                    },
                    "topic_scores": {"facets": ["topic", "passed"], "sort_desc": "score"},
                    "stories": {"facets": ["sites"], "sort_desc": "first_seen_at", "label_column": "title"},
                    "indicators": {"facets": ["kind"]},
                    "runs": {"facets": ["status"], "sort_desc": "started_at"},
                    "sources_state": {"sort": "source"},
                    "raw_pages": {"hidden": True},
                    "dedupe_signatures": {"hidden": True},
                    "dedupe_buckets": {"hidden": True},
                },
                "queries": {
                    "articles_by_topic": {
                        "title": "Articles that passed a topic",
                        "sql": "SELECT a.id, a.title, a.source, a.language, a.published_at, t.topic, "
                        "t.score, a.response_url AS url FROM topic_scores t JOIN articles a "
                        "ON a.id = t.article_id WHERE t.passed AND (:topic = '' OR t.topic = :topic) "
                        "ORDER BY a.published_at DESC",
                    },
                    "stories_with_sightings": {
                        "title": "Stories seen at more than one address",
                        "sql": "SELECT s.id, s.title, s.first_seen_at, count(a.id) AS sightings, "
                        "group_concat(DISTINCT a.source) AS sources FROM stories s JOIN articles a "
                        "ON a.story_id = s.id GROUP BY s.id HAVING count(a.id) > 1 "
                        "ORDER BY s.first_seen_at DESC",
                    },
                },
            }
        },
    }  # fmt: skip


@click.command("serve")
@db_option
@click.option("--metadata", "metadata_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Only write the Datasette metadata to FILE.")  # fmt: skip
@click.option("--port", type=int, default=8001, show_default=True)
def serve_command(db: str, metadata_out: Path | None, port: int) -> None:
    """Browse the corpus in Datasette with facets (source, language, status, topic)."""
    metadata = datasette_metadata(Path(db).stem)
    text = json.dumps(metadata, ensure_ascii=False, indent=2) + "\n"
    if metadata_out is not None:
        try:
            metadata_out.write_text(text, encoding="utf-8")
        except OSError as error:
            raise click.ClickException(f"cannot write {metadata_out}: {error.strerror}") from None
        click.echo(f"Datasette metadata written to {metadata_out}", err=True)
        return
    _open(db)
    if shutil.which("datasette") is None:
        metadata_file = f"{Path(db).stem}-metadata.json"
        click.echo("Datasette is not installed. To browse the corpus:\n"
                   "  pip install datasette\n"
                   f"  nkwatch serve --db {db} --metadata {metadata_file}\n"
                   f"  datasette serve {db} --metadata {metadata_file} --port {port}")  # fmt: skip
        return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as file:
        file.write(text)
    command = ["datasette", "serve", db, "--metadata", file.name, "--port", str(port)]
    click.echo(" ".join(command), err=True)
    try:
        sys.exit(subprocess.call(command))
    finally:
        Path(file.name).unlink(missing_ok=True)


COMMANDS = [export_command, search_command, stats_command, serve_command]
