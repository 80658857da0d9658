"""Dates as the corpus stores them: UTC ISO-8601, ``YYYY-MM-DDTHH:MM:SSZ``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def to_utc_iso(value: str | datetime | time.struct_time | None) -> str | None:
    """Read an ISO-8601, RFC-822 or struct_time date as UTC ISO; naive times are taken as UTC."""
    if value is None or value == "":
        return None
    moment: datetime | None
    if isinstance(value, time.struct_time):
        moment = datetime(*value[:6], tzinfo=UTC)
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = _parse_text(value.strip())
    else:  # a number or a structure where a page or a JSON feed should have put a date
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def to_local_iso(value: str | datetime | time.struct_time | None) -> str | None:
    """The same moment as ``to_utc_iso``, written with the UTC offset its source gave.

    "2024-05-01T08:00:00+09:00" stays so, where UTC would make it 30 April: the date a reader
    saw on the page. Stamps without an offset (and feedparser's struct_time) are UTC.
    """
    if isinstance(value, str) and value.strip():
        moment = _parse_text(value.strip())
        if moment is not None and moment.tzinfo is not None and moment.utcoffset():
            return moment.replace(microsecond=0).isoformat()
    return to_utc_iso(value) if isinstance(value, (str, datetime, time.struct_time)) else None


def _parse_text(text: str) -> datetime | None:
    candidate = text.replace("Z", "+00:00").replace(" ", "T", 1) if "T" not in text else text
    candidate = candidate.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(candidate)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
