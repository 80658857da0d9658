"""Benchmark of deduplication: planted near-duplicates in a synthetic corpus, indexed through the
store's own code path (``DedupePipeline`` then the store's INSERT then ``assign_story``, in
batched transactions) on a real SQLite file.

Prints, per corpus size: precision and recall on the planted pairs (and recall per kind of
copy), how often the original was chosen as representative, milliseconds per article (all
articles, and the last tenth, when the index is at full size), index size on disk and peak RSS.

    .venv/bin/python bench/dedup.py                 # 10k and 100k articles (a few minutes)
    .venv/bin/python bench/dedup.py --million       # and 1M (about an hour, ~10 GB of disk)
    .venv/bin/python bench/dedup.py --sizes 2000    # a quick look

Each size runs in a child process of its own so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.items import ArticleItem  # noqa: E402
from pipelines.corpus import open_corpus  # noqa: E402
from pipelines.dedupe import DedupePipeline, assign_story  # noqa: E402
from pipelines.store import ARTICLE_COLUMNS, INSERT_ARTICLE  # noqa: E402

BATCH = 50  # rows per transaction, as the store commits
COPY_KINDS = ("chrome", "headline", "dropped", "added", "lead", "combined", "syndicated")
CHROME_EN = [
    "Share this article", "Follow us on Twitter and Facebook", "Source: wire reports",
    "Copyright 2024 Lighting Co. All rights reserved.", "Click here to subscribe to our newsletter",
    "Photo: file", "Read more at the original site", "Contact us for LED products",
]  # fmt: skip
CHROME_ZH = ["分享到：微信 微博", "来源：网络", "版权所有 武汉市某某照明厂", "欢迎咨询本厂LED产品",
             "点击关注我们", "责任编辑：小王"]  # fmt: skip
CHROME_JA = ["この記事をシェアする", "出典：共同", "無断転載を禁じます", "関連記事はこちら"]


# --- a synthetic language -----------------------------------------------------------------------


class Language:
    """Zipf-distributed words, so unrelated articles share common phrases as real ones do."""

    def __init__(self, rng: np.random.Generator, kind: str, size: int) -> None:
        self.kind = kind
        self.words = np.array([self._word(rng) for _ in range(size)], dtype=object)
        weights = 1.0 / np.arange(1, size + 1) ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())
        self.topics = [rng.choice(size, 60, replace=False) for _ in range(400)]

    def _word(self, rng) -> str:
        if self.kind == "en":
            syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "or", "ex", "pri", "dan", "vel", "is",
                         "con", "ta", "bu", "ne", "ra", "gol", "fin", "str", "an", "es"]  # fmt: skip
            return "".join(rng.choice(syllables, rng.integers(1, 4)))
        if self.kind == "zh":
            return "".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 2500, rng.integers(1, 3)))
        kana = [chr(c) for c in range(0x3041, 0x3094)] + [chr(c) for c in range(0x30A1, 0x30F4)]
        kanji = "".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 2000, rng.integers(1, 3)))
        return kanji + "".join(rng.choice(kana, rng.integers(0, 3)))

    def _words(self, rng, topic: int, n: int) -> list[str]:
        picks = self.words[np.searchsorted(self.cdf, rng.random(n))]
        topical = rng.random(n) < 0.25
        picks[topical] = self.words[rng.choice(self.topics[topic], int(topical.sum()))]
        return picks.tolist()

    def _sentence(self, words: list[str]) -> str:
        if self.kind == "en":
            text = " ".join(words)
            return text[0].upper() + text[1:] + "."
        return "".join(words) + "。"

    def sentence(self, rng, topic: int) -> str:
        return self._sentence(self._words(rng, topic, int(rng.integers(8, 22))))

    def paragraph(self, rng, topic: int) -> str:
        """Two to four sentences of 8-21 words, drawn in one go (generation is the slow part)."""
        lengths = rng.integers(8, 22, int(rng.integers(2, 5)))
        words = self._words(rng, topic, int(lengths.sum()))
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        sentences = [self._sentence(words[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
        return (" " if self.kind == "en" else "").join(sentences)

    def headline(self, rng, topic: int) -> str:
        return self.sentence(rng, topic).rstrip(".。")


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Article:
    number: int
    cluster: int  # ground truth: articles of one cluster are one story
    kind: str  # "original", a copy kind, or a negative kind
    language: str
    title: str
    paragraphs: list[str]
    source: str
    trust: float
    published_at: str
    authors: list[str] = field(default_factory=list)
    canonical_url: str | None = None  # a syndicated copy's rel=canonical: its original's URL
    order: float = 0.0

    @property
    def url(self) -> str:
        return f"https://{self.source}.example/news/{self.number}.html"

    @property
    def text(self) -> str:
        return "\n".join(self.paragraphs)


def _stamp(day: int, minute: int) -> str:
    return time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + day * 86400 + minute * 60)
    )


def build_corpus(size: int, seed: int) -> list[Article]:
    """``size`` articles: ~70% unique, ~25% planted copies of every kind, ~5% hard negatives."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    languages = {"en": Language(rng, "en", 30000), "zh": Language(rng, "zh", 20000),
                 "ja": Language(rng, "ja", 20000)}  # fmt: skip
    articles: list[Article] = []

    def add(**fields) -> Article:
        article = Article(number=len(articles), **fields)
        articles.append(article)
        return article

    while len(articles) < size:
        language = pick.choices(["en", "zh", "ja"], [0.7, 0.2, 0.1])[0]
        lang = languages[language]
        topic = int(rng.integers(0, 400))
        day = int(rng.integers(0, 1500))
        cluster = len(articles)
        paragraphs = [lang.paragraph(rng, topic) for _ in range(int(rng.integers(5, 11)))]
        original = add(cluster=cluster, kind="original", language=language,
                       title=lang.headline(rng, topic), paragraphs=paragraphs,
                       source=f"outlet{pick.randrange(40)}", trust=1.0,
                       published_at=_stamp(day, pick.randrange(1440)),
                       authors=[f"Reporter {pick.randrange(500)}"], order=len(articles))  # fmt: skip
        roll = pick.random()
        if roll < 0.25:
            for _ in range(pick.choice([1, 1, 1, 2])):
                plant_copy(add, original, lang, rng, pick, topic, day)
        elif roll < 0.32:
            plant_negative(add, original, lang, rng, pick, topic, day)
    return articles[:size]


def plant_copy(add, original: Article, lang: Language, rng, pick, topic: int, day: int) -> None:
    kind = pick.choice(COPY_KINDS)
    paragraphs = list(original.paragraphs)
    chrome = {"en": CHROME_EN, "zh": CHROME_ZH, "ja": CHROME_JA}[original.language]
    if kind in ("chrome", "combined"):
        paragraphs = pick.sample(chrome, pick.randint(1, 2)) + paragraphs
        paragraphs += pick.sample(chrome, pick.randint(1, 2))
    if kind in ("headline", "combined"):
        paragraphs = [lang.headline(rng, topic)] + paragraphs
    if kind in ("dropped", "combined"):
        paragraphs.pop(pick.randrange(1, len(paragraphs)))
    if kind == "added":
        paragraphs.insert(pick.randrange(1, len(paragraphs)), lang.paragraph(rng, topic))
    if kind == "lead":
        keep, words = 0, 0
        while keep < len(paragraphs) - 1 and (keep < 2 or words < 70):
            words += _words(paragraphs[keep])
            keep += 1
        paragraphs = paragraphs[:keep] + ([pick.choice(chrome)] if pick.random() < 0.5 else [])
    farm = kind != "syndicated" and pick.random() < 0.7
    add(cluster=original.cluster, kind=kind, language=original.language,
        title=original.title if kind != "headline" else lang.headline(rng, topic),
        paragraphs=paragraphs, source=f"farm{pick.randrange(20)}" if farm else
        f"outlet{pick.randrange(40, 60)}", trust=0.2 if farm else 1.0,
        # farms often claim the original's date; outlets republish later
        published_at=original.published_at if farm and pick.random() < 0.5 else
        _stamp(day, 1440 + pick.randrange(2880)),
        authors=[] if farm else [f"Reporter {pick.randrange(500)}"],
        canonical_url=original.url if kind == "syndicated" else None,
        # a copy is usually fetched after its original, sometimes before it
        order=original.order + (pick.uniform(-30, -1) if pick.random() < 0.2 else
                                pick.uniform(1, 3000)))  # fmt: skip


def plant_negative(add, original: Article, lang: Language, rng, pick, topic: int, day: int) -> None:
    """Articles that look related and must stay separate stories."""
    kind = pick.choice(["follow-up", "quotes", "short"])
    if kind == "follow-up":  # same topic, reuses one background paragraph
        paragraphs = [lang.paragraph(rng, topic) for _ in range(int(rng.integers(5, 10)))]
        paragraphs.insert(pick.randrange(len(paragraphs)), pick.choice(original.paragraphs))
    elif kind == "quotes":  # mostly one long statement that the original quotes too
        quote = '"' + " ".join(original.paragraphs[:3]) + '"'
        quote = quote if original.language == "en" else "「" + quote[1:-1] + "」"
        original.paragraphs.insert(1, quote)
        paragraphs = [lang.sentence(rng, topic), quote, lang.sentence(rng, topic)]
    else:  # a headline-only page close to the original's own headline-only twin
        original.paragraphs = [original.title]
        paragraphs = [original.title + (" again" if original.language == "en" else "再次")]
    add(cluster=-1 - original.number, kind=kind, language=original.language,
        title=lang.headline(rng, topic), paragraphs=paragraphs,
        source=f"outlet{pick.randrange(60)}", trust=1.0,
        published_at=_stamp(day, 60 + pick.randrange(2880)), authors=["Desk"],
        order=original.order + pick.uniform(1, 3000))  # fmt: skip


def _words(paragraph: str) -> int:
    return len(paragraph.split()) if " " in paragraph else len(paragraph) // 2


# --- indexing through the store's code path ---------------------------------------------------


def to_item(article: Article) -> ArticleItem:
    item = ArticleItem(
        url=article.url, response_url=article.url, source=article.source,
        fetched_at=_stamp(2000, article.number % 1440), http_status=200,
        source_trust=article.trust,
    )  # fmt: skip
    item.title, item.text, item.language = article.title, article.text, article.language
    item.authors, item.published_at = article.authors, article.published_at
    item.word_count = _words(article.text)
    item.canonical_url = article.canonical_url
    return item


def run_size(size: int, seed: int, folder: Path, keep_text: bool) -> dict:
    started = time.perf_counter()
    corpus = build_corpus(size, seed)
    corpus.sort(key=lambda a: a.order)
    generated_s = time.perf_counter() - started
    rss_before_mb = _peak_rss_mb()
    path = folder / f"dedup-{size}.db"
    db = open_corpus(path)
    pipeline = DedupePipeline()
    story_of: dict[int, int] = {}
    wall, cpu = time.perf_counter, time.process_time
    dedupe_ms, dedupe_cpu_ms, all_ms = [], [], []  # per article
    for start in range(0, len(corpus), BATCH):
        batch_started, batch_ms = wall(), []
        for article in corpus[start : start + BATCH]:
            item = to_item(article)
            w0, c0 = wall(), cpu()
            pipeline.process_item(item)  # the signature: CPU only
            w1, c1 = wall(), cpu()
            row = {c: getattr(item, c, None) for c in ARTICLE_COLUMNS}
            row.update(status="ok", authors=json.dumps(item.authors), flags="[]",
                       relevant=1, text=item.text if keep_text else None)  # fmt: skip
            article_id = db.execute(INSERT_ARTICLE, [row[c] for c in ARTICLE_COLUMNS]).lastrowid
            w2, c2 = wall(), cpu()
            story_of[article.number], _ = assign_story(db, article_id, item)
            w3, c3 = wall(), cpu()
            dedupe_ms.append((w1 - w0 + w3 - w2) * 1000)
            dedupe_cpu_ms.append((c1 - c0 + c3 - c2) * 1000)
            batch_ms.append(0.0)
        db.conn.commit()  # the store commits once per batch
        share = (wall() - batch_started) * 1000 / len(batch_ms)
        all_ms.extend([share] * len(batch_ms))  # insert + dedupe + commit, per article
    indexed_s = time.perf_counter() - started - generated_s
    result = {
        "size": size,
        **score(corpus, story_of),
        **representatives(db, corpus, story_of),
        "generate_s": round(generated_s, 1),
        "index_s": round(indexed_s, 1),
        "ms_dedupe_all": round(float(np.mean(dedupe_ms)), 3),
        "ms_dedupe_last10pct": round(float(np.mean(_tail(dedupe_ms))), 3),
        "cpu_ms_dedupe_last10pct": round(float(np.mean(_tail(dedupe_cpu_ms))), 3),
        "ms_with_insert_commit_last10pct": round(float(np.mean(_tail(all_ms))), 3),
        **sizes_on_disk(db, path),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_indexing_mb": round(rss_before_mb, 1),
    }
    db.close()
    return result


def _tail(values) -> np.ndarray:
    values = np.asarray(values)
    return values[-max(1, len(values) // 10) :]


def score(corpus: list[Article], story_of: dict[int, int]) -> dict:
    """Recall over planted (original, copy) pairs; precision over every pair put in one story."""
    by_cluster = defaultdict(list)
    for article in corpus:
        by_cluster[article.cluster].append(article)
    planted, found, per_kind = 0, 0, defaultdict(lambda: [0, 0])
    for members in by_cluster.values():
        originals = [a for a in members if a.kind == "original"]
        for copy in (a for a in members if a.kind in COPY_KINDS):
            if not originals:
                continue
            planted += 1
            same = story_of[copy.number] == story_of[originals[0].number]
            found += same
            per_kind[f"{copy.kind}-{'cjk' if copy.language != 'en' else 'en'}"][0] += same
            per_kind[f"{copy.kind}-{'cjk' if copy.language != 'en' else 'en'}"][1] += 1
    predicted = defaultdict(list)
    for article in corpus:
        predicted[story_of[article.number]].append(article.cluster)
    merged_pairs = true_pairs = 0
    for clusters in predicted.values():
        n = len(clusters)
        merged_pairs += n * (n - 1) // 2
        true_pairs += sum(c * (c - 1) // 2 for c in Counter(clusters).values())
    negatives = [a for a in corpus if a.cluster < 0]
    wrongly_merged = sum(
        1 for a in negatives if story_of[a.number] == story_of.get(-1 - a.cluster, -1)
    )
    return {
        "articles": len(corpus),
        "stories": len(predicted),
        "planted_pairs": planted,
        "recall": round(found / planted, 4) if planted else None,
        "precision": round(true_pairs / merged_pairs, 4) if merged_pairs else None,
        "recall_by_kind": {k: round(v[0] / v[1], 3) for k, v in sorted(per_kind.items())},
        "hard_negatives": len(negatives),
        "hard_negatives_merged": wrongly_merged,
    }


def representatives(db, corpus: list[Article], story_of: dict[int, int]) -> dict:
    """How often a story with a planted copy is represented by its original."""
    by_url = {a.url: a for a in corpus}
    rep_urls = dict(
        db.execute(
            "SELECT s.id, a.url FROM stories s JOIN articles a ON a.id = s.representative_id"
        )
    )
    multi = {story_of[a.number] for a in corpus if a.kind in COPY_KINDS}
    checked = right = 0
    for article in corpus:
        if article.kind == "original" and story_of[article.number] in multi:
            checked += 1
            right += by_url.get(rep_urls.get(story_of[article.number])) is article
    return {"original_is_representative": round(right / checked, 4) if checked else None}


def sizes_on_disk(db, path: Path) -> dict:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = dict(
        db.execute(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name IN "
            "('dedupe_buckets', 'dedupe_signatures') GROUP BY name"
        )
    )
    rows = db.execute("SELECT COUNT(*) FROM dedupe_buckets").fetchone()[0]
    return {
        "bucket_rows": rows,
        "index_mb": round(pages.get("dedupe_buckets", 0) / 2**20, 1),
        "signatures_mb": round(pages.get("dedupe_signatures", 0) / 2**20, 1),
        "db_file_mb": round(path.stat().st_size / 2**20, 1),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the report -----------------------------------------------------------------------------------


def print_report(results: list[dict]) -> None:
    print("\nDeduplication benchmark (planted near-duplicates, on-disk LSH via assign_story)")
    for r in results:
        print(f"\n== {r['size']:,} articles -> {r['stories']:,} stories; "
              f"{r['planted_pairs']:,} planted pairs, {r['hard_negatives']:,} hard negatives")  # fmt: skip
        print(f"  recall     {r['recall']:.4f}   precision {r['precision']:.4f}   "
              f"hard negatives merged {r['hard_negatives_merged']}   "
              f"original is representative {r['original_is_representative']:.4f}")  # fmt: skip
        print(
            "  recall by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in r["recall_by_kind"].items())
        )
        print(f"  ms/article, signature + assign_story: {r['ms_dedupe_all']:.3f} over all; "
              f"over the last 10% {r['ms_dedupe_last10pct']:.3f} wall, "
              f"{r['cpu_ms_dedupe_last10pct']:.3f} CPU; with the article insert and the batch "
              f"commit {r['ms_with_insert_commit_last10pct']:.3f} wall")  # fmt: skip
        print(f"  index on disk: buckets {r['index_mb']} MB ({r['bucket_rows']:,} rows), "
              f"signatures {r['signatures_mb']} MB; database file {r['db_file_mb']} MB")  # fmt: skip
        print(f"  peak RSS {r['peak_rss_mb']} MB (corpus generated in memory: "
              f"{r['rss_before_indexing_mb']} MB before indexing); "
              f"generate {r['generate_s']} s, index {r['index_s']} s")  # fmt: skip
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            ratios = [r[k] / base[k] for k in ("ms_dedupe_last10pct", "cpu_ms_dedupe_last10pct",
                                              "ms_with_insert_commit_last10pct")]  # fmt: skip
            print(f"\nper-article cost at {r['size']:,} vs {base['size']:,} (last 10% of each run):"
                  f" {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU; "
                  f"{ratios[2]:.2f}x with insert and commit")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated corpus sizes")
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 articles")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--folder", default=None, help="where the SQLite files go (temp dir)")
    parser.add_argument("--no-text", action="store_true", help="store articles without text")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="nkwatch-dedup-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(json.dumps(run_size(args.one, args.seed, folder, not args.no_text)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.million else [])
    results = []
    for size in sizes:
        print(f"indexing {size:,} articles in {folder} ...", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, "--one", str(size), "--seed", str(args.seed),
                   "--folder", str(folder)] + (["--no-text"] if args.no_text else [])  # fmt: skip
        child = subprocess.run(command, capture_output=True, text=True, env=os.environ)
        if child.returncode != 0:
            sys.exit(f"benchmark at {size} failed:\n{child.stderr[-3000:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        (folder / f"dedup-{size}.db").unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            (folder / f"dedup-{size}.db{suffix}").unlink(missing_ok=True)
    print_report(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
