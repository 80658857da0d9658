"""Sources: adding them in one command, crawling only what is new, sitemaps and section pages."""

from __future__ import annotations

import gzip
import json
import re

import pytest
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request
from scrapy.utils.test import get_crawler

from crawler.feedreader import parse_feed
from crawler.middlewares import AddressGuardMiddleware
from crawler.sources import Source, SourcesError, load_sources, parse_sources, save_sources
from crawler.spiders.sitemaps import parse_sitemap
from tests.conftest import query, run_nkwatch


def test_add_a_homepage_discovers_its_feed_then_refuses_it_twice(demo_web, tmp_path):
    sources_file = tmp_path / "sources.toml"
    env = {"NKWATCH_SOURCES": str(sources_file)}
    save_sources([], sources_file)
    home = demo_web.outlets["tokyo-report"].base_url
    added = run_nkwatch("sources", "add", home, "--name", "tokyo", env=env)
    assert "added tokyo: atom" in added.stdout and "entries" in added.stdout
    saved = load_sources(sources_file)
    assert [(s.name, s.kind, s.url) for s in saved] == [("tokyo", "atom", home + "feeds/atom.xml")]
    again = run_nkwatch("sources", "add", home, env=env, check=False)
    assert again.returncode != 0 and "already" in again.stderr and "Traceback" not in again.stderr
    page = demo_web.url_of("tokyo-report/ozeki-hoshitaka-wins-kyushu-basho")
    not_feed = run_nkwatch("sources", "add", page, env=env, check=False)
    assert not_feed.returncode != 0 and "already watched" in not_feed.stderr
    missing = run_nkwatch("sources", "add", home + "no-such-page", env=env, check=False)
    assert missing.returncode != 0 and "HTTP 404" in missing.stderr
    assert len(load_sources(sources_file)) == 1


def test_a_page_without_any_feed_is_refused_with_a_reason(tmp_path):
    import http.server
    import threading

    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html><body><p>No feeds here.</p></body></html>"
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = run_nkwatch("sources", "add", url, "--sources", str(tmp_path / "s.toml"),
                             check=False)  # fmt: skip
        assert result.returncode == 1
        assert "no RSS/Atom feed or sitemap found" in result.stderr
        assert not (tmp_path / "s.toml").exists()
    finally:
        server.shutdown()


def test_check_reports_without_saving(demo_web, tmp_path):
    sitemap = demo_web.outlets["seoul-herald"].base_url + "sitemap-news.xml"
    result = run_nkwatch("sources", "check", sitemap, "--json",
                         "--sources", str(tmp_path / "none.toml"), check=False)  # fmt: skip
    # --sources names a missing file: check still works for a URL
    assert result.returncode == 1 and "cannot read sources file" in result.stderr
    save_sources([], tmp_path / "empty.toml")
    result = run_nkwatch("sources", "check", sitemap, "--json", "--sources",
                         str(tmp_path / "empty.toml"))  # fmt: skip
    found = json.loads(result.stdout)
    assert found["kind"] == "news-sitemap" and found["entries"] >= 8
    assert load_sources(tmp_path / "empty.toml") == []


def crawl(db, sources_file):
    return run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file))


def test_second_crawl_fetches_no_article_and_then_exactly_the_new_one(fresh_demo_web, tmp_path):
    web = fresh_demo_web
    sources_file = save_sources(web.sources(), tmp_path / "sources.toml")
    db = tmp_path / "c.db"
    first = crawl(db, sources_file)
    stored = len(query(db, "SELECT id FROM articles"))
    assert stored == len(web.published_articles())
    assert "0 not modified" in first.stdout
    before = len(web.article_requests())

    second = crawl(db, sources_file)
    assert len(web.article_requests()) == before, "an unchanged web was re-downloaded"
    assert "failures:            0" in second.stdout, "skipping stored articles is no failure"
    feeds = sum(1 for s in web.sources() if s.kind in ("rss", "atom", "news-sitemap"))
    assert re.search(rf"{feeds} not modified", second.stdout), second.stdout
    assert len(query(db, "SELECT id FROM articles")) == stored

    third = crawl(db, sources_file)
    assert re.search(rf"{feeds} not modified", third.stdout), "validators kept across crawls"
    assert not query(db, "SELECT url FROM fetch_failures")
    article = web.publish("seoul-herald/startups-warned-over-fake-remote-developers")
    crawl(db, sources_file)
    new_requests = web.article_requests()[before:]
    assert new_requests == [article.path]
    rows = query(db, "SELECT response_url FROM articles")
    assert len(rows) == stored + 1
    assert web.url_of(article.key) in {r["response_url"] for r in rows}


def test_sitemap_and_section_sources_each_yield_their_articles(demo_web, tmp_path):
    for kind in ("news-sitemap", "section"):
        sources = demo_web.sources(kinds=(kind,))
        assert sources
        sources_file = save_sources(sources, tmp_path / f"{kind}.toml")
        db = tmp_path / f"{kind}.db"
        crawl(db, sources_file)
        by_source = {r["source"]: r["n"] for r in
                     query(db, "SELECT source, count(*) AS n FROM articles GROUP BY source")}  # fmt: skip
        for source in sources:
            assert by_source.get(source.name, 0) >= 2, f"{source.name} yielded {by_source}"


def test_sources_list_shows_health_and_a_broken_source_its_reason(fresh_demo_web, tmp_path):
    web = fresh_demo_web
    sources_file = save_sources(web.sources(kinds=("rss", "atom")), tmp_path / "sources.toml")
    db = tmp_path / "c.db"
    web.feed_failures.add("dongya-times")
    run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file))
    listing = run_nkwatch("sources", "list", "--db", str(db), "--sources", str(sources_file),
                          "--json")  # fmt: skip
    health = {row["name"]: row for row in json.loads(listing.stdout)}
    assert health["dongya-times"]["health"].startswith("last crawl failed: HTTP 500")
    assert health["dongya-times"]["consecutive_failures"] == 1
    assert health["tokyo-report"]["health"] == "ok"
    assert health["tokyo-report"]["articles"] >= 5
    table = run_nkwatch("sources", "list", "--db", str(db), "--sources", str(sources_file))
    assert "HTTP 500" in table.stdout and "tokyo-report" in table.stdout


def test_malformed_empty_and_html_feeds_have_one_line_reasons():
    assert parse_feed(b"", "http://x/").problem == "empty response"
    assert (
        "HTML page"
        in parse_feed(b"<!doctype html><html><body>hi</body></html>", "http://x/").problem
    )
    broken = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item><title>A</title><link>/a/1.html</link></item><item><title>B'
    feed = parse_feed(broken, "http://x.example/feed")
    assert feed.problem is None and feed.warning and "malformed" in feed.warning
    assert feed.entries[0].link == "http://x.example/a/1.html"  # relative link made absolute
    empty = parse_feed(
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>',
        "http://x/",
    )
    assert empty.entries == [] and empty.warning == "feed has no entries"


def test_feed_entries_link_to_the_publisher_and_are_made_absolute():
    rss = b"""<?xml version="1.0"?><rss version="2.0"
      xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0"><channel><title>T</title>
      <item><title>A</title><link>http://feedproxy.example/~r/x/~3/abc/</link>
        <feedburner:origLink>https://news.example/a.html</feedburner:origLink></item>
      <item><title>B</title><guid isPermaLink="true">https://news.example/b.html</guid></item>
      <item><title>C</title><link>
        /c.html</link></item>
    </channel></rss>"""
    links = {e.title: e.link for e in parse_feed(rss, "https://news.example/feed.xml").entries}
    assert links == {"A": "https://news.example/a.html", "B": "https://news.example/b.html",
                     "C": "https://news.example/c.html"}  # fmt: skip


def test_a_json_feed_is_read_like_rss_and_broken_json_named():
    feed = parse_feed(json.dumps({
        "version": "https://jsonfeed.org/version/1.1", "title": "Scam watch",
        "items": [
            {"id": "1", "url": "/2024/05/a.html", "title": "Callers posed as prosecutors",
             "date_published": "2024-05-01T09:00:00+09:00", "authors": [{"name": "Park"}]},
            {"id": "2", "external_url": "https://other.example/b", "title": "IT workers",
             "date_published": 12345, "author": {"name": "Kim"}},
            "not an item", {"id": "3", "title": "no link"},
        ],
    }).encode(), "https://news.example/feed.json", "application/feed+json")  # fmt: skip
    assert feed.problem is None and feed.title == "Scam watch"
    assert [(e.link, e.published_at, e.authors) for e in feed.entries] == [
        ("https://news.example/2024/05/a.html", "2024-05-01T00:00:00Z", ["Park"]),
        ("https://other.example/b", None, ["Kim"]),
    ]
    assert parse_feed(b'{"items": [', "https://news.example/f.json").problem.startswith(
        "not a feed: broken JSON"
    )
    assert "jsonfeed.org" in parse_feed(b'{"a": 1}', "https://news.example/f.json").problem


def test_a_gzipped_sitemap_file_is_read_and_a_broken_one_named():
    xml = (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
           b"<url><loc>https://news.example/a.html</loc></url></urlset>")  # fmt: skip
    sitemap = parse_sitemap(gzip.compress(xml), "https://news.example/sitemap.xml.gz")
    assert [e.loc for e in sitemap.entries] == ["https://news.example/a.html"]
    broken = parse_sitemap(b"\x1f\x8b" + b"\x00" * 40, "https://news.example/s.xml.gz")
    assert broken.problem.startswith("broken gzip")


def test_sitemap_parser_never_expands_entities():
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
              b'<!ENTITY ext SYSTEM "file:///etc/passwd">]>'
              b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
              b"<url><loc>http://x.example/a&lol2;&ext;</loc></url></urlset>")  # fmt: skip
    parsed = parse_sitemap(laughs, "http://x.example/sitemap.xml")
    assert all("root:" not in e.loc and "lollol" not in e.loc for e in parsed.entries)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/feed",
                                 "http://192.168.1.1/", "http://[::1]/", "http://localhost:8080/",
                                 "http://metadata.google.internal/"])  # fmt: skip
def test_private_and_metadata_addresses_are_refused_before_connecting(url):
    crawler = get_crawler()
    crawler._apply_settings()  # builds the stats collector, as a starting crawl does
    guard = AddressGuardMiddleware.from_crawler(crawler)
    with pytest.raises(IgnoreRequest, match="private, loopback or metadata|cloud metadata"):
        guard.process_request(Request(url, meta={"nkwatch_role": "article"}))
    assert crawler.stats.get_value("nkwatch/requests_refused_private") == 1


def test_a_source_may_opt_in_to_private_addresses():
    crawler = get_crawler()
    guard = AddressGuardMiddleware.from_crawler(crawler)
    request = Request("http://127.0.0.1:8000/a.html", meta={"nkwatch_allow_private": True})
    assert guard.process_request(request) is None
    assert guard.process_request(Request("http://93.184.215.14/a.html")) is None


def test_sources_file_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(SourcesError, match="bad.toml: not valid TOML"):
        parse_sources("[[source]\nname=", "bad.toml")
    with pytest.raises(SourcesError, match="kind 'blog'"):
        parse_sources('[[source]]\nname = "a"\nurl = "http://a.example/"\nkind = "blog"', "s.toml")
    with pytest.raises(SourcesError, match="not an http"):
        parse_sources('[[source]]\nname = "a"\nurl = "javascript:alert(1)"', "s.toml")
    assert len(load_sources()) >= 12  # the shipped list is valid
    shipped = {s.language for s in load_sources()}
    assert {"en", "ko", "ja"} <= shipped
    assert Source(name="ok-name", url="https://a.example/").validate() is None


def test_a_failed_article_is_retried_next_crawl_and_given_up_after_three(fresh_demo_web, tmp_path):
    web = fresh_demo_web
    sources_file = save_sources(web.sources(kinds=("atom",)), tmp_path / "sources.toml")
    db = tmp_path / "c.db"
    key = "tokyo-report/typhoon-15-approaches-kanto"
    web.gone.add(key)
    path = web.article(key).path
    for _ in range(3):
        crawl(db, sources_file)
        # the feed is never answered 304 while one of its entries keeps failing
        assert not query(db, "SELECT etag FROM sources_state WHERE etag IS NOT NULL")
    crawl(db, sources_file)
    asked = [p for p in web.article_requests() if p == path]
    assert len(asked) == 3, "retried while failing, then given up after three 4xx answers"
