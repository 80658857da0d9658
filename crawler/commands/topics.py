"""``nkwatch topics list|test`` and ``nkwatch indicators``: the watch topics and what they find.

``topics test`` scores one page or text file exactly as the crawl would (extraction, then every
topic, then indicators if relevant) and shows the evidence, so a topic can be tuned by trying
it on the article it missed. ``indicators`` lists what relevant articles gave up, read-only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from crawler import __version__
from crawler.commands.options import DEFAULT_DB
from pipelines.corpus import open_corpus
from pipelines.relevance import (
    Topics,
    TopicScore,
    TopicsError,
    extract_indicators,
    load_topics,
    score_article,
)

FETCH_TIMEOUT = 30
FETCH_MAX_BYTES = 20 * 1024 * 1024
HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".shtml")
TITLE_MAX_CHARS = 200


def _topics_option(function):
    return click.option(
        "--topics", "topics_file", envvar="NKWATCH_TOPICS", default=None,
        type=click.Path(dir_okay=False),
        help="Topics TOML; also NKWATCH_TOPICS. Default ./topics.toml, else the shipped topics.",
    )(function)  # fmt: skip


def _json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(function)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _load(topics_file: str | None) -> Topics:
    try:
        return load_topics(topics_file)
    except (TopicsError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None


@click.group()
def topics() -> None:
    """The watch topics: list them, or try them on one article."""


@topics.command("list")
@_topics_option
@_json_option
def list_topics(topics_file: str | None, as_json: bool) -> None:
    """List the watch topics, their thresholds and term groups."""
    loaded = _load(topics_file)
    entries = [
        {
            "name": topic.name,
            "description": topic.description,
            "threshold": topic.threshold,
            "near": [list(pair) for pair in topic.near],
            "yields_to": topic.yields_to,
            "groups": [
                {
                    "name": g.name,
                    "required": g.required,
                    "terms": len(g.terms),
                    "cap": g.cap,
                    "examples": [t.text for t in g.terms[:6]],
                }
                for g in topic.groups
            ],  # fmt: skip
        }
        for topic in loaded.topics
    ]
    if as_json:
        _emit_json({"topics_file": loaded.origin, "topics": entries})
        return
    click.echo(f"Topics from {loaded.origin}:")
    for entry in entries:
        click.echo(f"\n  {entry['name']}  (passes at {entry['threshold']:g})")
        click.echo(f"    {entry['description']}")
        for group in entry["groups"]:
            need = "required" if group["required"] else "optional"
            click.echo(f"    {group['name']:12} {need:8} {group['terms']:3} terms, e.g. "
                       + ", ".join(group["examples"][:4]))  # fmt: skip
        if entry["near"]:
            click.echo("    must meet: " + "; ".join(" + ".join(p) for p in entry["near"]))
        if entry["yields_to"]:
            click.echo("    yields to: " + ", ".join(entry["yields_to"]))


@topics.command("test")
@click.argument("target")
@_topics_option
@_json_option
@click.option("--snippets", "shown", default=1, show_default=True,
              help="Snippets shown per group (all of the evidence with --json).")  # fmt: skip
def test_topics(target: str, topics_file: str | None, as_json: bool, shown: int) -> None:
    """Score one article (an HTML or .txt FILE, or an http(s) URL) against every topic."""
    loaded = _load(topics_file)
    title, text, language = read_article(target)
    scores = score_article(title, text, language, loaded)
    relevant = any(s.passed for s in scores)
    indicators = extract_indicators(title, text, page_url=_url_or_none(target), topics=loaded)
    report = {
        "target": target,
        "title": title,
        "language": language,
        "topics_file": loaded.origin,
        "relevant": relevant,
        "scores": [s.to_dict() for s in scores],
        "indicators": indicators if relevant else [],
    }
    if as_json:
        _emit_json(report)
        return
    _print_scores(report, scores, shown)


def _print_scores(report: dict[str, Any], scores: list[TopicScore], shown: int) -> None:
    click.echo(f"{report['target']}: {(report['title'] or '(no title)')[:100]}"
               f"  [{report['language'] or 'language unknown'}]")  # fmt: skip
    click.echo(f"Topics from {report['topics_file']}\n")
    for score in scores:
        verdict = "PASS" if score.passed else "fail"
        click.echo(f"  {score.topic:20} {verdict}  score {score.score:g}")
        if score.missing:
            click.echo(f"    missing: {'; '.join(score.missing)}")
        for group, worth in score.group_scores.items():
            found = [e for e in score.evidence if e["group"] == group]
            if not found:
                continue
            counts: dict[str, int] = {}
            for item in found:
                counts[item["term"]] = counts.get(item["term"], 0) + 1
            terms = ", ".join(f"{t}" + (f" x{n}" if n > 1 else "") for t, n in counts.items())
            click.echo(f"    {group:12} {worth:+6g}  {terms}")
            for item in found[:shown]:
                click.echo(f"{'':24}{item['field']}[{item['start']}:{item['end']}] "
                           f"{item['snippet']}")  # fmt: skip
    click.echo(f"\nRelevant: {'yes' if report['relevant'] else 'no'}")
    for indicator in report["indicators"]:
        click.echo(f"  {indicator['kind']:13} {indicator['value']:40} {indicator['context']}")


def read_article(target: str) -> tuple[str, str, str | None]:
    """Title, text and language of a URL, an HTML file or a text file (first line: title)."""
    if "://" in target:
        return _article_from_html(fetch_page(target), target)
    path = Path(target)
    if not path.is_file():
        raise click.ClickException(f"{target}: no such file (give an HTML or .txt file, or a URL)")
    body = path.read_bytes()
    if path.suffix.lower() in HTML_SUFFIXES or body.lstrip()[:1] == b"<":
        return _article_from_html(body, None)
    return split_title(body.decode("utf-8", errors="replace"))


def split_title(text: str) -> tuple[str, str, None]:
    """A text file's first line is its title when it reads like one (short); the rest is text.

    The title leaves the text, as extraction drops it from a page's body, so it is not
    counted twice.
    """
    first, _, rest = text.strip().partition("\n")
    if len(first) <= TITLE_MAX_CHARS and rest.strip():
        return first.strip(), rest.strip(), None
    return "", text.strip(), None


def _article_from_html(body: bytes, url: str | None) -> tuple[str, str, str | None]:
    from pipelines.extract import extract_article  # trafilatura is slow to import: only here

    result = extract_article(body, url)
    if result.article is None:
        raise click.ClickException(f"{url or 'file'}: no article text: {result.reason}")
    article = result.article
    return article.title or "", article.text, article.language


def fetch_page(url: str) -> bytes:
    """One plain HTTP GET; anything but http(s) is refused."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise click.ClickException(f"{url}: only http(s) URLs can be fetched")
    request = urllib.request.Request(url, headers={"User-Agent": f"nkwatch/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(FETCH_MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise click.ClickException(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise click.ClickException(f"{url}: cannot connect: {error.reason}") from None
    except (TimeoutError, OSError) as error:
        raise click.ClickException(f"{url}: {error}") from None
    if len(body) > FETCH_MAX_BYTES:
        raise click.ClickException(f"{url}: page larger than {FETCH_MAX_BYTES // 2**20} MB")
    return body


def _url_or_none(target: str) -> str | None:
    return target if "://" in target else None


@click.command()
@click.option("--db", envvar="NKWATCH_DB", default=DEFAULT_DB, show_default=True,
              type=click.Path(dir_okay=False), help="The corpus (SQLite file); also NKWATCH_DB.")  # fmt: skip
@click.option("--kind", help="Only this kind (phone, email, domain, platform, organisation, "
              "wallet or wallet-eth/-btc/-tron).")  # fmt: skip
@_json_option
def indicators(db: str, kind: str | None, as_json: bool) -> None:
    """List the indicators found in relevant articles, with the article they came from."""
    try:
        corpus = open_corpus(db, readonly=True)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    sql = (
        "SELECT i.kind, i.value, i.context, a.id AS article_id, a.title, a.url, a.source "
        "FROM indicators i JOIN articles a ON a.id = i.article_id"
    )
    params: list[str] = []
    if kind:
        sql += " WHERE i.kind = ? OR i.kind LIKE ?"
        params = [kind, f"{kind}-%"]
    rows = list(corpus.query(sql + " ORDER BY i.kind, i.value, a.id", params))
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo(f"No indicators{f' of kind {kind}' if kind else ''} in {db}.")
        return
    for row in rows:
        click.echo(f"{row['kind']:13} {row['value']:44} #{row['article_id']:<5} "
                   f"{(row['title'] or '')[:60]}")  # fmt: skip
    articles = len({row["article_id"] for row in rows})
    click.echo(f"\n{len(rows)} indicators from {articles} articles.")


COMMANDS = [topics, indicators]
