"""What a site asks of the crawler, over real loopback HTTP: robots.txt's Crawl-delay, and a
feed that has moved (a permanent redirect the user is told about)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from crawler.sources import Source, save_sources
from tests.conftest import query, run_nkwatch
from tests.hostile_web import QuietServer, article, rss

ARTICLES = 4


class PoliteSite:
    """One site: robots.txt (with ``robots`` as its text), a feed and its article pages; it
    records when each article page was asked for."""

    def __init__(self, robots: str) -> None:
        self.robots = robots.encode()
        self.article_times: list[float] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/old-feed.xml":
                    self.send_response(301)
                    self.send_header("Location", "/feed.xml")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/robots.txt":
                    body, kind = site.robots, "text/plain"
                elif self.path == "/feed.xml":
                    items = [(f"Scam call centre {i}", f"/a{i}.html") for i in range(ARTICLES)]
                    body, kind = rss(items), "application/rss+xml"
                elif self.path.startswith("/a"):
                    site.article_times.append(time.monotonic())
                    body, kind = article(f"Scam call centre {self.path}").encode(), "text/html"
                else:
                    body, kind = b"not found", "text/plain"
                self.send_response(200 if body != b"not found" else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def polite_site():
    sites: list[PoliteSite] = []
    yield lambda robots: sites.append(PoliteSite(robots)) or sites[-1]
    for site in sites:
        site.close()


def crawl(site: PoliteSite, tmp_path, *settings: str, feed: str = "/feed.xml"):
    sources = save_sources([Source(name="site", url=site.base + feed, allow_private=True)],
                           tmp_path / "sources.toml")  # fmt: skip
    db = tmp_path / "polite.db"
    # no delay of our own and AutoThrottle on: whatever spacing there is comes from robots.txt
    result = run_nkwatch(
        "crawl", "--db", str(db), "--sources", str(sources), "--set", "DOWNLOAD_DELAY=0",
        "--set", "AUTOTHROTTLE_ENABLED=True", "--set", "AUTOTHROTTLE_START_DELAY=0",
        *(part for setting in settings for part in ("--set", setting)), timeout=120,
    )  # fmt: skip
    return db, result


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_crawl_delay_in_robots_txt_spaces_the_site_requests(polite_site, tmp_path):
    site = polite_site("User-agent: *\nCrawl-delay: 1\nAllow: /\n")
    db, _ = crawl(site, tmp_path)
    assert query(db, "SELECT count(*) AS n FROM articles")[0]["n"] == ARTICLES
    spacing = gaps(site.article_times)
    assert len(spacing) == ARTICLES - 1
    assert min(spacing) >= 0.95, f"article requests {spacing} s apart; robots.txt asks for 1 s"


def test_a_crawl_delay_over_the_cap_is_capped_not_obeyed_for_minutes(polite_site, tmp_path):
    site = polite_site("User-agent: *\nCrawl-delay: 86400\n")
    crawl(site, tmp_path, "ROBOTSTXT_MAX_CRAWL_DELAY=0.5")
    assert len(site.article_times) == ARTICLES and min(gaps(site.article_times)) >= 0.45


def test_a_feed_that_moved_is_still_read_and_the_user_told_where_it_went(polite_site, tmp_path):
    site = polite_site("User-agent: *\nAllow: /\n")
    db, result = crawl(site, tmp_path, feed="/old-feed.xml")
    assert query(db, "SELECT count(*) AS n FROM articles")[0]["n"] == ARTICLES
    output = result.stdout + result.stderr
    assert "sources moved:       1" in output
    assert f"source site has moved permanently to {site.base}/feed.xml" in output
