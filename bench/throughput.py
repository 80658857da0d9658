"""Throughput of a crawl on a synthetic web of N pages of ~60 KB, served from 127.0.0.1.

In one run, against the same pages served by the same server process:

  (a) download  a plain Scrapy spider that reads the feeds and fetches every page, nothing more
  (b) naive     the same spider calling ``trafilatura.extract`` in its callback
  (c) nkwatch   ``nkwatch crawl`` with its real pipelines into a real SQLite file
  (d) recrawl   ``nkwatch crawl`` again on the unchanged web: how many requests, how many pages

For each: pages/s, CPU seconds (user+sys of the crawl process and every process under it),
mean CPU use as a share of the machine's cores, peak RSS (summed over the process tree, so
nkwatch's extraction workers count) and the server's own CPU seconds; then the ratios c/b and
c/a. Every crawl is a child process (a Twisted reactor starts once per process), sampled with
psutil. pages/s counts from the server's first request to the crawl's exit, so interpreter
start-up is left out but everything the crawl does after its last download is in.

    .venv/bin/python bench/throughput.py                   # N = 2,000, 2 rounds (about 3 minutes)
    .venv/bin/python bench/throughput.py --pages 20000     # the memory check (several minutes)
    .venv/bin/python bench/throughput.py --phases c --set EXTRACT_WORKERS=1 --set STORE_BATCH_SIZE=200

All phases use the same politeness overrides (``BENCH_SETTINGS``): the synthetic web is one
site, so one download slot, which nkwatch's defaults (4 per domain, 0.25 s delay, AutoThrottle)
would throttle to a crawl-a-site-politely pace that says nothing about the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from synthetic_web import SyntheticWeb  # noqa: E402

BENCH_SETTINGS = {
    "CONCURRENT_REQUESTS": 32,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 32,
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
}
NKWATCH_BENCH_SETTINGS = {**BENCH_SETTINGS, "NKWATCH_PROGRESS_SECONDS": 3600}
RELEVANCE = "pipelines.relevance.RelevancePipeline"
CORES = os.cpu_count() or 1
PHASES = {"a": "download", "b": "naive", "c": "nkwatch", "d": "recrawl"}
LETTERS = {name: letter for letter, name in PHASES.items()}


# --- measuring a process tree ---------------------------------------------------------------


class TreeSampler(threading.Thread):
    """Samples CPU time and RSS of a process and all its descendants every ``interval`` s.

    CPU per process is the last value seen, so a process that exits keeps what it used (less
    at most one interval); RSS is summed over the tree at each sample and the peak kept.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.cpu_by_pid: dict[int, float] = {}
        self.timeline: list[tuple[float, float]] = []  # (time.time(), tree CPU seconds)
        self.peak_tree_rss = self.peak_root_rss = self.peak_tree_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        tree_rss = tree_pss = 0
        with_pss = self.samples % 5 == 0  # PSS reads smaps: every fifth sample is enough
        self.samples += 1
        for process in processes:
            try:
                with process.oneshot():
                    times, rss = process.cpu_times(), process.memory_info().rss
                    pss = process.memory_full_info().pss if with_pss else 0
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            self.cpu_by_pid[process.pid] = times.user + times.system
            tree_rss += rss
            tree_pss += pss
            if process.pid == self.root.pid:
                self.peak_root_rss = max(self.peak_root_rss, rss)
        self.peak_tree_rss = max(self.peak_tree_rss, tree_rss)
        self.peak_tree_pss = max(self.peak_tree_pss, tree_pss)
        self.peak_processes = max(self.peak_processes, len(processes))
        self.timeline.append((time.time(), sum(self.cpu_by_pid.values())))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def cpu_since(self, moment: float) -> float:
        """Tree CPU seconds used from ``moment`` to the last sample."""
        before = [cpu for at, cpu in self.timeline if at <= moment]
        return self.timeline[-1][1] - (before[-1] if before else 0.0) if self.timeline else 0.0


@dataclass
class PhaseResult:
    name: str
    pages: int  # article pages the server sent
    wall_s: float  # child process start to exit
    window_s: float  # server's first request to the child's exit
    cpu_s: float  # user+sys, the whole process tree
    cpu_rusage_s: float  # the same from getrusage(RUSAGE_CHILDREN): reaped descendants only
    window_cpu_s: float
    peak_tree_rss: int
    peak_root_rss: int
    peak_tree_pss: int  # proportional set size: pages shared between processes counted once
    processes: int
    server_cpu_s: float
    requests: dict = field(default_factory=dict)
    load: float = 0.0  # the machine's 1-minute load average at the end: others' work shows here
    main_cpu_s: float = 0.0  # the crawl process itself (the reactor thread and its helpers)
    tail_s: float = 0.0  # server's last request to the child's exit
    corpus: dict = field(default_factory=dict)
    exit_code: int = 0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.window_s if self.window_s > 0 else 0.0

    @property
    def cpu_use(self) -> float:
        """Mean CPU use during the window, as a share of all the machine's cores."""
        return self.window_cpu_s / (self.window_s * CORES) if self.window_s > 0 else 0.0


def run_phase(name: str, command: list[str], web: SyntheticWeb, log: Path) -> PhaseResult:
    web.request_counts(reset=True)
    server = psutil.Process(web.pid)
    server_before = sum(server.cpu_times()[:2])
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
        sampler = TreeSampler(child.pid)
        sampler.start()
        exit_code = child.wait()
    ended = time.time()
    sampler.stop()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = web.request_counts()
    first_at = served["first_at"] or started
    rusage_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    return PhaseResult(
        name=name,
        pages=served["counts"].get("article", 0),
        wall_s=ended - started,
        window_s=ended - first_at,
        cpu_s=max(sum(sampler.cpu_by_pid.values()), rusage_cpu),
        cpu_rusage_s=rusage_cpu,
        window_cpu_s=sampler.cpu_since(first_at),
        peak_tree_rss=sampler.peak_tree_rss,
        peak_root_rss=sampler.peak_root_rss,
        peak_tree_pss=sampler.peak_tree_pss,
        load=os.getloadavg()[0],
        main_cpu_s=sampler.cpu_by_pid.get(child.pid, 0.0),
        processes=sampler.peak_processes,
        server_cpu_s=sum(server.cpu_times()[:2]) - server_before,
        requests=served["counts"],
        tail_s=ended - (served["last_at"] or ended),
        exit_code=exit_code,
    )


# --- the spiders of (a) and (b), run in a child process -------------------------------------


def run_plain_spider(feed_urls: list[str], extract: bool) -> None:
    """(a)/(b): read the feeds, fetch every linked page, and extract with trafilatura if asked."""
    import logging

    import scrapy
    from scrapy.crawler import CrawlerProcess

    class PlainSpider(scrapy.Spider):
        name = "bench_naive" if extract else "bench_download"

        async def start(self):
            for url in feed_urls:
                yield scrapy.Request(url, callback=self.parse_feed)

        def parse_feed(self, response):
            for link in response.xpath("//item/link/text()").getall():
                yield scrapy.Request(link.strip(), callback=self.parse_page)

        def parse_page(self, response):
            if extract:
                text = trafilatura.extract(response.text)
                self.crawler.stats.inc_value("bench/extracted" if text else "bench/empty")

    if extract:
        import trafilatura
    process = CrawlerProcess(
        {
            **BENCH_SETTINGS,
            "ROBOTSTXT_OBEY": True,
            "COOKIES_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
            "USER_AGENT": "nkwatch-bench",
        }
    )
    for quiet in ("trafilatura", "htmldate"):
        logging.getLogger(quiet).setLevel(logging.ERROR)
    crawler = process.create_crawler(PlainSpider)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({k: v for k, v in stats.items() if k.startswith(("bench/", "item_"))}))


# --- (c) and (d) -------------------------------------------------------------------------------


def nkwatch_overrides(extra: dict[str, str]) -> dict[str, str]:
    """The bench's settings for ``nkwatch crawl``; relevance is added if settings lack it."""
    from crawler.runner import project_settings

    overrides = {key: str(value) for key, value in NKWATCH_BENCH_SETTINGS.items()}
    pipelines = dict(project_settings().getdict("ITEM_PIPELINES"))
    if RELEVANCE not in pipelines and "ITEM_PIPELINES" not in extra:
        try:
            __import__("pipelines.relevance")
        except ImportError:
            pass
        else:
            pipelines[RELEVANCE] = 300
            overrides["ITEM_PIPELINES"] = json.dumps(pipelines)
    overrides.update(extra)
    return overrides


def crawl_command(
    db: Path, sources: Path, overrides: dict[str, str], launcher: str = "cli"
) -> list[str]:
    """``nkwatch crawl`` as a child; ``launcher="runner"`` calls ``run_crawl`` from ``-c``
    instead, so extraction workers have no ``__main__`` module to re-import on start."""
    if launcher == "runner":
        code = ("import json, sys; from crawler.runner import run_crawl; "
                "run_crawl(sys.argv[1], sys.argv[2], overrides=json.loads(sys.argv[3]))")  # fmt: skip
        return [sys.executable, "-c", code, str(db), str(sources), json.dumps(overrides)]
    sets = [part for key, value in overrides.items() for part in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "crawler.cli", "crawl", "--db", str(db),
            "--sources", str(sources), *sets]  # fmt: skip


def corpus_counts(db: Path) -> dict:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT status, count(*) FROM articles GROUP BY status").fetchall()
        stories = conn.execute("SELECT count(*) FROM stories").fetchone()[0]
    finally:
        conn.close()
    return {**dict(rows), "stories": stories, "db_mb": round(db.stat().st_size / 2**20, 1)}


# --- report -----------------------------------------------------------------------------------


def mb(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def per_page(cpu_s: float, pages: int) -> str:
    """CPU milliseconds per page, or "-" for a phase that fetched none (a re-crawl)."""
    return f"{1000 * cpu_s / pages:.1f}" if pages else "-"


def print_result(result: PhaseResult) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.requests.items()))
    print(
        f"  ({LETTERS[result.name]}) {result.name:9} {result.pages:6} pages  "
        f"{result.pages_per_s:7.1f} pages/s  window {result.window_s:6.1f}s (wall "
        f"{result.wall_s:.1f}s)  CPU {result.cpu_s:6.1f}s  use {result.cpu_use:4.0%} of "
        f"{CORES} cores  peak RSS {mb(result.peak_tree_rss)} MB tree (PSS "
        f"{mb(result.peak_tree_pss)}) / {mb(result.peak_root_rss)} MB main "
        f"({result.processes} procs)  server CPU {result.server_cpu_s:.1f}s  "
        f"load {result.load:.1f}",
        flush=True,
    )
    print(f"      requests served: {kinds}; last request {result.tail_s:.1f}s before exit",
          flush=True)  # fmt: skip
    others = result.cpu_s - result.main_cpu_s
    print(f"      CPU: main process {result.main_cpu_s:.1f}s "
          f"({per_page(result.main_cpu_s, result.pages)} ms/page), other processes "
          f"{others:.1f}s ({per_page(others, result.pages)} ms/page)", flush=True)  # fmt: skip
    if result.corpus:
        print(f"      corpus: {result.corpus}", flush=True)
    if result.exit_code:
        print(f"      exit code {result.exit_code}", flush=True)


def best_rounds(rounds: dict[str, list[PhaseResult]]) -> dict[str, PhaseResult]:
    """Each phase's fastest round: other work on a shared machine only ever slows a round."""
    return {name: max(results, key=lambda r: r.pages_per_s) for name, results in rounds.items()}


def print_summary(rounds: dict[str, list[PhaseResult]], pages: int) -> None:
    results = best_rounds(rounds)
    count = max(len(r) for r in rounds.values())
    print(f"\nSummary, N = {pages} pages of ~60 KB, {CORES} cores"
          + (f", best of {count} rounds per phase:" if count > 1 else ":"))  # fmt: skip
    print(f"  {'phase':10} {'pages':>6} {'pages/s':>8} {'CPU s':>7} {'CPU ms/page':>12} "
          f"{'CPU use':>8} {'peak RSS MB':>12} {'PSS MB':>7} {'server CPU s':>13} {'load':>5}")  # fmt: skip
    for result in results.values():
        print(
            f"  {result.name:10} {result.pages:6} {result.pages_per_s:8.1f} {result.cpu_s:7.1f} "
            f"{per_page(result.cpu_s, result.pages):>12} {result.cpu_use:8.0%} "
            f"{mb(result.peak_tree_rss):>12} {mb(result.peak_tree_pss):>7} "
            f"{result.server_cpu_s:13.1f} {result.load:5.1f}"
        )
    full = results.get("nkwatch")
    for other in ("naive", "download"):
        if full and other in results and results[other].pages_per_s:
            ratio = full.pages_per_s / results[other].pages_per_s
            print(f"  c/{LETTERS[other]} = {ratio:.2f}  (nkwatch {full.pages_per_s:.1f} / {other} "
                  f"{results[other].pages_per_s:.1f} pages/s)", end="")  # fmt: skip
            paired = list(zip(rounds["nkwatch"], rounds[other], strict=False))
            if len(paired) > 1:
                each = ", ".join(f"{c.pages_per_s / o.pages_per_s:.2f}" for c, o in paired)
                print(f"; round by round: {each}", end="")
            print()
    if full:
        print(f"  nkwatch mean CPU use: {full.cpu_use:.0%} of {CORES} cores "
              f"({full.window_cpu_s:.1f} CPU s in {full.window_s:.1f} s)")  # fmt: skip
    recrawl = results.get("recrawl")
    if recrawl:
        total = sum(recrawl.requests.values())
        print(f"  re-crawl: {total} requests ({recrawl.requests}), "
              f"{recrawl.pages} article pages fetched")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000, help="article pages (default 2000)")
    parser.add_argument("--workers", type=int, default=None,
                        help="EXTRACT_WORKERS for (c) (default: nkwatch's, one per core)")  # fmt: skip
    parser.add_argument("--phases", default="abcd", help="which of a, b, c, d to run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="run a, b, c this many times, interleaved, and compare each "
                             "phase's best round (default 2; d runs once, after the last c)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra nkwatch setting for (c) and (d)")  # fmt: skip
    parser.add_argument(
        "--launcher",
        choices=["cli", "runner"],
        default="cli",
        help="start (c)/(d) as `nkwatch crawl` (cli) or run_crawl from -c (runner)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (corpus, logs)")
    parser.add_argument("--child", choices=["download", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--feeds", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_plain_spider(args.feeds.split(","), extract=args.child == "naive")
        return 0

    extra = dict(pair.split("=", 1) for pair in args.overrides)
    if args.workers is not None:
        extra["EXTRACT_WORKERS"] = str(args.workers)
    folder = Path(tempfile.mkdtemp(prefix="nkwatch-throughput-"))
    print(f"Serving a synthetic web of {args.pages} pages (seed {args.seed})...", flush=True)
    rounds: dict[str, list[PhaseResult]] = {}
    with SyntheticWeb(args.pages, args.seed) as web:
        print(f"  {web.base_url}, {len(web.feed_urls())} feeds; work folder {folder}", flush=True)
        sources = web.write_sources(folder / "sources.toml")
        db = folder / "corpus.db"
        overrides = nkwatch_overrides(extra)
        print(f"  nkwatch overrides: {overrides}; launcher {args.launcher}", flush=True)
        for number in range(1, max(1, args.rounds) + 1):
            last = number == max(1, args.rounds)
            for letter in args.phases:
                name = PHASES[letter]
                if name == "recrawl" and not last:
                    continue
                if name in ("download", "naive"):
                    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
                               "--feeds", ",".join(web.feed_urls())]  # fmt: skip
                else:
                    if name == "nkwatch":  # every round crawls into a fresh corpus
                        for path in folder.glob("corpus.db*"):
                            path.unlink()
                    command = crawl_command(db, sources, overrides, args.launcher)
                result = run_phase(name, command, web, folder / f"{name}.log")
                if name in ("nkwatch", "recrawl") and db.exists():
                    result.corpus = corpus_counts(db)
                rounds.setdefault(name, []).append(result)
                print_result(result)
                if result.exit_code:
                    print((folder / f"{name}.log").read_text()[-3000:])
    print_summary(rounds, args.pages)
    if not args.keep:
        for path in sorted(folder.glob("*"), reverse=True):
            path.unlink()
        folder.rmdir()
    return 0 if all(r.exit_code == 0 for rs in rounds.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
