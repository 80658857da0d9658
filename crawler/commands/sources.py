"""``nkwatch sources``: add, list, remove and check the sources being watched."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from crawler.commands.options import db_option, sources_option
from crawler.discovery import (
    Candidate,
    DiscoveryError,
    candidate_source,
    discover,
    fetch,
    inspect,
    suggest_name,
)
from crawler.sources import (
    LOCAL_FILE,
    load_sources,
    parse_sources,
    save_sources,
    shipped_sources_text,
    sources_path,
)
from crawler.urls import url_key

FAILING_AFTER = 3  # consecutive failed crawls before a source is flagged
STALE_AFTER_DAYS = 14  # no new article for this long: flagged stale


@click.group()
def sources() -> None:
    """Add, list, remove and check the feeds, sitemaps and section pages being watched."""


@sources.command("add")
@click.argument("url")
@click.option("--name", help="Name for the new source (default: made from its URL).")
@click.option("--interval", "interval", type=click.IntRange(min=1), default=60, show_default=True,
              help="Minutes between crawls.")  # fmt: skip
@click.option("--language", default="", help="Language code of the source, e.g. en, ko, ja, zh.")
@click.option(
    "--pick", type=click.IntRange(min=1), help="Which discovered feed to add (1 = first)."
)
@click.option("--all", "add_all", is_flag=True, help="Add every discovered feed and sitemap.")
@click.option("--section", "section_pattern", metavar="REGEX",
              help="Add URL as a section page whose article links match REGEX.")  # fmt: skip
@sources_option
def add(url: str, name: str | None, interval: int, language: str, pick: int | None,
        add_all: bool, section_pattern: str | None, sources_file: str | None) -> None:  # fmt: skip
    """Add a feed, a sitemap, or a homepage (whose feeds are discovered) as a source."""
    path = sources_path(sources_file)
    current = [] if path is not None and not path.exists() else load_sources(sources_file)
    _refuse_known(url, current)
    if section_pattern is not None:
        _add_section(url, name, interval, language, section_pattern, current, sources_file)
        return
    try:
        found = discover(url)
    except DiscoveryError as error:
        raise click.ClickException(f"cannot add: {error}") from None
    if not found.candidates:
        raise click.ClickException(
            f"cannot add {url}: no RSS/Atom feed or sitemap found (tried the page's "
            f"<link rel=alternate>, robots.txt and {len(found.tried) - 1} common paths)"
        )
    known = {url_key(s.url): s.name for s in current}
    fresh = [c for c in found.candidates if url_key(c.url) not in known]
    watched = [c for c in found.candidates if url_key(c.url) in known]
    if watched and (not fresh or not (pick or add_all)):
        first = watched[0]
        more = (
            f" ({len(fresh)} other feed(s) found: add them with --pick N or --all)" if fresh else ""
        )
        raise click.ClickException(
            f"{url} is already watched: {first.url} is source {known[url_key(first.url)]}{more}"
        )
    chosen = _choose(fresh, pick, add_all)
    taken = {s.name for s in current}
    added = []
    for candidate in chosen:
        _refuse_known(candidate.url, current + added)
        source_name = name if name and len(chosen) == 1 else suggest_name(candidate, taken)
        if source_name in taken:
            raise click.ClickException(f"a source named {source_name!r} exists already")
        taken.add(source_name)
        source = candidate_source(candidate, source_name, interval, language)
        source.validate()
        added.append(source)
        click.echo(f"added {source.name}: {candidate.describe()}")
        if candidate.warning:
            click.echo(f"  warning: {candidate.warning}")
        if source.allow_private:
            click.echo("  note: a loopback/private address; allowed because you added it")
    _save_with(current, added, sources_file)


def _save_with(current, added, sources_file: str | None) -> None:
    """Append to the sources file in force; the first add copies the shipped list to ./sources.toml."""
    path = sources_path(sources_file) or LOCAL_FILE
    if not path.exists() and sources_path(sources_file) is None:
        current = parse_sources(shipped_sources_text(), "shipped default sources")
    save_sources(current + added, path)
    click.echo(f"saved to {path}")


def _add_section(url, name, interval, language, pattern, current, sources_file) -> None:
    from scrapy.http import HtmlResponse

    from crawler.spiders.sections import article_links

    try:
        page = fetch(url)
    except DiscoveryError as error:
        raise click.ClickException(f"cannot add: {error}") from None
    response = HtmlResponse(page.url, body=page.body, headers={"Content-Type": page.content_type})
    links = article_links(response, pattern)
    if not links:
        raise click.ClickException(
            f"cannot add {url}: no links on it match {pattern or 'the default article pattern'!r}"
        )
    candidate = Candidate(
        page.url, "section", entries=len(links), newest_title=links[0][1]["title"]
    )
    source = candidate_source(candidate, name or suggest_name(candidate, {s.name for s in current}),
                              interval, language)  # fmt: skip
    source.article_pattern = pattern
    source.validate()
    click.echo(f"added {source.name}: section page {page.url} — {len(links)} article links")
    _save_with(current, [source], sources_file)


def _refuse_known(url: str, current) -> None:
    key = url_key(url)
    for source in current:
        if url_key(source.url) == key:
            raise click.ClickException(f"{url} is already a source: {source.name}")


def _choose(candidates: list[Candidate], pick: int | None, add_all: bool) -> list[Candidate]:
    if add_all:
        return candidates
    if pick:
        if pick > len(candidates):
            raise click.ClickException(f"--pick {pick}: only {len(candidates)} candidates found")
        return [candidates[pick - 1]]
    if len(candidates) == 1:
        return candidates
    click.echo(f"found {len(candidates)} candidates:")
    for number, candidate in enumerate(candidates, start=1):
        click.echo(f"  {number}. {candidate.describe()} (via {candidate.found_by})")
    if sys.stdin.isatty():
        number = click.prompt("add which", type=click.IntRange(1, len(candidates)), default=1)
        return [candidates[number - 1]]
    click.echo("adding the first (choose another with --pick N, or --all)")
    return candidates[:1]


@sources.command("remove")
@click.argument("name")
@sources_option
def remove(name: str, sources_file: str | None) -> None:
    """Remove a source by name (its stored articles stay in the corpus)."""
    path = sources_path(sources_file)
    if path is None:
        raise click.ClickException(
            "no sources file yet (the shipped list is in use): nothing to remove"
        )
    current = load_sources(sources_file)
    kept = [s for s in current if s.name != name]
    if len(kept) == len(current):
        raise click.ClickException(f"no source named {name!r} in {path}")
    save_sources(kept, path)
    click.echo(f"removed {name} from {path}")


@sources.command("list")
@sources_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_sources(sources_file: str | None, db: str, as_json: bool) -> None:
    """List the sources with their health: last success, last new article, failures, last error."""
    states = _states(db)
    rows = []
    for source in load_sources(sources_file):
        state = states.get(source.name, {})
        rows.append({
            "name": source.name, "kind": source.kind, "url": source.url,
            "enabled": source.enabled, "interval_minutes": source.interval_minutes,
            "language": source.language, "health": health(source.enabled, state),
            "last_success_at": state.get("last_success_at"),
            "last_new_article_at": state.get("last_new_article_at"),
            "consecutive_failures": state.get("consecutive_failures") or 0,
            "last_error": state.get("last_error"),
            "articles": state.get("articles_total") or 0,
            "extraction_failure_rate": _rate(state),
        })  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{'name':32} {'kind':12} {'health':34} {'articles':>8} {'extract fail':>12}  last success"
    )
    for row in rows:
        rate = f"{row['extraction_failure_rate']:.0%}" if row["articles"] else "-"
        click.echo(f"{row['name'][:32]:32} {row['kind']:12} {row['health'][:34]:34} "
                   f"{row['articles']:>8} {rate:>12}  {row['last_success_at'] or 'never'}")  # fmt: skip


def health(enabled: bool, state: dict) -> str:
    """One phrase a person can act on: ok, failing (with the reason), stale, never crawled."""
    if not enabled:
        return "disabled"
    if not state:
        return "never crawled"
    failures = state.get("consecutive_failures") or 0
    if failures >= FAILING_AFTER:
        return f"failing ({failures}x: {state.get('last_error')})"
    if failures:
        return f"last crawl failed: {state.get('last_error')}"
    newest = state.get("last_new_article_at")
    cutoff = (datetime.now(UTC) - timedelta(days=STALE_AFTER_DAYS)).isoformat()
    if not newest or newest < cutoff:
        since = f"since {newest[:10]}" if newest else "ever"
        return f"stale (no new article {since})"
    return "ok"


def _rate(state: dict) -> float:
    return state.get("extraction_problem_rate") or 0.0


def _states(db: str) -> dict[str, dict]:
    """Saved crawl state per source, with the share of its articles whose extraction is suspect."""
    if not Path(db).exists():
        return {}
    from pipelines.corpus import open_corpus, source_states

    corpus = open_corpus(db, readonly=True)
    states = source_states(corpus)
    for row in corpus.query(EXTRACTION_HEALTH):
        states.setdefault(row["source"], {})["extraction_problem_rate"] = round(row["rate"], 3)
    return states


# An article counts against its source's extraction health when extraction failed, or left
# copyright-like chrome, or gave far less text than the site's usual.
EXTRACTION_HEALTH = (
    "SELECT source, avg(status = 'failed' OR flags LIKE '%chrome-suspected%' "
    "OR flags LIKE '%short-for-site%') AS rate FROM articles GROUP BY source"
)


@sources.command("check")
@click.argument("name_or_url")
@sources_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(name_or_url: str, sources_file: str | None, as_json: bool) -> None:
    """Fetch and parse a source (or any feed/sitemap URL) without saving anything."""
    known = {s.name: s for s in load_sources(sources_file)}
    url = known[name_or_url].url if name_or_url in known else name_or_url
    if name_or_url not in known and "://" not in name_or_url:
        raise click.ClickException(f"{name_or_url!r} is neither a source name nor a URL")
    try:
        candidate = inspect(fetch(url))
    except DiscoveryError as error:
        raise click.ClickException(str(error)) from None
    if candidate is None:
        raise click.ClickException(f"{url}: not an RSS/Atom feed or a sitemap")
    if as_json:
        click.echo(json.dumps(candidate.__dict__, ensure_ascii=False, indent=2))
        return
    click.echo(candidate.describe())
    if candidate.warning:
        click.echo(f"warning: {candidate.warning}")


COMMANDS = [sources]
