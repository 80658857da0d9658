"""``nkwatch extract`` (one page, for a person checking a source) and ``nkwatch reextract``.

``reextract`` rebuilds the clean text of stored articles from the compressed pages in
``raw_pages``: no request leaves the machine, so an extractor change reaches the whole corpus
without crawling again.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import click

FETCH_LIMIT_BYTES = 20 * 1024 * 1024 + 1


def emit_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@click.command()
@click.argument("page")
@click.option("--json", "as_json", is_flag=True, help="Print the article as JSON.")
@click.option("--encoding", default=None, help="Charset to try first (else declared/detected).")
def extract(page: str, as_json: bool, encoding: str | None) -> None:
    """Extract one page (a FILE or a URL) as the crawler would: text, comments, metadata."""
    from pipelines.extract import extract_article

    body, url, header_encoding = _read_page(page)
    result = extract_article(body, url, encoding=encoding or header_encoding)
    if result.article is None:
        if as_json:
            emit_json({"url": url, "article": None, "reason": result.reason})
        raise click.ClickException(f"{page}: no article extracted: {result.reason}")
    article = result.article
    if as_json:
        emit_json({"url": url, **article.to_dict()})
        return
    for label, value in [("title", article.title), ("authors", ", ".join(article.authors)),
                         ("published", article.published_local or article.published_at),
                         ("modified", article.modified_at),
                         ("language", article.language), ("site", article.site_name),
                         ("canonical", article.canonical_url), ("words", article.word_count),
                         ("flags", ", ".join(article.flags))]:  # fmt: skip
        if value:
            click.echo(f"{label + ':':11}{value}")
    click.echo("\n" + article.text)
    if article.comments:
        click.echo("\n--- comments ---\n" + article.comments)


def _read_page(page: str) -> tuple[bytes, str | None, str | None]:
    """The page's bytes, its URL (None for a file without one) and the charset a server sent."""
    if page.startswith(("http://", "https://")):
        request = urllib.request.Request(page, headers={"User-Agent": _user_agent()})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                body = response.read(FETCH_LIMIT_BYTES)
                return body, response.geturl(), response.headers.get_content_charset()
        except OSError as error:
            raise click.ClickException(f"{page}: could not fetch: {error}") from None
    path = Path(page)
    if not path.is_file():
        raise click.ClickException(f"{page}: no such file (give a file path or an http(s) URL)")
    return path.read_bytes(), None, None


def _user_agent() -> str:
    from crawler import settings

    return settings.USER_AGENT


@click.command()
@click.option(
    "--db",
    envvar="NKWATCH_DB",
    default="nkwatch.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The corpus (SQLite file); also NKWATCH_DB.",
)
@click.option("--source", "source_names", multiple=True,
              help="Only articles of this source (repeatable).")  # fmt: skip
@click.option("--workers", type=int, default=None,
              help="Worker processes for extraction (default: one per core; 0: this process).")
@click.option("--topics", "topics_file", default=None,
              help="Topics file to judge the new texts against (default: as `crawl` chooses).")
def reextract(
    db: str, source_names: tuple[str, ...], workers: int | None, topics_file: str | None
) -> None:
    """Rebuild articles' clean text from the stored raw pages, without touching the network."""
    import os

    from crawler import settings
    from pipelines.corpus import open_corpus
    from pipelines.pagework import spawn_workers, start_worker_pool
    from pipelines.reextract import reextract_corpus
    from pipelines.relevance import load_topics

    if not Path(db).exists():
        raise click.ClickException(f"no corpus at {db}: run `nkwatch crawl` or `nkwatch demo`")
    try:
        topics = load_topics(topics_file)
    except (OSError, ValueError) as error:  # TopicsError names the file already
        raise click.ClickException(str(error)) from None
    corpus = open_corpus(db)
    workers = (os.cpu_count() or 1) if workers is None else workers
    pool = start_worker_pool(workers, settings.NKWATCH_GC_THRESHOLDS) if workers > 0 else None
    if pool is not None:
        spawn_workers(pool, workers)
    try:
        counts = reextract_corpus(corpus, list(source_names), pool=pool, topics=topics,
                                  progress=lambda line: click.echo(line, err=True))  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    click.echo(
        f"Re-extracted {counts['pages']} stored pages in {db}: {counts['updated']} updated, "
        f"{counts['failed']} now failing, {counts['skipped']} kept as they were "
        f"(off-topic, duplicate or failed before); boilerplate learned for {counts['sites']} "
        f"sites; topics judged again, relevance changed for {counts['relevance_changed']}"
    )


COMMANDS = [extract, reextract]
