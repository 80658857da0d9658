"""Subcommands of ``nkwatch``, one module per area; each lists its click commands in ``COMMANDS``.

``crawler.cli`` registers every module's ``COMMANDS``, so an area adds commands without
touching the CLI's core.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


def all_commands() -> list[click.Command]:
    found: list[click.Command] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found.extend(getattr(module, "COMMANDS", []))
    return found
