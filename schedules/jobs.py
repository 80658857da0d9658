"""One crawl job: a ``nkwatch crawl`` child process with a wall-clock limit, and its run record.

The child runs in its own process group, so a timeout or a shutdown can end it together with
any worker processes it started, and a terminal's Ctrl-C reaches only the daemon, which decides.
The daemon writes the ``runs`` row *before* starting the child and hands it the row's id
(``--set NKWATCH_RUN_ID=...``): the crawl fills in its figures when it closes, and the daemon
settles the status afterwards from what it saw (exit code, signal, timeout), so a crawl that
dies before it could write anything is still on record with the reason.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.corpus import open_corpus, utc_now

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 10.0  # after SIGTERM, how long a crawl may take to flush and close
OUTPUT_TAIL_BYTES = 8192  # the end of a child's output kept to explain a failure


@dataclass
class CrawlOutcome:
    """What one crawl child did, as the daemon logs it and records it in ``runs``."""

    run_id: int
    sources: list[str]
    status: str = "failed"  # ok | failed
    reason: str | None = None
    exit_code: int | None = None
    seconds: float = 0.0
    requests: int = 0
    new_articles: int = 0
    new_stories: int = 0
    errors: int = 0
    new_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class CrawlLimits:
    timeout_seconds: float = 1800.0
    stop_grace_seconds: float = 30.0  # on shutdown: how long a running crawl may still take
    terminate_grace_seconds: float = TERMINATE_GRACE_SECONDS


def crawl_command(db: Path, sources_file: Path, names: list[str], run_id: int,
                  settings: list[str]) -> list[str]:  # fmt: skip
    command = [sys.executable, "-m", "crawler.cli", "crawl", "--db", str(db),
               "--sources", str(sources_file)]  # fmt: skip
    command += [f"--source={name}" for name in names]
    command += [f"--set={pair}" for pair in [*settings, f"NKWATCH_RUN_ID={run_id}",
                                             f"NKWATCH_PARENT_PID={os.getpid()}"]]  # fmt: skip
    return command


def run_crawl_child(
    db: Path,
    sources_file: Path,
    names: list[str],
    limits: CrawlLimits,
    stopping: threading.Event,
    hurry: threading.Event | None = None,
    settings: list[str] | None = None,
) -> CrawlOutcome:
    """Crawl ``names`` in a child process; returns once the child and its group are gone.

    ``stopping`` set: the daemon is shutting down; the crawl gets ``stop_grace_seconds`` more.
    ``hurry`` set: end the crawl now (a second Ctrl-C).
    """
    started = time.monotonic()
    run_id, before_id = _open_run(db, names)
    outcome = CrawlOutcome(run_id=run_id, sources=list(names))
    command = crawl_command(db, sources_file, names, run_id, settings or [])
    with tempfile.TemporaryFile() as output:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        _set_pid(db, run_id, child.pid)
        logger.info("crawl #%d started: %s (pid %d)", run_id, ", ".join(names), child.pid)
        ended_by = _wait(child, started, limits, stopping, hurry or threading.Event())
        if child.returncode < 0 and not ended_by:  # killed from outside: its workers linger
            _signal_group(child.pid, signal.SIGKILL)
        output.seek(max(0, output.seek(0, os.SEEK_END) - OUTPUT_TAIL_BYTES))
        tail = output.read().decode("utf-8", "replace")
    outcome.exit_code = child.returncode
    outcome.seconds = time.monotonic() - started
    _settle_run(db, outcome, ended_by, tail, before_id)
    return outcome


def _wait(child, started: float, limits: CrawlLimits, stopping, hurry) -> str | None:
    """Wait for the child; returns why the daemon ended it (None if it ended by itself)."""
    stop_deadline = None
    while child.poll() is None:
        now = time.monotonic()
        if now - started >= limits.timeout_seconds:
            _end_group(child, limits.terminate_grace_seconds)
            return f"timed out after {limits.timeout_seconds:g} s"
        if hurry.is_set():
            _end_group(child, limits.terminate_grace_seconds)
            return "stopped: the daemon was told to stop at once"
        if stopping.is_set():
            stop_deadline = stop_deadline or now + limits.stop_grace_seconds
            if now >= stop_deadline:
                _end_group(child, limits.terminate_grace_seconds)
                return (f"stopped: still running {limits.stop_grace_seconds:g} s after the "
                        "daemon was told to stop")  # fmt: skip
        time.sleep(0.1)
    return None


def _end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's group (Scrapy then flushes and closes), SIGKILL it if that hangs."""
    _signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()
    _signal_group(child.pid, signal.SIGKILL)  # workers the crawl left behind, if any


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass


# --- the run record --------------------------------------------------------------------------


def _open_run(db: Path, names: list[str]) -> tuple[int, int]:
    """Insert the ``running`` row; returns its id and the highest article id before the crawl."""
    corpus = open_corpus(db)
    try:
        reap_orphaned_runs(corpus)
        before_id = corpus.execute("SELECT COALESCE(MAX(id), 0) FROM articles").fetchone()[0]
        with corpus.atomic():
            cursor = corpus.execute(
                "INSERT INTO runs (started_at, status, sources) VALUES (?, 'running', ?)",
                [utc_now(), "sources:" + ",".join(names)],
            )
        return cursor.lastrowid, before_id
    finally:
        corpus.close()


def _set_pid(db: Path, run_id: int, pid: int) -> None:
    corpus = open_corpus(db)
    try:
        with corpus.atomic():
            corpus.execute("UPDATE runs SET pid = ? WHERE id = ? AND pid IS NULL", [pid, run_id])
    finally:
        corpus.close()


def _settle_run(db: Path, outcome: CrawlOutcome, ended_by: str | None, tail: str,
                before_id: int) -> None:  # fmt: skip
    """Decide the run's status from the exit and write it, with the figures, in one commit."""
    corpus = open_corpus(db)
    try:
        row = corpus.execute("SELECT * FROM runs WHERE id = ?", [outcome.run_id]).fetchone()
        columns = [d[0] for d in corpus.execute("SELECT * FROM runs LIMIT 0").description]
        row = dict(zip(columns, row, strict=True))
        closed_by_crawl = row["status"] in ("ok", "failed")
        outcome.status, outcome.reason = _verdict(outcome.exit_code, ended_by, row, tail)
        for name, count in corpus.execute(
            "SELECT source, COUNT(*) FROM articles WHERE id > ? GROUP BY source", [before_id]
        ).fetchall():
            if name in outcome.sources:
                outcome.new_by_source[name] = count
        outcome.new_articles = row["new_articles"] or sum(outcome.new_by_source.values())
        outcome.requests = row["requests"] or 0
        outcome.new_stories = row["new_stories"] or 0
        outcome.errors = row["errors"] or 0
        with corpus.atomic():
            corpus["runs"].update(
                outcome.run_id,
                {"status": outcome.status, "reason": outcome.reason,
                 "ended_at": row["ended_at"] or utc_now(), "new_articles": outcome.new_articles},
            )  # fmt: skip
            stopped = (ended_by or "").startswith("stopped")  # the daemon's stop, not the source's
            if not stopped and (ended_by or not closed_by_crawl):  # unrecorded by the crawl
                _record_source_failure(corpus, outcome.sources, outcome.reason or "failed")
    finally:
        corpus.close()


def _verdict(exit_code: int | None, ended_by: str | None, row: dict, tail: str):
    """(status, reason) for a finished child."""
    if ended_by:
        return "failed", ended_by + _signal_note(exit_code)
    if exit_code is not None and exit_code < 0:
        return "failed", f"killed by signal {-exit_code} ({_signal_name(-exit_code)})"
    if exit_code:
        last_error = _last_error_line(tail)
        return "failed", f"exit code {exit_code}" + (f": {last_error}" if last_error else "")
    if row["status"] in ("ok", "failed"):
        return row["status"], row["reason"]
    return "failed", "the crawl exited without recording its end"


def _signal_note(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f" (ended by {_signal_name(-exit_code)})"
    return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_error_line(tail: str) -> str | None:
    for line in reversed(tail.splitlines()):
        if "ERROR" in line or line.startswith("Error:") or "Error" in line.split(":")[0]:
            return line.strip()[:300]
    return None


def _record_source_failure(corpus, names: list[str], reason: str) -> None:
    now = utc_now()
    for name in names:
        corpus.execute(
            "INSERT INTO sources_state (source, consecutive_failures, last_error) VALUES (?, 1, ?)"
            " ON CONFLICT(source) DO UPDATE SET last_error = excluded.last_error,"
            " consecutive_failures = COALESCE(consecutive_failures, 0) + 1",
            [name, f"{now} crawl {reason}"],
        )


# --- leftovers of crawls nobody watched ------------------------------------------------------


def reap_orphaned_runs(corpus, *, without_pid: bool = False) -> int:
    """Mark ``running`` rows whose process is gone as failed; returns how many.

    A crawl killed outside the daemon (or a daemon killed with its crawl) leaves its row
    ``running`` forever otherwise. ``without_pid``: also rows that never got a pid, which only
    a daemon killed between writing the row and starting the crawl leaves; safe to reap only
    by the daemon holding the lock, at start.
    """
    orphans = [
        (run_id, pid)
        for run_id, pid in corpus.execute("SELECT id, pid FROM runs WHERE status = 'running'")
        if (without_pid if pid is None else not crawl_process_alive(pid))
    ]
    if orphans:
        now = utc_now()
        with corpus.atomic():
            for run_id, pid in orphans:
                corpus.execute(
                    "UPDATE runs SET status = 'failed', ended_at = COALESCE(ended_at, ?),"
                    " reason = ? WHERE id = ? AND status = 'running'",
                    [now, _orphan_reason(pid), run_id],
                )
    return len(orphans)


def _orphan_reason(pid: int | None) -> str:
    if pid is None:
        return "the daemon ended before this crawl started"
    return f"process {pid} ended without finishing its run (killed or crashed)"


def crawl_process_alive(pid: int) -> bool:
    """Is ``pid`` alive and (where /proc tells) still a crawl, not a reused pid?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        text = cmdline.read_bytes()
    except OSError:
        return True
    return b"crawl" in text or b"scrapy" in text or b"nkwatch" in text
