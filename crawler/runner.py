"""Running one crawl in this process (Scrapy's reactor runs once per process)."""

from __future__ import annotations

import logging
import os
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings

from crawler.summary import CrawlTotals

QUIET_LOGGERS = ("scrapy", "py.warnings", "trafilatura", "htmldate", "charset_normalizer",
                 "asyncio")  # fmt: skip


def project_settings(overrides: dict[str, Any] | None = None):
    """nkwatch's Scrapy settings, wherever the command was started from."""
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", "crawler.settings")
    settings = get_project_settings()
    for key, value in (overrides or {}).items():
        settings.set(key, value, priority="cmdline")
    return settings


def run_crawl(
    db: str,
    sources_file: str | None = None,
    source_names: list[str] | None = None,
    spider: str = "sources",
    overrides: dict[str, Any] | None = None,
    verbose: bool = False,
) -> CrawlTotals:
    """Crawl the sources into ``db``; returns the figures of the closing summary."""
    settings = project_settings(
        {
            "NKWATCH_DB": db,
            "NKWATCH_SOURCES": sources_file or "",
            "NKWATCH_SOURCE_NAMES": source_names or [],
            "LOG_FORMAT": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            "LOG_DATEFORMAT": "%H:%M:%S",
            **(overrides or {}),
        }
    )
    if not verbose:
        settings.set("LOG_VERSIONS", [], priority="cmdline")
    settings.set("NKWATCH_LOG_SUMMARY", False, priority="cmdline")  # the CLI prints it instead
    process = CrawlerProcess(settings)
    if not verbose:  # after CrawlerProcess, whose logging set-up resets levels
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    crawler = process.create_crawler(spider)
    process.crawl(crawler)
    process.start()
    extension = getattr(crawler, "_nkwatch_summary", None)
    if extension is None or extension.totals is None:
        return CrawlTotals.from_stats(crawler.stats.get_stats(), 0.0)
    return extension.totals
