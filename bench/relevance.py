"""Benchmark of relevance: precision, recall and F1 per topic on the labeled set, and the seeds.

The labeled set (``bench/data/relevance/*.jsonl``) is short articles in English, Korean,
Japanese and Chinese, each labeled with the topics it belongs to: on-topic stories, near-misses
(South Korean voice phishing, missile launches, cyber-heists, remote-work fraud, the South
Korean phone market) and off-topic news. Prints figures per topic and per language, every
error with what was missing or what matched, and the scores of the seed articles in
``../shared/seeds`` when that folder exists.

    .venv/bin/python bench/relevance.py
    .venv/bin/python bench/relevance.py --topics my-topics.toml --data other.jsonl
    .venv/bin/python bench/relevance.py --json       # figures only, machine-readable
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.relevance import load_topics, score_article  # noqa: E402

DATA = REPO / "bench" / "data" / "relevance"
SEEDS = REPO.parent / "shared" / "seeds"


def load_labeled(paths: list[Path]) -> list[dict]:
    """Every labeled article in the given JSONL files (or folders of them)."""
    articles = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    article = json.loads(line)
                    article.setdefault("id", f"{file.name}:{number}")
                    articles.append(article)
    return articles


def evaluate(articles: list[dict], topics) -> dict:
    """Counts per topic (overall and per language) and the list of errors."""
    counts: dict = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    errors = []
    for article in articles:
        scores = score_article(article["title"], article["text"], article.get("language"), topics)
        expected = set(article["topics"])
        for score in scores:
            truth = score.topic in expected
            outcome = (
                "tp" if score.passed and truth else
                "fp" if score.passed else
                "fn" if truth else None
            )  # fmt: skip
            if outcome is None:
                continue
            for key in (score.topic, f"{score.topic}/{article.get('language', '?')}"):
                counts[key][outcome] += 1
            if outcome != "tp":
                errors.append((outcome, article, score))
    return {"counts": counts, "errors": errors}


def figures(count: dict) -> tuple[float, float, float]:
    tp, fp, fn = count["tp"], count["fp"], count["fn"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def print_report(result: dict, topics, articles: list[dict]) -> None:
    languages = sorted({a.get("language", "?") for a in articles})
    print(f"Labeled set: {len(articles)} articles, languages {', '.join(languages)}")
    print(f"Topics: {topics.origin}\n")
    print(f"{'topic':32} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8} {'F1':>6}")
    for topic in topics.names():
        for key in [topic] + [f"{topic}/{lang}" for lang in languages]:
            count = result["counts"].get(key, {"tp": 0, "fp": 0, "fn": 0})
            precision, recall, f1 = figures(count)
            label = key if key == topic else "  " + key.split("/")[1]
            print(f"{label:32} {count['tp']:>4} {count['fp']:>4} {count['fn']:>4} "
                  f"{precision:>10.3f} {recall:>8.3f} {f1:>6.3f}")  # fmt: skip
    print(f"\nErrors ({len(result['errors'])}):")
    for outcome, article, score in result["errors"]:
        kind = "false positive" if outcome == "fp" else "missed"
        print(f"  {kind:14} {score.topic:18} {article['id']:14} score {score.score:5.1f}  "
              f"labeled {sorted(article['topics']) or ['none']}  {article['title'][:50]}")  # fmt: skip
        if outcome == "fn":
            print(f"{'':18}missing: {'; '.join(score.missing)}")
        else:
            terms = sorted({f"{e['group']}:{e['term']}" for e in score.evidence})
            print(f"{'':18}matched: {', '.join(terms[:14])}")


def print_seeds(topics) -> None:
    if not SEEDS.is_dir():
        print(f"\nSeeds: {SEEDS} not found, skipped")
        return
    print(f"\nSeeds ({SEEDS}):")
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        title = next((line for line in text.splitlines() if line.strip()), "")
        scores = score_article(title, text, None, topics)
        verdicts = "  ".join(
            f"{s.topic} {s.score:.1f}{' PASS' if s.passed else ''}" for s in scores
        )
        print(f"  {path.name[:3]}  {verdicts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topics", help="topics TOML (default: as the crawler finds it)")
    parser.add_argument(
        "--data", type=Path, nargs="*", default=[DATA], help="JSONL files or folders"
    )
    parser.add_argument("--json", action="store_true", help="print figures as JSON")
    args = parser.parse_args()
    topics = load_topics(args.topics)
    articles = load_labeled(args.data)
    result = evaluate(articles, topics)
    if args.json:
        table = {
            key: dict(zip(("precision", "recall", "f1"), figures(count), strict=True), **count)
            for key, count in sorted(result["counts"].items())
        }
        print(json.dumps(table, indent=2))
        return
    print_report(result, topics, articles)
    print_seeds(topics)
    print_speed(articles, topics)


def print_speed(articles: list[dict], topics) -> None:
    """Scoring cost, so a topic edit that makes matching slow shows up here."""
    rounds = 5
    started = time.perf_counter()
    for _ in range(rounds):
        for article in articles:
            score_article(article["title"], article["text"], None, topics)
    elapsed = (time.perf_counter() - started) / rounds
    chars = sum(len(a["title"]) + len(a["text"]) for a in articles)
    print(f"\nScoring: {elapsed / len(articles) * 1000:.2f} ms per article "
          f"({chars / elapsed / 1000:.0f} k characters/s, one core)")  # fmt: skip


if __name__ == "__main__":
    main()
