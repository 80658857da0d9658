"""Interpreter tuning for the crawl process and its extraction workers: the garbage collector
and the GIL's switch interval.

The collector: CPython's cyclic collector runs every 700 net allocations of container objects.
A page's extraction allocates hundreds of thousands (lxml proxies, trafilatura's lists and
dicts), and every older-generation pass walks every object alive: the modules, the topics,
Scrapy's request queue. Measured on 60 KB pages, the collector took a quarter of an extraction
worker's CPU and a sixth of the reactor's. Freezing what exists once start-up is done takes it
out of every later pass, and a larger first threshold lets a page's short-lived objects die by
reference counting before the collector looks at them. Reference cycles are still collected,
so memory stays bounded. Setting: ``NKWATCH_GC_THRESHOLDS`` (empty: CPython's defaults).

The switch interval: the worker pool is fed by a thread of the crawl process, which waits for
the GIL while the reactor thread runs; at CPython's 5 ms the workers ran dry during the
reactor's longer stretches (a batch written to SQLite). At 1 ms the two cores were busy 91-92%
of a crawl instead of 89%, for 4-5% more pages a second. Setting: ``NKWATCH_SWITCH_INTERVAL``
(seconds; 0: CPython's default).
"""

from __future__ import annotations

import gc
import sys


def tune_collector(thresholds: list[int] | tuple[int, ...] | None) -> None:
    """Freeze what is alive now and set the collector's thresholds (no-op when empty)."""
    if thresholds:
        gc.freeze()
        gc.set_threshold(*(int(value) for value in thresholds))


class InterpreterTuning:
    """Tunes the crawl process once the engine has started (start-up is done)."""

    def __init__(self, thresholds: list[int], switch_interval: float) -> None:
        self.thresholds, self.switch_interval = thresholds, switch_interval

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals  # here: extraction workers call tune_collector without Scrapy

        settings = crawler.settings
        extension = cls([int(value) for value in settings.getlist("NKWATCH_GC_THRESHOLDS")],
                        settings.getfloat("NKWATCH_SWITCH_INTERVAL"))  # fmt: skip
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        return extension

    def engine_started(self) -> None:
        tune_collector(self.thresholds)
        if self.switch_interval > 0:
            sys.setswitchinterval(self.switch_interval)
