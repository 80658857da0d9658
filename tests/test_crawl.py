"""The crawl end to end: the demo web over loopback HTTP, real child-process crawls, real SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import query, run_nkwatch

REPO = Path(__file__).resolve().parent.parent


def feed_article_urls(web) -> set[str]:
    """Every article URL the demo web's feeds list (what a full crawl must store)."""
    return {web.url_of(a.key) for a in web.published_articles()}


def test_demo_command_crawls_everything_and_summarises(tmp_path):
    db = tmp_path / "demo.db"
    result = run_nkwatch("demo", "--db", str(db))
    assert "Demo crawl finished" in result.stdout
    assert str(db) in result.stdout
    assert "articles stored:" in result.stdout and "failures:            0" in result.stdout
    rows = query(db, "SELECT response_url, status FROM articles")
    assert len(rows) >= 40
    assert all(row["status"] in ("ok", "offtopic") for row in rows)
    assert len({row["response_url"] for row in rows}) == len(rows)


def test_every_feed_article_is_stored_once(demo_web, demo_corpus):
    stored = [
        row["response_url"] for row in query(demo_corpus, "SELECT response_url FROM articles")
    ]
    assert sorted(stored) == sorted(set(stored)), "an article was stored twice"
    assert set(stored) == feed_article_urls(demo_web)


def stored_article(web, db, key):
    rows = query(db, "SELECT * FROM articles WHERE response_url = ?", [web.url_of(key)])
    assert rows, f"{key} was not stored"
    return rows[0]


def test_content_farm_copy_is_stored_without_its_chrome(demo_web, demo_corpus):
    text = stored_article(
        demo_web, demo_corpus, "wuhan-lighting/phone-scams-spread-in-north-korea"
    )["text"]
    for chrome in (
        "全国咨询热线",
        "020-123456789",
        "新闻中心",
        "来源",
        "更新时间",
        "Copyright",
        "sitemap",
    ):
        assert chrome not in text
    assert text.count("Kim Yo-jong is seen with a mobile phone") == 1
    assert "<strong>" not in text
    assert "With over 600,000 mobile phone users, phone scams are spreading in North Korea." in text


def test_reader_comments_are_kept_apart_from_the_story(demo_web, demo_corpus):
    row = stored_article(
        demo_web,
        demo_corpus,
        "tokyo-report/police-refer-two-men-over-north-korean-it-worker-scheme",
    )
    assert "crowdsourcing website" in row["text"]
    for comment in ("gullible", "due diligence", "sensationalism", "Awareness is key"):
        assert comment not in row["text"]
        assert comment in row["comments"]


def test_radio_story_chrome_lines_are_dropped(demo_web, demo_corpus):
    row = stored_article(
        demo_web, demo_corpus, "free-asia-radio/north-korea-takes-aim-at-citizens-cell-phone-links"
    )
    for chrome in ("Email story", "Print story", "View Full Site", "Comment on this story",
                   "More Listening Options"):  # fmt: skip
        assert chrome not in row["text"]
    assert row["text"].startswith("North Koreans")
    assert row["title"] == "North Korea Takes Aim at Citizens' Cell-Phone Links to South Korea"
    assert json.loads(row["authors"]) == ["Jieun Kim"]


def test_korean_japanese_and_chinese_pages_are_correct_unicode(demo_web, demo_corpus):
    titles = texts = 0
    for article in demo_web.published_articles():
        if article.language not in ("ko", "ja", "zh") or article.body_html:
            continue
        row = stored_article(demo_web, demo_corpus, article.key)
        assert row["title"] == article.title
        assert row["language"] == article.language
        titles += 1
        if row["status"] == "ok":  # off-topic articles keep their title, not their text
            assert article.paragraphs[0][:20] in row["text"], f"mojibake or loss in {article.key}"
            texts += 1
    charsets = {a.charset for a in demo_web.published_articles()}
    assert {"euc-kr", "shift_jis"} <= charsets
    assert titles >= 20 and texts >= 8


def test_metadata_is_stored(demo_web, demo_corpus):
    row = stored_article(demo_web, demo_corpus, "seoul-herald/phone-scams-spread-in-north-korea")
    assert row["published_at"] == "2024-09-17T03:52:55Z"
    assert row["published_local"] == "2024-09-17T12:52:55+09:00"  # as the Seoul page wrote it
    assert json.loads(row["authors"]) == ["Yi Whan-woo"]
    assert row["language"] == "en"
    assert row["site_name"] == "The Seoul Herald"
    assert row["canonical_url"].endswith(
        "/north-korea/2024/09/phone-scams-spread-in-north-korea.html"
    )
    assert row["content_hash"] and row["http_status"] == 200


def test_broken_entries_are_counted_and_the_crawl_goes_on(fresh_demo_web, tmp_path):
    web = fresh_demo_web
    web.gone.add("seoul-herald/north-korea-fires-two-ballistic-missiles")  # listed, but 404
    sources = web.sources()
    from crawler.sources import Source, save_sources

    sources.append(Source(name="not-a-feed", url=web.outlets["tokyo-report"].base_url,
                          kind="rss", allow_private=True))  # fmt: skip
    sources_file = save_sources(sources, tmp_path / "sources.toml")
    db = tmp_path / "c.db"
    result = run_nkwatch("crawl", "--db", str(db), "--sources", str(sources_file))
    assert "HTTP 404" in result.stderr and "north-korea-fires-two" in result.stderr
    assert "not-a-feed" in result.stderr and "HTML page, not a feed" in result.stderr
    assert "1 failed" in result.stdout
    stored = {r["response_url"] for r in query(db, "SELECT response_url FROM articles")}
    assert len(stored) == len(feed_article_urls(web)) - 1


def test_scrapy_crawl_feeds_works_from_the_repository_root(demo_sources, tmp_path):
    db = tmp_path / "scrapy.db"
    env = {**os.environ, "NKWATCH_DB": str(db), "NKWATCH_SOURCES": str(demo_sources)}
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "feeds", "-s", "LOG_LEVEL=WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(query(db, "SELECT id FROM articles")) >= 40


def test_every_command_has_help():
    from click.testing import CliRunner

    from crawler.cli import main

    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert command.help or command.short_help, f"{name} has no help text"


def test_unknown_source_is_a_one_line_error(demo_sources, tmp_path):
    result = run_nkwatch("crawl", "--db", str(tmp_path / "x.db"), "--sources", str(demo_sources),
                         "--source", "nope", check=False)  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "unknown source 'nope'" in result.stderr


def test_every_command_is_documented_in_the_readme():
    from crawler.cli import main

    readme = (REPO / "README.md").read_text("utf-8")
    missing = []
    for name, command in main.commands.items():
        subcommands = getattr(command, "commands", {}) or {"": None}
        for sub in subcommands:
            usage = f"nkwatch {name} {sub}".strip()
            if f"`{usage}" not in readme:
                missing.append(usage)
    assert not missing, f"commands missing from README.md: {missing}"


def test_a_crawl_without_worker_processes_stores_the_same_corpus(demo_web, demo_sources,
                                                                  demo_corpus, tmp_path):  # fmt: skip
    """``EXTRACT_WORKERS=0`` runs each page's CPU work inline: same verdicts, same stories."""
    db = tmp_path / "inline.db"
    run_nkwatch("crawl", "--db", str(db), "--sources", str(demo_sources),
                "--set", "EXTRACT_WORKERS=0")  # fmt: skip
    sql = ("SELECT response_url, status, relevant, content_hash IS NOT NULL AND content_hash != '' "
           "AS hashed FROM articles ORDER BY response_url")  # fmt: skip
    assert [tuple(r) for r in query(db, sql)] == [tuple(r) for r in query(demo_corpus, sql)]
    stories = "SELECT count(*) FROM stories"
    assert query(db, stories)[0][0] == query(demo_corpus, stories)[0][0]
    raw = "SELECT count(*) FROM raw_pages WHERE length(html_packed) > 100"
    assert query(db, raw)[0][0] == query(db, "SELECT count(*) FROM articles")[0][0]
