"""Adaptive polling: how often to crawl a source that opted in with ``adaptive = true``.

A source's interval is its ``interval_minutes`` times a factor on a short ladder. A crawl that
finds nothing new climbs one rung (poll less often); one that finds new articles drops straight
back to the configured interval, or one rung below it if it was already there (poll more often).
A failed crawl says nothing about how busy a feed is and leaves the factor alone. The ladder is
deterministic so the behaviour can be tested and explained to the person reading ``status``.
"""

from __future__ import annotations

POLL_FACTORS = (0.5, 1.0, 2.0, 4.0)  # at most twice as often, at least a quarter as often
MIN_INTERVAL_MINUTES = 1.0  # never poll a source more than once a minute, whatever the ladder says


def next_poll_factor(factor: float, new_articles: int, crawl_ok: bool) -> float:
    """The factor after a crawl of one source that stored ``new_articles``."""
    if not crawl_ok:
        return factor
    rung = _rung(factor)
    if new_articles > 0:
        base = POLL_FACTORS.index(1.0)
        return POLL_FACTORS[base if rung > base else max(0, rung - 1)]
    return POLL_FACTORS[min(len(POLL_FACTORS) - 1, rung + 1)]


def interval_minutes(configured_minutes: float, factor: float) -> float:
    """The interval in force: the configured one times the factor, within the floor."""
    return max(MIN_INTERVAL_MINUTES, configured_minutes * factor)


def _rung(factor: float) -> int:
    """The ladder rung nearest to ``factor`` (a stored factor from an older ladder still maps)."""
    return min(range(len(POLL_FACTORS)), key=lambda i: abs(POLL_FACTORS[i] - factor))
