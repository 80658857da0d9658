"""Export memory and speed, and search speed (FTS5 vs the CJK substring scan), on a large corpus.

Builds a synthetic corpus by repeating the demo corpus's articles N times, then runs each
export in a child process and prints its peak RSS and time: the figure that shows export
memory stays flat as the corpus grows. Usage:

    python bench/export_search.py DEMO.db [--sizes 5000,50000] [--folder /tmp/nkwatch-bench]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from pipelines.corpus import open_corpus
from pipelines.queries import Filters, search

CHILD = (
    "import resource, sys, time; from crawler.cli import main; t = time.perf_counter()\n"
    "try:\n    main(sys.argv[1:], standalone_mode=False)\nfinally:\n"
    "    print(f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} '"
    "f'{time.perf_counter() - t:.2f}', file=sys.stderr)"
)


def build(demo: Path, target: Path, copies: int) -> int:
    source = open_corpus(demo, readonly=True)
    rows = list(source.query("SELECT * FROM articles WHERE status = 'ok'"))
    target.unlink(missing_ok=True)
    db = open_corpus(target)
    with db.atomic():
        for copy in range(copies):
            for row in rows:
                article = {**row, "id": None, "url": f"{row['url']}#{copy}", "story_id": None}
                article_id = db["articles"].insert(article).last_pk
                story_id = db["stories"].insert(
                    {"representative_id": article_id, "title": row["title"],
                     "first_seen_at": row["fetched_at"], "sightings": 1, "sites": 1}
                ).last_pk  # fmt: skip
                db.execute("UPDATE articles SET story_id = ? WHERE id = ?", [story_id, article_id])
                db["topic_scores"].insert(
                    {"article_id": article_id, "topic": "nk-it-workers", "score": 2.5, "passed": 1,
                     "evidence": "[]"}
                )  # fmt: skip
    return db.execute("SELECT count(*) FROM articles").fetchone()[0]


def export_figures(db: Path, folder: Path, fmt: str, per: str) -> tuple[str, str, int]:
    out = folder / f"out.{fmt}"
    args = ["export", "--db", str(db), "--format", fmt, "--per", per, "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    rss, seconds = done.stderr.strip().splitlines()[-1].split()
    return rss, seconds, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("demo", type=Path)
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/nkwatch-bench"))
    options = parser.parse_args()
    options.folder.mkdir(parents=True, exist_ok=True)
    demo_rows = (
        open_corpus(options.demo, readonly=True)
        .execute("SELECT count(*) FROM articles WHERE status = 'ok'")
        .fetchone()[0]
    )
    print(
        f"{'articles':>9} {'format':8} {'per':8} {'peak RSS MB':>11} {'seconds':>8} {'MB out':>7}"
    )
    for size in (int(s) for s in options.sizes.split(",")):
        db = options.folder / f"corpus-{size}.db"
        started = time.perf_counter()
        count = build(options.demo, db, max(1, size // demo_rows))
        print(f"# built {count} articles in {time.perf_counter() - started:.1f} s")
        for fmt, per in (("jsonl", "article"), ("csv", "article"), ("parquet", "article"),
                         ("jsonl", "story"), ("atom", "story")):  # fmt: skip
            rss, seconds, size_out = export_figures(db, options.folder, fmt, per)
            print(f"{count:>9} {fmt:8} {per:8} {rss:>11} {seconds:>8} {size_out / 1e6:>7.1f}")
        corpus = open_corpus(db, readonly=True)
        for phrase in ("crowdsourcing website", "クラウドソーシング", "众包平台", "위장 신분"):
            started = time.perf_counter()
            hits, method = search(corpus, phrase, Filters(), 20)
            elapsed = (time.perf_counter() - started) * 1000
            print(f"# search {phrase!r}: {len(hits)} hits via {method} in {elapsed:.0f} ms")


if __name__ == "__main__":
    main()
