"""Extraction quality and speed: nkwatch's ``extract_article`` against plain ``trafilatura.extract()``.

Prints word-level precision/recall/F1 on the golden set (``tests/golden``), chrome lines left
in the output, pages/s for both extractors measured on the same pages in the same run (timings
interleaved page by page so a busy machine slows both alike), and the speed ratio. With the
extraction-dev set (real pages with expected snippets, see its README) it prints the same for
those pages, scored by snippets as trafilatura's own evaluation does.

    .venv/bin/python bench/extraction.py [--dev /work/shared/data/extraction-dev] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402

from pipelines.boilerplate import SiteBoilerplates, site_of  # noqa: E402
from pipelines.extract import extract_article  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
DEV = Path("/work/shared/data/extraction-dev")
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7a3]|[^\W_]+")


def load_golden(folder: Path = GOLDEN) -> list[dict]:
    """Golden pages: the expected JSON plus ``body`` (the HTML bytes)."""
    pages = []
    for path in sorted(folder.glob("*.json")):
        page = json.loads(path.read_text("utf-8"))
        page["name"], page["body"] = path.stem, path.with_suffix(".html").read_bytes()
        pages.append(page)
    return pages


def load_dev(folder: Path = DEV) -> list[dict]:
    expected = json.loads((folder / "expected.json").read_text("utf-8"))
    return [{"url": url, "encoding": None, "body": (folder / "html" / e["file"]).read_bytes(),
             "with": e.get("with", []), "without": e.get("without", [])}
            for url, e in expected.items()]  # fmt: skip


def nkwatch_texts(pages: list[dict]) -> list[str]:
    """Body texts as a crawl stores them: extraction, then each site's learned boilerplate."""
    results = [extract_article(p["body"], p["url"], encoding=p.get("encoding")) for p in pages]
    return clean_with_boilerplate(pages, results)


def clean_with_boilerplate(pages: list[dict], results: list) -> list[str]:
    boilerplates = SiteBoilerplates()
    for page, result in zip(pages, results, strict=True):
        if result.article:
            site = boilerplates.site(site_of(page["url"]))
            site.observe(result.article.text, result.article.comments, result.article.word_count)
    texts = []
    for page, result in zip(pages, results, strict=True):
        if result.article is None:
            texts.append("")
            continue
        texts.append(boilerplates.clean(page["url"], result.article.text)[0])
    return texts


def plain_text(page: dict) -> str:
    return trafilatura.extract(page["body"], url=page["url"]) or ""


def word_scores(outputs: list[str], expected: list[str]) -> tuple[float, float, float]:
    """Micro-averaged word-level precision, recall, F1 (CJK characters count as words)."""
    hit = got = want = 0
    for output, truth in zip(outputs, expected, strict=True):
        out_tokens, true_tokens = Counter(_tokens(output)), Counter(_tokens(truth))
        hit += sum((out_tokens & true_tokens).values())
        got += sum(out_tokens.values())
        want += sum(true_tokens.values())
    return _prf(hit, got - hit, want - hit)


def snippet_scores(outputs: list[str], pages: list[dict]) -> tuple[float, float, float]:
    """The dev set's scoring: "with" snippets found (TP) or missed (FN), "without" found (FP)."""
    tp = fn = fp = 0
    for output, page in zip(outputs, pages, strict=True):
        text = _squash(output)
        found = [_squash(s) in text for s in page["with"]]
        tp, fn = tp + sum(found), fn + len(found) - sum(found)
        fp += sum(_squash(s) in text for s in page["without"])
    return _prf(tp, fp, fn)


def chrome_leaks(outputs: list[str], pages: list[dict]) -> list[tuple[str, str]]:
    """(page, line) for every output line that is one of the page's expected chrome lines."""
    leaks = []
    for output, page in zip(outputs, pages, strict=True):
        chrome = {_squash(c).casefold() for c in page.get("chrome", [])}
        leaks += [(page["name"], line) for line in output.splitlines()
                  if _squash(line).casefold() in chrome]  # fmt: skip
    return leaks


def speeds(pages: list[dict], rounds: int) -> tuple[float, float]:
    """Pages/s of nkwatch (extraction + boilerplate) and plain trafilatura, interleaved."""
    spent = {"nkwatch": 0.0, "plain": 0.0}
    for round_number in range(rounds):
        results = []
        for index, page in enumerate(pages):
            order = ("nkwatch", "plain") if (index + round_number) % 2 else ("plain", "nkwatch")
            for name in order:
                start = time.perf_counter()
                if name == "plain":
                    plain_text(page)
                else:
                    results.append(extract_article(page["body"], page["url"],
                                                   encoding=page.get("encoding")))  # fmt: skip
                spent[name] += time.perf_counter() - start
        start = time.perf_counter()
        clean_with_boilerplate(pages, results)
        spent["nkwatch"] += time.perf_counter() - start
    count = len(pages) * rounds
    return count / spent["nkwatch"], count / spent["plain"]


def report(label: str, pages: list[dict], score, rounds: int) -> None:
    nk_out, plain_out = nkwatch_texts(pages), [plain_text(p) for p in pages]
    nk_scores, plain_scores = score(nk_out), score(plain_out)
    nk_speed, plain_speed = speeds(pages, rounds)
    print(f"\n{label}: {len(pages)} pages")
    print(f"  {'':10} {'precision':>9} {'recall':>7} {'F1':>7} {'pages/s':>8}")
    for name, (p, r, f), speed in [("nkwatch", nk_scores, nk_speed),
                                   ("trafilatura", plain_scores, plain_speed)]:  # fmt: skip
        print(f"  {name:10} {p:9.4f} {r:7.4f} {f:7.4f} {speed:8.1f}")
    print(f"  F1 difference (nkwatch - trafilatura): {nk_scores[2] - plain_scores[2]:+.4f}")
    print(f"  speed ratio (nkwatch / trafilatura):   {nk_speed / plain_speed:.2f}x")
    if pages and "chrome" in pages[0]:
        for name, outputs in [("nkwatch", nk_out), ("trafilatura", plain_out)]:
            leaks = chrome_leaks(outputs, pages)
            print(f"  chrome lines left by {name}: {len(leaks)}"
                  + (f" (e.g. {leaks[0][1]!r} in {leaks[0][0]})" if leaks else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, default=DEV, help="extraction-dev folder")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over each set")
    args = parser.parse_args()
    golden = load_golden()
    warm = golden[:5]
    nkwatch_texts(warm), [plain_text(p) for p in warm]  # load models and caches once, untimed
    report("golden set", golden,
           lambda outs: word_scores(outs, [p["text"] for p in golden]), args.rounds)  # fmt: skip
    if (args.dev / "expected.json").exists():
        dev = load_dev(args.dev)
        report("extraction-dev (real pages, snippet scoring)", dev,
               lambda outs: snippet_scores(outs, dev), args.rounds)  # fmt: skip
    else:
        print(f"\n(no extraction-dev set at {args.dev}: skipped)")


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def _squash(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
