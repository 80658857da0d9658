"""A synthetic news web for benchmarks: N article pages of ~60 KB and RSS feeds of 500 entries.

Every page is built from a seed, so two runs with the same ``--pages`` and ``--seed`` serve the
same bytes. Pages carry the chrome of a real news site (inline styles and scripts, menus,
related and most-read lists, a footer) around an ~800-word body drawn from a seeded word
generator, so each article is distinct; one in ten speaks of North Korean IT workers or phone
scams, and one in fifty is a lightly edited copy of the one before it (a syndicated story).

The server runs in a process of its own (``SyntheticWeb`` starts it), so its CPU is not taken
from the crawl's GIL and can be measured apart (``.pid``). Pages are rendered before it says
it is ready, so serving costs no rendering. Feeds answer conditional GETs with 304 and
``GET /_bench/stats`` reports what was requested, for counting a re-crawl's fetches.

    .venv/bin/python bench/synthetic_web.py serve --pages 2000      # serve until Ctrl-C
    .venv/bin/python bench/synthetic_web.py page 7 | wc -c           # look at one page
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

FEED_SIZE = 500  # entries per feed, nkwatch's NKWATCH_MAX_ENTRIES_PER_FEED
EPOCH = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)  # article i is published i * 7 minutes later
SECTIONS = ("world", "asia", "technology", "business", "security", "politics", "science")

COMMON_WORDS = """the of and to in a is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their has would when
who will more if no out so said what up its about into than them can only other new some could
time these two may then do first any my now such like our over man me even most made after
also did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great old
year off come since against go came right used take three states himself few house use during
without again place american around however home small found thought went say part once general
high upon school every does got united left number course war until always away something fact
water though less public put think almost hand enough far took head yet government system better
set told nothing night end why called find going look asked later point knew city next program
business give group toward young days let room president side social given present several order
national second possible rather per face among form important often things looked early white
case john become large big need four within felt along children saw best church ever least power
development light thing seemed family interest want members mind country area others done turned
although open god service problem certain kind different thus began door help means sense whole
matter perhaps itself york times human law line above name example action company hands local
show whether five history gave today either act feet across taken past quite anything having
seen death experience body word half really week field money words already information tell
together college shall sometimes""".split()
SYLLABLES = ("ka", "ri", "mo", "zen", "tal", "bor", "vi", "nes", "qua", "lin", "dor", "pe",
             "sha", "tor", "mi", "gan", "lu", "fer", "xo", "ren", "dal", "o", "ser", "cki")  # fmt: skip
ON_TOPIC = (
    "Investigators said North Korean IT workers used false identities to win remote software "
    "jobs at companies in the United States and Europe.",
    "The workers posed as freelance developers with stolen résumés and laptops hosted at "
    "so-called laptop farms, sending their salaries back to Pyongyang.",
    "Prosecutors described a voice phishing ring that impersonated bank officials and "
    "prosecutors in phone calls, a scam the police linked to North Korea.",
    "Victims of the phone scam were told their accounts had been used in a crime and were "
    "pressed to transfer money to a safe account controlled by the callers.",
    "The Justice Department said the scheme generated millions of dollars for the North "
    "Korean regime in violation of sanctions.",
    "Security researchers found that the fake IT workers rehearsed job interviews and used "
    "deepfake video to hide their faces.",
)


class WordGenerator:
    """Deterministic English-like prose: common words mixed with invented content words."""

    def __init__(self, seed: int, invented: int = 4000) -> None:
        rng = random.Random(seed)
        made = {"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(invented)}
        self.words = COMMON_WORDS + sorted(made)
        # Zipf-like weights: function words frequent, most invented words rare.
        self.weights = [1.0 / (rank + 8) for rank in range(len(self.words))]
        self.cumulative = list(_accumulate(self.weights))

    def sentence(self, rng: random.Random) -> str:
        words = rng.choices(self.words, cum_weights=self.cumulative, k=rng.randint(8, 22))
        return " ".join(words).capitalize() + "."

    def paragraphs(self, rng: random.Random, words: int) -> list[str]:
        paragraphs, count = [], 0
        while count < words:
            sentences = [self.sentence(rng) for _ in range(rng.randint(3, 6))]
            paragraphs.append(" ".join(sentences))
            count += sum(len(s.split()) for s in sentences)
        return paragraphs

    def title(self, rng: random.Random) -> str:
        words = rng.choices(self.words[100:], k=rng.randint(5, 9))
        return " ".join(words).title()


def _accumulate(values):
    total = 0.0
    for value in values:
        total += value
        yield total


class SyntheticSite:
    """The content of the web: article ``i`` and feed ``k``, rendered from the seed."""

    def __init__(self, pages: int, seed: int = 1, base_url: str = "http://127.0.0.1/") -> None:
        self.pages = pages
        self.seed = seed
        self.base_url = base_url
        self.words = WordGenerator(seed)
        chrome = random.Random(seed * 7919)
        self.style = _inline_style(chrome)
        self.script = _inline_script(chrome)
        self.menu = _link_list(chrome, self.words, "/section/", 60)
        self.footer = _link_list(chrome, self.words, "/about/", 90)

    @property
    def feeds(self) -> int:
        return (self.pages + FEED_SIZE - 1) // FEED_SIZE

    def feed_paths(self) -> list[str]:
        return [f"/feeds/{k}.xml" for k in range(self.feeds)]

    def published_at(self, i: int) -> datetime:
        return EPOCH + timedelta(minutes=7 * i)

    def path(self, i: int) -> str:
        moment = self.published_at(i)
        return f"/{SECTIONS[i % len(SECTIONS)]}/{moment:%Y/%m}/story-{i}.html"

    def title(self, i: int) -> str:
        return self.words.title(random.Random(f"{self.seed}:title:{i}"))

    def summary(self, i: int) -> str:
        return self.words.sentence(random.Random(f"{self.seed}:summary:{i}"))

    def body(self, i: int) -> list[str]:
        """~800 words; every tenth article on topic, every fiftieth a near copy of the previous."""
        if i % 50 == 49:
            copied = self.body(i - 1)
            rng = random.Random(f"{self.seed}:copy:{i}")
            copied[rng.randrange(len(copied))] = " ".join(
                self.words.sentence(rng) for _ in range(2)
            )
            return copied
        rng = random.Random(f"{self.seed}:body:{i}")
        paragraphs = self.words.paragraphs(rng, 800)
        if i % 10 == 3:
            for sentence in rng.sample(ON_TOPIC, 4):
                at = rng.randrange(len(paragraphs))
                paragraphs[at] = f"{sentence} {paragraphs[at]}"
        return paragraphs

    def article(self, i: int) -> bytes:
        rng = random.Random(f"{self.seed}:chrome:{i}")
        title, moment = escape(self.title(i)), self.published_at(i)
        author = escape(self.words.title(rng)[:30])
        stamp = moment.isoformat().replace("+00:00", "Z")
        ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle",
                         "headline": self.title(i), "datePublished": stamp,
                         "author": {"@type": "Person", "name": author},
                         "publisher": {"@type": "Organization", "name": "Synthetic Times"}})  # fmt: skip
        related = "".join(
            f'<li><a href="{self.path(j)}">{escape(self.title(j))}</a></li>'
            for j in (rng.randrange(self.pages) for _ in range(16))
        )
        popular = "".join(
            f'<li><a href="{self.path(j)}"><span>{n + 1}</span> {escape(self.title(j))}</a></li>'
            for n, j in enumerate(rng.randrange(self.pages) for _ in range(10))
        )
        body = "\n".join(f"<p>{escape(p)}</p>" for p in self.body(i))
        return PAGE.format(
            title=title, stamp=stamp, author=author, ld=ld, style=self.style, script=self.script,
            menu=self.menu, footer=self.footer, related=related, popular=popular, body=body,
            section=SECTIONS[i % len(SECTIONS)], url=self.base_url.rstrip("/") + self.path(i),
            n=i,
        ).encode("utf-8")  # fmt: skip

    def feed(self, k: int) -> bytes:
        first, last = k * FEED_SIZE, min(self.pages, (k + 1) * FEED_SIZE)
        items = []
        for i in reversed(range(first, last)):
            items.append(
                f"<item><title>{escape(self.title(i))}</title>"
                f"<link>{self.base_url.rstrip('/')}{self.path(i)}</link>"
                f"<guid>{self.base_url.rstrip('/')}{self.path(i)}</guid>"
                f"<pubDate>{format_datetime(self.published_at(i))}</pubDate>"
                f"<description>{escape(self.summary(i))}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Synthetic Times feed {k}</title><link>{self.base_url}</link>"
            f"<description>Benchmark feed</description>{''.join(items)}</channel></rss>"
        ).encode()


def _inline_style(rng: random.Random) -> str:
    rules = []
    for n in range(190):
        props = ";".join(
            f"{rng.choice(('margin', 'padding', 'color', 'font-size', 'line-height', 'border'))}:"
            f"{rng.randint(0, 40)}px"
            for _ in range(rng.randint(2, 5))
        )
        rules.append(f".c{n}-{rng.choice(SYLLABLES)}{{{props}}}")
    return "\n".join(rules)


def _inline_script(rng: random.Random) -> str:
    lines = ["window.dataLayer=window.dataLayer||[];"]
    for n in range(150):
        key = "".join(rng.choices(SYLLABLES, k=3))
        lines.append(
            f'dataLayer.push({{"event":"{key}","slot":{n},"sizes":[[300,250],[728,90]],'
            f'"targeting":{{"k":"{rng.randint(1000, 9999)}"}}}});'
        )
    return "\n".join(lines)


def _link_list(rng: random.Random, words: WordGenerator, prefix: str, count: int) -> str:
    return "".join(
        f'<li><a href="{prefix}{n}/">{escape(words.title(rng)[:24])}</a></li>' for n in range(count)
    )


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} | Synthetic Times</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta property="og:title" content="{title}"><meta property="og:type" content="article">
<meta property="og:site_name" content="Synthetic Times">
<meta property="article:published_time" content="{stamp}">
<meta name="author" content="{author}">
<link rel="canonical" href="{url}">
<script type="application/ld+json">{ld}</script>
<style>{style}</style>
<script>{script}</script>
</head><body class="article-page section-{section}">
<a class="skip" href="#main">Skip to content</a>
<header class="site-header"><div class="logo"><a href="/">Synthetic Times</a></div>
<nav class="main-menu"><ul>{menu}</ul></nav>
<form class="search" action="/search"><input name="q"><button>Search</button></form></header>
<div class="breadcrumbs"><a href="/">Home</a> &rsaquo; <a href="/{section}/">{section}</a></div>
<main id="main"><article>
<h1>{title}</h1>
<div class="byline">By <span class="author">{author}</span>
<time datetime="{stamp}">{stamp}</time></div>
<div class="share"><a href="#">Share</a> <a href="#">Tweet</a> <a href="#">Email</a></div>
<figure><img src="/img/{n}.jpg" alt=""><figcaption>File photo.</figcaption></figure>
<div class="article-body">
{body}
</div>
<div class="tags"><a href="/tag/{section}/">{section}</a></div>
</article>
<aside class="related"><h2>Related stories</h2><ul>{related}</ul></aside>
<aside class="most-read"><h2>Most read</h2><ol>{popular}</ol></aside>
<section class="newsletter"><h2>Sign up for our newsletter</h2>
<form><input type="email" name="email"><button>Subscribe</button></form></section>
<section class="comments"><h2>Comments</h2><p>Log in to leave a comment.</p></section>
</main>
<footer class="site-footer"><ul>{footer}</ul>
<p>Copyright © 2025 Synthetic Times. All rights reserved.</p></footer>
<script>{script}</script>
</body></html>
"""


# --- the server (runs in its own process) -----------------------------------------------------


class RequestCounts:
    """What was asked of the server since the last reset, by kind."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, int] = {}
        self.first_at: float | None = None
        self.last_at: float | None = None

    def add(self, kind: str) -> None:
        now = time.time()
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.first_at = self.first_at or now
            self.last_at = now


def serve(pages: int, seed: int, port: int = 0, ready=sys.stdout) -> None:
    """Render the web, bind 127.0.0.1, announce ``{"port", "pid"}`` on ``ready``, serve forever."""
    server = ThreadingHTTPServer(("127.0.0.1", port), SyntheticHandler)
    server.daemon_threads = True
    base_url = f"http://127.0.0.1:{server.server_address[1]}/"
    site = SyntheticSite(pages, seed, base_url)
    server.routes = {site.path(i): site.article(i) for i in range(pages)}
    server.feeds = {}
    for k, path in enumerate(site.feed_paths()):
        body = site.feed(k)
        server.feeds[path] = (body, '"' + hashlib.sha1(body).hexdigest()[:16] + '"')
    server.counts = RequestCounts()
    ready.write(json.dumps({"port": server.server_address[1], "pid": os.getpid()}) + "\n")
    ready.flush()
    server.serve_forever(poll_interval=0.2)


class SyntheticHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Scrapy's downloader expects

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle's algorithm holds each response's last segment until the client's
        # delayed ACK (~40 ms): a latency-bound benchmark of the TCP stack, not of the crawl.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args) -> None:  # a request log line each would cost the server CPU
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server, path = self.server, self.path.split("?")[0]
        if path in server.routes:
            server.counts.add("article")
            return self._send(200, server.routes[path], "text/html; charset=utf-8")
        if path in server.feeds:
            body, etag = server.feeds[path]
            if self.headers.get("If-None-Match") == etag:
                server.counts.add("feed_not_modified")
                return self._send(304, b"", None, etag=etag)
            server.counts.add("feed")
            return self._send(200, body, "application/rss+xml; charset=utf-8", etag=etag)
        if path == "/robots.txt":
            server.counts.add("robots")
            return self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
        if path == "/_bench/stats":
            counts = server.counts
            with counts.lock:
                report = {"counts": dict(counts.counts), "first_at": counts.first_at,
                          "last_at": counts.last_at}  # fmt: skip
                if "reset" in self.path:
                    counts.reset()
            return self._send(200, json.dumps(report).encode(), "application/json")
        server.counts.add("not_found")
        self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str | None, etag: str = "") -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


# --- the handle the benchmarks use --------------------------------------------------------------


class SyntheticWeb:
    """Starts the server process and answers where things are; a context manager.

    ``.base_url``, ``.feed_urls()``, ``.article_url(i)``, ``.write_sources(path)``,
    ``.request_counts(reset=False)`` and ``.pid`` (the server process, to measure its CPU).
    """

    def __init__(self, pages: int, seed: int = 1) -> None:
        self.pages, self.seed = pages, seed
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> SyntheticWeb:
        command = [sys.executable, str(Path(__file__).resolve()), "serve",
                   "--pages", str(self.pages), "--seed", str(self.seed)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"synthetic web ({self.pages} pages) did not start")
        self.port = json.loads(line)["port"]
        self.site = SyntheticSite(self.pages, self.seed, self.base_url)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> SyntheticWeb:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def feed_urls(self) -> list[str]:
        return [self.base_url.rstrip("/") + path for path in self.site.feed_paths()]

    def article_url(self, i: int) -> str:
        return self.base_url.rstrip("/") + self.site.path(i)

    def write_sources(self, path: str | os.PathLike) -> Path:
        """An nkwatch sources file with one RSS source per feed, allowed to fetch loopback."""
        from crawler.sources import Source, save_sources

        sources = [
            Source(name=f"synthetic-{k}", url=url, kind="rss", language="en", allow_private=True)
            for k, url in enumerate(self.feed_urls())
        ]
        return save_sources(sources, path)

    def request_counts(self, reset: bool = False) -> dict:
        """Requests served since the last reset: ``{"counts": {kind: n}, "first_at", "last_at"}``."""
        from urllib.request import urlopen

        url = self.base_url + "_bench/stats" + ("?reset" if reset else "")
        with urlopen(url, timeout=10) as response:  # loopback only: our own server
            return json.loads(response.read())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the web on 127.0.0.1 until killed")
    serve_cmd.add_argument("--pages", type=int, default=2000)
    serve_cmd.add_argument("--seed", type=int, default=1)
    serve_cmd.add_argument("--port", type=int, default=0)
    page_cmd = commands.add_parser("page", help="print article I of the web")
    page_cmd.add_argument("index", type=int)
    page_cmd.add_argument("--pages", type=int, default=2000)
    page_cmd.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            serve(args.pages, args.seed, args.port)
        except KeyboardInterrupt:
            pass
    else:
        sys.stdout.buffer.write(SyntheticSite(args.pages, args.seed).article(args.index))


if __name__ == "__main__":
    main()
