"""Options every command spells the same way: which corpus, which sources file."""

from __future__ import annotations

import click

DEFAULT_DB = "nkwatch.db"

db_option = click.option(
    "--db",
    envvar="NKWATCH_DB",
    default=DEFAULT_DB,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The corpus (SQLite file); also NKWATCH_DB.",
)

sources_option = click.option(
    "--sources",
    "sources_file",
    envvar="NKWATCH_SOURCES",
    default=None,
    type=click.Path(dir_okay=False),
    help="Sources TOML; also NKWATCH_SOURCES. Default ./sources.toml, else the shipped list.",
)


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` pairs as settings; Scrapy converts the strings where it reads them."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.ClickException(f"--set {pair!r}: expected KEY=VALUE")
        settings[key.strip()] = value
    return settings
