"""What ``nkwatch runs`` and ``nkwatch status`` show: run history, the daemon, each source's turn.

Read-only: these open the corpus read-only and learn about the daemon from its lock file, so
they are safe to run while a daemon and its crawls write.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from crawler.sources import (
    Source,
    SourcesError,
    load_sources,
    parse_sources,
    shipped_sources_text,
)
from pipelines.corpus import open_corpus
from schedules.jobs import crawl_process_alive
from schedules.lock import daemon_holder, lock_path

RUN_COLUMNS = ("id", "started_at", "ended_at", "status", "sources", "pid", "requests",
               "new_articles", "new_stories", "errors", "reason")  # fmt: skip


def run_history(db: str | os.PathLike, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, with their length in seconds.

    A ``running`` row whose process is gone is shown as ``orphaned``: the daemon marks it
    failed when it next starts a crawl.
    """
    corpus = open_corpus(db, readonly=True)
    try:
        rows = corpus.execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY id DESC LIMIT ?", [limit]
        ).fetchall()
    finally:
        corpus.close()
    history = []
    for values in rows:
        run = dict(zip(RUN_COLUMNS, values, strict=True))
        run["seconds"] = _seconds_between(run["started_at"], run["ended_at"])
        if run["status"] == "running" and run["pid"] and not crawl_process_alive(run["pid"]):
            run["status"] = "orphaned"
        history.append(run)
    return history


def daemon_report(db: str | os.PathLike, sources_file: str | None = None) -> dict[str, Any]:
    """The daemon (or None), each enabled source's schedule and health, and recent failures."""
    holder = daemon_holder(db)
    sources, sources_note = _sources_in_force(holder, sources_file)
    corpus = open_corpus(db, readonly=True)
    try:
        states = {row["source"]: row for row in corpus["sources_state"].rows}
        schedule = (
            {row["source"]: row for row in corpus["source_schedule"].rows}
            if corpus["source_schedule"].exists()
            else {}
        )
    finally:
        corpus.close()
    names = [s.name for s in sources if s.enabled] if sources is not None else sorted(states)
    configured = {s.name: s for s in sources or []}
    rows = []
    for name in names:
        state, planned = states.get(name, {}), schedule.get(name, {})
        source: Source | None = configured.get(name)
        rows.append({
            "source": name,
            "interval_seconds": planned.get("interval_seconds")
            or (source.interval_minutes * 60 if source else None),
            "adaptive": bool(source and source.adaptive),
            "poll_factor": planned.get("poll_factor") or 1.0,
            "last_crawl_at": state.get("last_crawl_at"),
            "last_success_at": state.get("last_success_at"),
            "next_run_at": planned.get("next_run_at") if holder else None,
            "consecutive_failures": state.get("consecutive_failures") or 0,
            "last_error": state.get("last_error"),
        })  # fmt: skip
    failed_runs = [run for run in run_history(db, 50) if run["status"] in ("failed", "orphaned")]
    return {
        "db": str(db),
        "daemon": holder,
        "lock_file": str(lock_path(db)),
        "sources_note": sources_note,
        "sources": rows,
        "recent_runs": run_history(db, 5),
        "recent_failures": failed_runs[:5],
    }


def _sources_in_force(holder: dict | None, explicit: str | None):
    """The daemon's sources file if one runs, else the one the caller names or defaults to."""
    chosen: str | None = explicit
    if holder and "sources_file" in holder:
        chosen = holder["sources_file"]
        if chosen is None:
            return parse_sources(shipped_sources_text(), "shipped default sources"), None
    try:
        return load_sources(chosen), None
    except SourcesError as error:
        return None, f"{error} (showing the sources the corpus knows)"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (_parse(end) - _parse(start)).total_seconds()
    except ValueError:
        return None


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def describe_daemon(report: dict[str, Any]) -> str:
    holder = report["daemon"]
    if not holder:
        return f"Daemon: not running on {report['db']} (no one holds {report['lock_file']})"
    where = Path(holder["sources_file"]).name if holder.get("sources_file") else "shipped list"
    return (f"Daemon: running, pid {holder.get('pid')} on {holder.get('host', '?')}, "
            f"since {holder.get('started_at', '?')} (sources: {where})")  # fmt: skip
