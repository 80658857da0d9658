"""Sources as data: the ``Source`` entry, and reading, validating and writing the sources TOML.

The file is found by ``--sources`` / ``NKWATCH_SOURCES``, else ``./sources.toml``, else the
list shipped with nkwatch. Crawl state (ETag, failures...) lives in the corpus, never here.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from crawler.urls import is_fetchable

KINDS = ("rss", "atom", "sitemap", "news-sitemap", "section")
FEED_KINDS = ("rss", "atom")
SITEMAP_KINDS = ("sitemap", "news-sitemap")
LOCAL_FILE = Path("sources.toml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class SourcesError(ValueError):
    """A sources file or entry that cannot be used; the message names it and says why."""


@dataclass
class Source:
    """One place to watch: a feed, a sitemap or a section page."""

    name: str
    url: str
    kind: str = "rss"
    interval_minutes: int = 60
    language: str = ""
    enabled: bool = True
    article_pattern: str = ""  # section pages: regex a link must match to be an article
    recent_days: int = 3  # sitemaps: only URLs published or modified this recently
    allow_private: bool = False  # may fetch loopback/private addresses (the demo web)
    adaptive: bool = False  # poll less often while nothing new appears
    trust: float = 1.0  # tie-breaker for a story's representative (content farms < 1)
    tags: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise SourcesError(
                f"source name {self.name!r}: use lowercase letters, digits, '.', '_' or '-'"
            )
        if self.kind not in KINDS:
            raise SourcesError(f"source {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if not is_fetchable(self.url):
            raise SourcesError(f"source {self.name}: {self.url!r} is not an http(s) URL")
        if self.interval_minutes < 1:
            raise SourcesError(f"source {self.name}: interval_minutes must be at least 1")
        if self.article_pattern:
            try:
                re.compile(self.article_pattern)
            except re.error as error:
                raise SourcesError(f"source {self.name}: bad article_pattern: {error}") from None

    def to_toml_dict(self) -> dict[str, Any]:
        defaults = Source(name="x", url="http://x/")
        return {
            k: v
            for k, v in asdict(self).items()
            if k in ("name", "url", "kind") or v != getattr(defaults, k)
        }


def parse_sources(text: str, origin: str) -> list[Source]:
    """Sources from TOML text; ``origin`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SourcesError(f"{origin}: not valid TOML: {error}") from None
    known = {f.name for f in fields(Source)}
    sources: list[Source] = []
    for number, entry in enumerate(data.get("source", []), start=1):
        unknown = set(entry) - known
        if unknown:
            raise SourcesError(f"{origin}: source #{number} has unknown keys {sorted(unknown)}")
        if "name" not in entry or "url" not in entry:
            raise SourcesError(f"{origin}: source #{number} needs a name and a url")
        source = Source(**entry)
        source.validate()
        sources.append(source)
    names = [s.name for s in sources]
    repeated = {n for n in names if names.count(n) > 1}
    if repeated:
        raise SourcesError(f"{origin}: source names used twice: {sorted(repeated)}")
    return sources


def sources_path(explicit: str | os.PathLike | None = None) -> Path | None:
    """The sources file in force, or None when the shipped defaults are."""
    chosen = explicit or os.environ.get("NKWATCH_SOURCES")
    if chosen:
        return Path(chosen)
    return LOCAL_FILE if LOCAL_FILE.exists() else None


def shipped_sources_text() -> str:
    return resources.files("crawler").joinpath("default_sources.toml").read_text("utf-8")


def load_sources(explicit: str | os.PathLike | None = None) -> list[Source]:
    """The sources in force (see ``sources_path``)."""
    path = sources_path(explicit)
    if path is None:
        return parse_sources(shipped_sources_text(), "shipped default sources")
    try:
        text = path.read_text("utf-8")
    except OSError as error:
        raise SourcesError(f"{path}: cannot read sources file: {error.strerror}") from None
    return parse_sources(text, str(path))


def dump_sources(sources: list[Source]) -> str:
    header = "# nkwatch sources: one [[source]] per feed, sitemap or section page.\n\n"
    return header + tomli_w.dumps({"source": [s.to_toml_dict() for s in sources]})


def save_sources(sources: list[Source], path: str | os.PathLike) -> Path:
    """Write atomically, so a crash mid-write never leaves a half file behind."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dump_sources(sources), "utf-8")
    os.replace(temporary, path)
    return path
