"""One daemon per corpus: an ``fcntl`` lock on a file next to the database.

The kernel drops the lock when the daemon dies, however it dies, so a stale lock file never
blocks a restart. The file also says who holds it (pid, start, sources file), which is how
``nkwatch status`` knows whether a daemon is running without asking it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from pipelines.corpus import utc_now


class DaemonLockedError(RuntimeError):
    """Another daemon holds the corpus; the message names it."""


def lock_path(db: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(db)}.daemon.lock")


class DaemonLock:
    """Held for the daemon's whole life; ``details`` are written into the file for readers."""

    def __init__(self, db: str | os.PathLike) -> None:
        self.db = Path(db)
        self.path = lock_path(db)
        self.file = None

    def acquire(self, **details: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = daemon_holder(self.db) or {}
            raise DaemonLockedError(
                f"{self.db}: a daemon already runs on this corpus (pid {holder.get('pid', '?')}, "
                f"since {holder.get('started_at', '?')}); stop it first or use another --db"
            ) from None
        handle.seek(0)
        handle.truncate()
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now()}
        handle.write(json.dumps({**record, **details}, default=str))
        handle.flush()
        self.file = handle

    def release(self) -> None:
        """Empty the file and unlock; the file stays, so no one ever locks a deleted inode."""
        if self.file is None:
            return
        self.file.seek(0)
        self.file.truncate()
        self.file.flush()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        self.file = None


def daemon_holder(db: str | os.PathLike) -> dict[str, Any] | None:
    """Who holds the daemon lock of ``db`` (pid, host, started_at...), or None if no one does."""
    path = lock_path(db)
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read()
            try:
                return json.loads(text) if text.strip() else {"pid": None}
            except json.JSONDecodeError:
                return {"pid": None}
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
