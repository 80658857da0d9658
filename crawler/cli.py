"""The ``nkwatch`` command: thin wrappers that call the modules doing the work.

Errors a person can fix are one line on stderr and a non-zero exit; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from crawler import __version__
from crawler.commands.options import db_option, parse_overrides, sources_option
from crawler.sources import SourcesError, save_sources


class NkwatchGroup(click.Group):
    """Turns expected failures into one-line errors unless ``--debug`` was given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SourcesError, FileNotFoundError, PermissionError, ValueError) as error:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(str(error)) from None


def emit_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@click.group(cls=NkwatchGroup)
@click.version_option(__version__, prog_name="nkwatch")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """nkwatch: watch the web for North Korean phone scams and IT-worker schemes."""


@main.command()
@db_option
@sources_option
@click.option(
    "--source", "source_names", multiple=True, help="Crawl only this source (repeatable)."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a Scrapy/nkwatch setting for this crawl (repeatable).")  # fmt: skip
@click.option("--verbose", is_flag=True, help="Show Scrapy's own log lines too.")
def crawl(db: str, sources_file: str | None, source_names: tuple[str, ...],
          overrides: tuple[str, ...], verbose: bool) -> None:  # fmt: skip
    """Crawl the configured sources once into the corpus."""
    from crawler.runner import run_crawl
    from crawler.sources import load_sources

    known = {s.name for s in load_sources(sources_file)}
    unknown = [n for n in source_names if n not in known]
    if unknown:
        raise click.ClickException(f"unknown source {unknown[0]!r}: see `nkwatch sources list`")
    totals = run_crawl(db, sources_file, list(source_names), overrides=parse_overrides(overrides),
                       verbose=verbose)  # fmt: skip
    click.echo(f"\nCrawl finished: {db}")
    for line in totals.lines():
        click.echo("  " + line)
    if totals.sources and totals.sources_failed == totals.sources:
        sys.exit(1)


@main.command()
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Where to write the demo corpus (default: a fresh file in a temp folder).")  # fmt: skip
@click.option("--serve", is_flag=True, help="Only serve the demo web until interrupted.")
@click.option("--verbose", is_flag=True, help="Show Scrapy's own log lines too.")
def demo(db: str | None, serve: bool, verbose: bool) -> None:
    """Serve the offline demo web on 127.0.0.1 and crawl it end to end."""
    from crawler.demo.server import DemoWeb

    web = DemoWeb().start()
    if serve:
        _serve_demo(web)
        return
    folder = Path(tempfile.mkdtemp(prefix="nkwatch-demo-"))
    db_path = Path(db) if db else folder / "demo.db"
    if db_path.exists():
        raise click.ClickException(f"{db_path} exists: the demo writes a fresh corpus")
    sources_file = save_sources(web.sources(), folder / "demo-sources.toml")
    click.echo(f"Demo web: {len(web.outlets)} outlets on 127.0.0.1, "
               f"{len(web.published_articles())} articles; crawling into {db_path}")  # fmt: skip
    from crawler.runner import run_crawl

    overrides = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False,
                 "NKWATCH_PROGRESS_SECONDS": 5.0}  # fmt: skip
    totals = run_crawl(str(db_path), str(sources_file), overrides=overrides, verbose=verbose)
    web.stop()
    click.echo(f"\nDemo crawl finished. Corpus: {db_path}")
    for line in totals.lines():
        click.echo("  " + line)
    click.echo(f"Sources file used: {sources_file}")


def _serve_demo(web) -> None:
    click.echo("Demo web serving on 127.0.0.1 (Ctrl-C to stop)")
    for outlet in web.outlets.values():
        click.echo(f"  {outlet.site_name:24} {outlet.base_url}")
        for feed in outlet.feeds:
            click.echo(f"      {feed['kind']:5} {outlet.base_url}{feed['path'].lstrip('/')}")
    click.echo(f"Publish a held-back article: curl -X POST {next(iter(web.outlets.values())).base_url}"
               "_demo/publish")  # fmt: skip
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        web.stop()


def _register_area_commands() -> None:
    from crawler.commands import all_commands

    for command in all_commands():
        main.add_command(command)


# A worker process of a crawl started as ``python -m crawler.cli`` re-imports this module as
# ``__mp_main__``; it runs no command, so it skips importing every area's command modules.
if __name__ != "__mp_main__":
    _register_area_commands()


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(sys.argv[0]))
