"""Per-article cost of dedupe + store, and peak RSS, as the corpus grows to 100k and 1M articles.

The corpus is one real SQLite file, grown in steps. Between measurements it is filled fast,
straight into the tables (articles with their FTS rows, stories, dedupe signatures and LSH
buckets, one transaction per 5,000 articles); every filler article is kept as on-topic with
text and indexed for near duplicates, the worst case for index growth (a real crawl drops the
text of off-topic pages and indexes only on-topic ones). At each size a fresh child process,
as a crawl would be, opens the corpus and writes a window of new ~800-word articles through
nkwatch's own code: ``DedupePipeline`` then ``StorePipeline`` (the insert, raw page, topic
scores, ``assign_story``), in the store's batched transactions. Its milliseconds per article
and its peak RSS are the figures; a twentieth of the window are near copies, so merging runs.

    .venv/bin/python bench/scale.py                           # 100k and 1M (about 15 minutes)
    .venv/bin/python bench/scale.py --sizes 10000,100000      # a quicker look
    .venv/bin/python bench/scale.py --db /big/disk/corpus.db  # keep the corpus (~6 GB at 1M)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from synthetic_web import ON_TOPIC, SyntheticSite, WordGenerator  # noqa: E402

FILL_BATCH = 5000
FILLER_WORDS = 120  # filler text is short: the FTS index grows in rows, not in disk time


def fill(db_path: Path, count: int, seed: int = 7) -> float:
    """Add ``count`` filler articles, each its own story; returns articles per second."""
    from pipelines.corpus import open_corpus
    from pipelines.dedupe import LEAD_PERM, NUM_PERM, Signature

    db = open_corpus(db_path)
    start = db.execute("SELECT coalesce(max(id), 0) FROM articles").fetchone()[0]
    story_start = db.execute("SELECT coalesce(max(id), 0) FROM stories").fetchone()[0]
    stop = start + count
    words = WordGenerator(seed)
    rng = random.Random(seed * 1_000_003 + start)
    numbers = np.random.default_rng(seed * 1_000_003 + start)
    began = time.perf_counter()
    for first in range(start, stop, FILL_BATCH):
        ids = range(first + 1, min(stop, first + FILL_BATCH) + 1)
        articles, stories, signatures, buckets = [], [], [], []
        bodies = numbers.integers(0, 2**32, size=(len(ids), NUM_PERM + LEAD_PERM), dtype=np.uint32)
        for n, article_id in enumerate(ids):
            story_id = story_start + article_id - start
            text = " ".join(rng.choices(words.words, cum_weights=words.cumulative,
                                        k=FILLER_WORDS)).capitalize() + "."  # fmt: skip
            url = f"http://filler.example/{article_id % 97}/story-{article_id}.html"
            stamp = f"2024-{1 + article_id % 12:02d}-{1 + article_id % 28:02d}T08:00:00Z"
            articles.append((article_id, url, url, url, f"filler-{article_id % 40}", stamp, 200,
                             "ok", f"Filler story {article_id}", "[]", stamp, "en", text,
                             FILLER_WORDS, hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
                             "[]", story_id, 1))  # fmt: skip
            stories.append((story_id, article_id, f"Filler story {article_id}", stamp, stamp))
            signature = Signature("words", FILLER_WORDS, bodies[n, :NUM_PERM], bodies[n, NUM_PERM:])
            signatures.append((article_id, signature.to_bytes(), 1.0, "first"))
            buckets += [(band, bucket, article_id) for band, bucket in signature.buckets()]
        buckets.sort()
        with db.atomic():
            db.conn.executemany(
                "INSERT INTO articles (id, url, response_url, canonical_url, source, fetched_at, "
                "http_status, status, title, authors, published_at, language, text, word_count, "
                "content_hash, flags, story_id, relevant) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                articles,
            )
            db.conn.executemany(
                "INSERT INTO stories (id, representative_id, title, first_seen_at, "
                "first_published_at, sightings, sites) VALUES (?, ?, ?, ?, ?, 1, 1)",
                stories,
            )
            db.conn.executemany(
                "INSERT INTO dedupe_signatures (article_id, signature, source_trust, matched_by) "
                "VALUES (?, ?, ?, ?)",
                signatures,
            )
            db.conn.executemany(
                "INSERT OR IGNORE INTO dedupe_buckets (band, bucket, article_id) VALUES (?, ?, ?)",
                buckets,
            )
    db.conn.close()
    return count / (time.perf_counter() - began)


def window_items(first_id: int, count: int, seed: int) -> list:
    """New articles as the pipelines receive them: ~800-word text, a real page as the body."""
    from crawler.items import ArticleItem

    site = SyntheticSite(count, seed=seed + first_id)
    pages = {i: site.article(i) for i in range(min(count, 50))}  # bodies to gzip, reused
    items = []
    for i in range(count):
        paragraphs = site.body(i - 1 if i % 20 == 19 else i)  # one in twenty: a near copy
        if i % 20 == 19:
            paragraphs = paragraphs[1:]
        text = "\n".join(paragraphs)
        if i % 10 == 3:
            text = ON_TOPIC[i % len(ON_TOPIC)] + "\n" + text
        url = f"http://window.example/{first_id}/story-{i}.html"
        items.append(
            ArticleItem(
                url=url, response_url=url, source="window", fetched_at="2025-06-01T00:00:00Z",
                http_status=200, body=pages[i % len(pages)], encoding="utf-8",
                discovered_via="http://window.example/feed.xml", title=site.title(i),
                published_at="2025-06-01T00:00:00Z", language="en", text=text,
                word_count=len(text.split()), extractor_version="bench",
                topic_scores=[{"topic": "it-workers", "score": 0.1, "passed": False,
                               "evidence": []}],
                relevant=True,
            )
        )  # fmt: skip
    return items


def measure_window(db_path: Path, first_id: int, count: int, seed: int) -> dict:
    """Write ``count`` articles through dedupe + store; ms per article and this process's RSS."""
    from scrapy.utils.test import get_crawler

    from pipelines.dedupe import DedupePipeline
    from pipelines.store import StorePipeline

    items = window_items(first_id, count, seed)
    crawler = get_crawler(settings_dict={"NKWATCH_DB": str(db_path)})
    crawler.stats.open_spider(None)
    dedupe, store = DedupePipeline.from_crawler(crawler), StorePipeline.from_crawler(crawler)
    store.open_spider()
    store.timer.stop()  # no reactor runs here: the batch size alone decides each commit
    began, began_cpu = time.perf_counter(), time.process_time()
    for item in items:
        store.process_item(dedupe.process_item(item))
    store.flush()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    stats = crawler.stats.get_stats()
    return {
        "ms_per_article": 1000 * elapsed / count,
        "cpu_ms_per_article": 1000 * cpu / count,  # less swayed by other work on the machine
        "stored": stats.get("nkwatch/stored", 0),
        "new_stories": stats.get("nkwatch/new_stories", 0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_window(db_path: Path, first_id: int, count: int, seed: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--window", str(db_path),
               "--first-id", str(first_id), "--count", str(count), "--seed", str(seed)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"window at {first_id} articles failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes to measure at")
    parser.add_argument("--window", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=2000, help="articles per measured window")
    parser.add_argument("--first-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--db", help="corpus file to grow (default: a temp file, removed)")
    args = parser.parse_args(argv)
    if args.window:
        print(json.dumps(measure_window(Path(args.window), args.first_id, args.count, args.seed)))
        return 0

    sizes = sorted(int(size) for size in args.sizes.split(","))
    folder = None if args.db else Path(tempfile.mkdtemp(prefix="nkwatch-scale-"))
    db_path = Path(args.db) if args.db else folder / "corpus.db"
    print(f"Growing {db_path} to {', '.join(f'{s:,}' for s in sizes)} articles; "
          f"measuring {args.count:,} articles through dedupe + store at each size", flush=True)  # fmt: skip
    rows, filled = [], 0
    began = time.time()
    for size in sizes:
        target = size - args.count * len(rows)  # earlier windows count towards the size
        if target > filled:
            rate = fill(db_path, target - filled)
            print(f"  filled to {size:,} articles ({rate:,.0f} articles/s, "
                  f"{db_path.stat().st_size / 2**30:.2f} GB, {time.time() - began:.0f}s so far)",
                  flush=True)  # fmt: skip
            filled = target
        result = run_window(db_path, first_id=size, count=args.count, seed=args.seed)
        rows.append((size, result))
        print(f"  at {size:>9,} articles: {result['ms_per_article']:.2f} ms/article "
              f"(dedupe + store; CPU {result['cpu_ms_per_article']:.2f} ms), peak RSS {result['peak_rss_mb']:.0f} MB, "
              f"{result['new_stories']} new stories of {result['stored']}", flush=True)  # fmt: skip
    print(f"\nSummary ({time.time() - began:.0f}s, {os.cpu_count()} cores):")
    print(f"  {'corpus size':>12} {'ms/article':>11} {'CPU ms':>7} {'peak RSS MB':>12} "
          f"{'ms vs first':>12} {'CPU vs first':>13} {'RSS vs first':>13}")  # fmt: skip
    base = rows[0][1]
    for size, result in rows:
        print(f"  {size:>12,} {result['ms_per_article']:>11.2f} "
              f"{result['cpu_ms_per_article']:>7.2f} {result['peak_rss_mb']:>12.0f} "
              f"{result['ms_per_article'] / base['ms_per_article']:>11.2f}x "
              f"{result['cpu_ms_per_article'] / base['cpu_ms_per_article']:>12.2f}x "
              f"{result['peak_rss_mb'] / base['peak_rss_mb']:>12.2f}x")  # fmt: skip
    print(f"  load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine "
          "inflates wall-clock ms; CPU ms is steadier)")  # fmt: skip
    if folder is not None:
        for path in folder.glob("*"):
            path.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
