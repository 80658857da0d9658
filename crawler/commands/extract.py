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
                         ("published", article.published_at), ("modified", article.modified_at),
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
def reextract(db: str, source_names: tuple[str, ...]) -> None:
    """Rebuild articles' clean text from the stored raw pages, without touching the network."""
    from pipelines.corpus import open_corpus

    if not Path(db).exists():
        raise click.ClickException(f"no corpus at {db}: run `nkwatch crawl` or `nkwatch demo`")
    corpus = open_corpus(db)
    counts = reextract_corpus(corpus, list(source_names))
    click.echo(
        f"Re-extracted {counts['pages']} stored pages in {db}: {counts['updated']} updated, "
        f"{counts['failed']} now failing, {counts['skipped']} kept as they were "
        f"(off-topic, duplicate or failed before); boilerplate learned for {counts['sites']} sites"
    )


def reextract_corpus(db, source_names: list[str]) -> dict[str, int]:
    """Extract every stored page again, learn each site's boilerplate from all of them, update."""
    from pipelines.boilerplate import SiteBoilerplates, clean_item
    from pipelines.extract import apply_extraction, extract_article
    from pipelines.rawpages import unpack

    where = f" AND a.source IN ({','.join('?' for _ in source_names)})" if source_names else ""
    rows = list(db.query(
        "SELECT a.id, a.status, a.response_url, a.url, a.published_at, a.source, r.html_packed, "
        "r.encoding FROM articles a JOIN raw_pages r ON r.article_id = a.id "
        f"WHERE 1 = 1{where} ORDER BY a.id", source_names))  # fmt: skip
    boilerplates = SiteBoilerplates()
    items = []
    for row in rows:
        item = _Item(row)
        apply_extraction(item, extract_article(unpack(row["html_packed"]), item.response_url,
                                               encoding=row["encoding"]))  # fmt: skip
        if item.status == "ok":
            boilerplates.site(item.response_url).observe(item.text, item.comments, item.word_count)
        items.append((row, item))
    counts = {"pages": len(rows), "updated": 0, "failed": 0, "skipped": 0,
              "sites": len(boilerplates.sites)}  # fmt: skip
    with db.atomic():
        for row, item in items:
            if row["status"] != "ok":
                counts["skipped"] += 1
                continue
            if item.status == "ok":
                clean_item(item, boilerplates)
            counts["updated" if item.status == "ok" else "failed"] += 1
            _update(db, row["id"], item)
    boilerplates.save(db)
    return counts


class _Item:
    """The fields of an ArticleItem that extraction reads and writes, for a stored article."""

    def __init__(self, row) -> None:
        self.response_url = row["response_url"] or row["url"]
        self.hints = {"published_at": row["published_at"]}
        self.title, self.flags, self.status, self.failure_reason = None, [], "ok", None
        self.text = self.comments = ""
        self.word_count = 0


def _update(db, article_id: int, item) -> None:
    from pipelines.dedupe import content_hash

    flags = item.flags + ([f"failed: {item.failure_reason}"] if item.failure_reason else [])
    values = {
        "status": item.status, "text": item.text or None, "comments": item.comments or None,
        "word_count": item.word_count, "extractor_version": item.extractor_version,
        "flags": json.dumps(flags, ensure_ascii=False),
        "content_hash": content_hash(item.text) if item.text else None,
    }  # fmt: skip
    if item.status == "ok":
        values.update({
            "title": item.title, "authors": json.dumps(item.authors, ensure_ascii=False),
            "published_at": item.published_at, "modified_at": item.modified_at,
            "language": item.language, "site_name": item.site_name,
        })  # fmt: skip
    db["articles"].update(article_id, values)


COMMANDS = [extract, reextract]
