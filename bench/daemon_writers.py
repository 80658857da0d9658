"""How should the daemon run crawl children on one SQLite corpus? Prints figures for three ways.

1. one child per source, all at once (WAL + busy_timeout decide who writes)
2. one child per source, one after another (a queue)
3. one child for every due source (a batch)

Each way crawls the demo web into a fresh corpus; the script prints wall time, failed children,
"database is locked" lines, stored rows and stories. Run: .venv/bin/python bench/daemon_writers.py
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.demo.server import DemoWeb
from crawler.sources import save_sources

CRAWL = [sys.executable, "-m", "crawler.cli", "crawl"]


def crawl_children(db: Path, sources: Path, batches: list[list[str]], parallel: bool) -> dict:
    started = time.monotonic()
    commands = [
        [*CRAWL, "--db", str(db), "--sources", str(sources), *[f"--source={n}" for n in batch]]
        for batch in batches
    ]
    if parallel:  # output to files: a child blocked on a full pipe would look like a hang
        logs = [tempfile.TemporaryFile() for _ in commands]
        children = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=log)
                    for c, log in zip(commands, logs, strict=True)]  # fmt: skip
        outputs = []
        for child, log in zip(children, logs, strict=True):
            code = child.wait()
            log.seek(0)
            outputs.append((code, log.read().decode("utf-8", "replace")))
            log.close()
    else:
        outputs = []
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True)
            outputs.append((done.returncode, done.stderr))
    seconds = time.monotonic() - started
    conn = sqlite3.connect(db)
    rows, distinct = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT response_url) FROM articles"
    ).fetchone()
    stories = conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]
    conn.close()
    return {
        "seconds": round(seconds, 1),
        "children": len(commands),
        "failed_children": sum(1 for code, _ in outputs if code != 0),
        "locked_lines": sum(err.count("database is locked") for _, err in outputs),
        "rows": rows,
        "distinct_urls": distinct,
        "stories": stories,
    }


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with DemoWeb() as web, tempfile.TemporaryDirectory() as folder:
        sources = save_sources(web.sources(), Path(folder) / "sources.toml")
        names = [s.name for s in web.sources()]
        ways = {
            "per-source, parallel": ([[n] for n in names], True),
            "per-source, queued": ([[n] for n in names], False),
            "one batch child": ([names], False),
        }
        for round_number in range(rounds):
            for label, (batches, parallel) in ways.items():
                db = Path(folder) / f"{label.replace(' ', '_')}-{round_number}.db"
                figures = crawl_children(db, sources, batches, parallel)
                print(f"{label:22} " + "  ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
