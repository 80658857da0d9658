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
