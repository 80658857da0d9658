"""Extraction: the golden set, encodings, bad input, dates, boilerplate learning, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from crawler.items import ArticleItem
from pipelines.boilerplate import BUCKET_PAGES, BoilerplatePipeline, SiteBoilerplates
from pipelines.dedupe import Signature, text_signature
from pipelines.extract import (
    EXTRACTOR_VERSION,
    apply_extraction,
    extract_article,
    parse_page,
)
from pipelines.metadata import choose_published_at
from tests.conftest import query, run_nkwatch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_extraction", ROOT / "bench" / "extraction.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def golden():
    pages = bench.load_golden()
    return pages, bench.nkwatch_texts(pages)


def page(golden, name):
    pages, texts = golden
    index = next(i for i, p in enumerate(pages) if p["name"] == name)
    return pages[index], texts[index]


def test_golden_set_is_large_enough(golden):
    pages, _ = golden
    assert len(pages) >= 40
    assert {p["language"] for p in pages} >= {"en", "ko", "ja", "zh"}


def test_golden_f1_beats_plain_trafilatura_and_leaves_no_chrome(golden):
    pages, texts = golden
    expected = [p["text"] for p in pages]
    ours = bench.word_scores(texts, expected)
    plain = bench.word_scores([bench.plain_text(p) for p in pages], expected)
    assert ours[2] > plain[2], (ours, plain)
    assert bench.chrome_leaks(texts, pages) == []


EDGE_PAGES = [
    "<!DOCTYPE html/>\n<html><body><p>a doctype lxml chokes on</p><p>b</p></body></html>",
    "<html/>\n<body><p>a self-closing html tag</p></body>",
    "<p>a fragment, not a page</p>",
    "<?xml version='1.0' encoding='utf-8'?><html><body><p>declares its encoding</p></body></html>",
    "<html><body>control\x00characters\x0bin\x1ftext</body></html>",
    "<html><body>non-characters \ufffe and \uffff</body></html>",
    "<html><body>a lone surrogate \ud800 from a broken decoder</body></html>",
    "no markup at all",
]


def test_page_trees_are_the_ones_trafilatura_builds(golden):
    """``parse_page`` skips a slow step of trafilatura's ``load_html`` when it has nothing to do:
    the tree must be the very same, or extraction would silently change."""
    from lxml import etree
    from trafilatura.utils import load_html

    from pipelines.decode import decode_html

    pages = [decode_html(p["body"], p["encoding"]) for p in golden[0]] + EDGE_PAGES
    for html in pages:
        ours, theirs = parse_page(html), load_html(html)
        assert (ours is None) == (theirs is None), html[:80]
        if ours is not None:
            assert etree.tostring(ours) == etree.tostring(theirs), html[:80]


def test_golden_metadata(golden):
    pages, _ = golden
    for p in pages:
        article = extract_article(p["body"], p["url"], encoding=p["encoding"]).article
        assert article is not None, p["name"]
        got = (article.title, article.published_at, article.language, article.authors)
        assert got == (p["title"], p["published_at"], p["language"], p["authors"]), p["name"]


@pytest.mark.parametrize("name", [
    "own-korea-watch-0",  # EUC-KR, declared
    "own-korea-watch-2",  # EUC-KR, no declaration anywhere
    "own-korea-watch-3",  # EUC-KR labelled UTF-8 in meta and header
    "own-toyo-news-0",  # Shift_JIS, declared
    "own-toyo-news-2",  # Shift_JIS labelled UTF-8
    "own-toyo-news-3",  # Shift_JIS labelled ISO-8859-1
    "own-dongbeiya-1",  # GBK labelled GB2312
    "own-harbor-daily-4",  # UTF-8 labelled ISO-8859-1
    "demo-free-asia-radio-bowiwon-saching-jeonhwa-sagi-cheongjin",  # demo EUC-KR page
])  # fmt: skip
def test_legacy_and_misdeclared_encodings_decode_right(golden, name):
    expected, text = page(golden, name)
    first_paragraph = expected["text"].splitlines()[0]
    assert first_paragraph in text
    assert "\ufffd" not in text


@pytest.mark.parametrize("meta", ["", '<meta charset="euc-kr">'])
def test_a_korean_page_under_a_latin_1_server_default_decodes_as_korean(meta):
    """Servers still send Apache's old default, charset=ISO-8859-1, for EUC-KR pages; Latin-1
    decodes any bytes, so the label alone would give mojibake."""
    sentence = "북한 당국이 휴대전화 사용자를 단속하고 있다고 소식통이 전했다. "
    body = f"<html><head>{meta}</head><body><article><p>{sentence * 12}</p></article></body></html>"
    for declared in ("iso-8859-1", "windows-1252"):
        article = extract_article(body.encode("cp949"), "http://x.example/a", encoding=declared).article
        assert article is not None and sentence.strip() in article.text, declared
    french = "Les élèves sont allés à l'école près du château, où l'été était très chaud. " * 12
    page = f"<html><body><article><p>{french}</p></article></body></html>".encode("cp1252")
    assert "élèves" in extract_article(page, "http://x.example/f", encoding="iso-8859-1").article.text


def test_comment_chrome_is_not_a_comment(golden):
    pages, _ = golden
    for p in pages:
        article = extract_article(p["body"], p["url"], encoding=p["encoding"]).article
        if not p["comments"]:
            assert article.comments == "", p["name"]


def test_seed_000_copy_keeps_the_story_and_drops_the_factory_site(golden):
    _, text = page(golden, "demo-wuhan-lighting-phone-scams-spread-in-north-korea")
    for chrome in ["全国咨询热线", "新闻中心", "来源", "Copyright", "sitemap"]:
        assert chrome not in text
    assert text.count("Kim Yo-jong is seen with a mobile phone") == 1
    assert "<strong>" not in text


def test_seed_002_comments_kept_apart_from_the_body(golden):
    expected, text = page(
        golden, "demo-tokyo-report-police-refer-two-men-over-north-korean-it-worker-scheme"
    )
    article = extract_article(expected["body"], expected["url"]).article
    assert len(expected["comments"]) == 11
    for comment in expected["comments"]:
        assert comment not in text
        assert comment in article.comments


def test_seed_004_share_tools_and_site_links_are_gone(golden):
    _, text = page(
        golden, "demo-free-asia-radio-north-korea-takes-aim-at-citizens-cell-phone-links"
    )
    for chrome in ["Email story", "Print story", "View Full Site", "Comment on this story",
                   "More Listening Options"]:  # fmt: skip
        assert chrome not in text
    assert "Reported by Jieun Kim" in text


ARTICLE = (
    "<p>" + "Police said the callers posed as customs officers and asked for money. " * 4 + "</p>"
)


@pytest.mark.parametrize(("body", "reason"), [
    (b"", "empty page"),
    (b"   \n\t ", "empty page"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "binary"),
    (bytes(range(256)) * 50, "binary"),
    (b"<html><body>" + b"x" * (21 * 1024 * 1024) + b"</body></html>", "too large"),
    (b"<html><body><nav><ul>" + b"".join(b"<li><a href='/s%d'>Section %d</a></li>" % (i, i)
     for i in range(80)) + b"</ul></nav></body></html>", ""),
    (b"<<<>>><div<p<<>>>" * 50, ""),
])  # fmt: skip
def test_bad_input_is_a_failed_extraction_with_a_reason(body, reason):
    result = extract_article(body, "https://example.org/page.html")
    assert result.article is None
    assert reason in result.reason


def test_broken_markup_still_gives_clean_text():
    body = f"<html><head><title>x</title><body><div class=story>{ARTICLE}<p>Unclosed <b>bold"
    article = extract_article(body.encode(), "https://example.org/a.html").article
    assert article is not None
    assert "<" not in article.text and "customs officers" in article.text


def test_cross_links_and_calls_to_subscribe_are_dropped_but_story_sentences_stay():
    """Real news pages (the extraction-dev set) put these lines inside the article body."""
    chrome = [
        "Read more: Looted colonial art: Germany to set up new contact office",
        "Lea también: Impiden ingreso a Nicaragua a reportero y camarógrafo",
        "À lire aussi » Ballonnements, lourdeurs... quel est votre profil ?",
        "Subscribe now to our eNATION edition for the full story.",
        "Follow The Gleaner on Twitter and Instagram @JamaicaGleaner.",
        "Never miss the latest news by signing up to our newsletter today!",
        "To view the full story, please subscribe to The Haitian Times.",
        "Photo : YONHAP News",
        "(Credit: Clayton Aldern / Grist)",
        "Comments are moderated. Please keep them civil and on topic.",
        "ⓒ 연합뉴스, 무단 전재-재배포, AI 학습 및 활용 금지",
        "Copyright 2023 Sunbeam Television Corp. All rights reserved.",
        "記事の無断転載を禁じます。",
    ]
    kept = [
        "The caller told her to subscribe to a fake investment newsletter and wire the money.",
        "Photo evidence: investigators said the images showed the call centre in Dandong.",
        "Copyright law does not protect the scripts the callers read from, experts said.",
        "Related: the police say the same group ran a second call centre in Shenyang, where "
        + "more than forty people answered phones in shifts around the clock for months, "
        + "reading from scripts that named real prosecutors and real case numbers to make "
        + "victims believe the threats were genuine and urgent.",
    ]
    paragraphs = [ARTICLE, *(f"<p>{line}</p>" for line in chrome + kept)]
    body = f"<html><body><article>{''.join(paragraphs)}</article></body></html>"
    article = extract_article(body.encode(), "https://example.org/a.html").article
    assert article is not None and "customs officers" in article.text
    lines = article.text.splitlines()
    for line in chrome:
        assert line not in lines
    for line in kept:
        assert line in lines


def test_dates_cross_checked():
    now = datetime(2025, 1, 10, tzinfo=UTC)
    chosen, flags = choose_published_at("2026-01-01T00:00:00Z", feed_at="2025-01-09T08:00:00Z",
                                        now=now)  # fmt: skip
    assert chosen == "2025-01-09T08:00:00Z" and "date-in-future" in flags
    chosen, flags = choose_published_at("2025-01-01T00:00:00Z", sitemap_at="2024-12-01T00:00:00Z",
                                        url_date="2024-06", now=now)  # fmt: skip
    assert chosen == "2025-01-01T00:00:00Z"
    assert {"dates-disagree:page-sitemap", "dates-disagree:url"} <= set(flags)
    assert choose_published_at("2024-09-30T23:00:00Z", url_date="2024-10", now=now)[1] == []


def test_apply_extraction_flags_a_page_dated_after_its_feed_entry(golden):
    expected, _ = page(golden, "own-harbor-daily-0")
    item = _item(expected)
    item.hints = {"published_at": "2021-01-01T00:00:00Z"}
    apply_extraction(item, extract_article(expected["body"], expected["url"]))
    assert item.published_at == expected["published_at"]
    assert "dates-disagree:page-feed" in item.flags


def test_boilerplate_learning_is_order_free_and_spares_article_lines(golden):
    pages = [p for p in golden[0] if p["site"] == "harbor-daily"]
    results = [extract_article(p["body"], p["url"]).article for p in pages]
    cleaned = []
    for order in (results, results[::-1]):
        boilerplates = SiteBoilerplates()
        for article in order:
            boilerplates.site(pages[0]["url"]).observe(article.text, article.comments)
        cleaned.append([boilerplates.clean(pages[0]["url"], a.text)[0] for a in results])
    assert cleaned[0] == cleaned[1]
    for p, text in zip(pages, cleaned[0], strict=True):
        assert text.splitlines() == p["text"].splitlines()
    lone = SiteBoilerplates()
    lone.site("example.org").observe(results[0].text)
    assert lone.site("example.org").learned() == set()


def test_boilerplate_counts_stay_bounded_on_a_site_with_many_pages():
    """Captions and subheads differ on every page: a site's counts must not grow with each page
    crawled (weeks of a busy site), and its furniture must still be learned and removed."""
    site = SiteBoilerplates().site("busy.example")
    furniture = ["Call our hotline 400-123-4567", "Copyright Busy Example News Group"]
    for page in range(3000):
        own = [f"Caption {page}-{k}: a photo of the scene" for k in range(20)]
        site.observe("\n".join([*furniture, *own]))
    assert len(site.line_pages) <= 20 * BUCKET_PAGES + len(furniture)
    assert set(site.examples) == set(site.line_pages)
    story = "The police said the callers posed as prosecutors and asked for cash in person."
    text, removed = site.strip("\n".join([furniture[0], story, story + " Again.", furniture[1]]))
    assert (text, removed) == (f"{story}\n{story} Again.", 2)


def test_boilerplate_pipeline_learns_across_a_crawl_and_remembers(golden, tmp_path):
    pages = [p for p in golden[0] if p["site"] == "korea-watch"]
    db = tmp_path / "corpus.db"
    crawler = get_crawler(settings_dict={"NKWATCH_DB": str(db)})
    pipeline = BoilerplatePipeline.from_crawler(crawler)
    pipeline.open_spider()
    items = []
    for p in pages * 2:  # the second round sees what the first taught
        item = _item(p)
        apply_extraction(item, extract_article(p["body"], p["url"], encoding=p["encoding"]))
        items.append(pipeline.process_item(item))
    pipeline.close_spider()
    furniture = "기사제보 및 보도자료 news@example.kr"  # the site's tip-line, on every page
    assert all("무단전재" not in item.text for item in items)  # copyright lines: by their shape
    for item in items[len(pages) :]:
        assert furniture not in item.text
        assert any(flag.startswith("boilerplate-removed") for flag in item.flags)
    rows = query(db, "SELECT line FROM site_boilerplate WHERE pages_seen >= 4")
    assert furniture in {r["line"] for r in rows}


def test_extract_command_prints_json(golden, tmp_path):
    expected, _ = page(golden, "own-toyo-news-0")
    path = tmp_path / "page.html"
    path.write_bytes(expected["body"])
    result = run_nkwatch("extract", str(path), "--json")
    article = json.loads(result.stdout)
    assert article["title"] == expected["title"]
    assert expected["text"].splitlines()[0] in article["text"]
    failed = run_nkwatch("extract", str(tmp_path / "missing.html"), check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr


def test_reextract_rebuilds_text_scores_and_signatures_without_network(demo_corpus, demo_web, tmp_path):
    copy = tmp_path / "copy.db"
    with sqlite3.connect(demo_corpus) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    old_text = " ".join(f"an older extraction kept chrome line {i} of the page" for i in range(60))
    old_signature = text_signature(old_text)
    with sqlite3.connect(copy) as conn:
        conn.execute(
            "UPDATE articles SET text = 'stale', extractor_version = 'old' WHERE status = 'ok'"
        )
        # what an older extractor left: scores, evidence and buckets of another text
        conn.execute("UPDATE topic_scores SET evidence = '[\"stale\"]'")
        ids = [r[0] for r in conn.execute("SELECT article_id FROM dedupe_signatures")]
        conn.execute("UPDATE dedupe_signatures SET signature = ?", [old_signature])
        conn.executemany("INSERT OR IGNORE INTO dedupe_buckets VALUES (?, ?, ?)",
                         [(band, bucket, i) for i in ids
                          for band, bucket in Signature.from_bytes(old_signature).buckets()])  # fmt: skip
    requests_before = len(demo_web.request_log)
    command = ["nkwatch", "reextract", "--db", str(copy)]
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"]).returncode == 0:
        venv_bin = Path(__import__("sys").executable).parent
        command = ["unshare", "-rn", str(venv_bin / "nkwatch"), *command[1:]]  # no network at all
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    else:
        run_nkwatch(*command[1:])
    assert len(demo_web.request_log) == requests_before
    rows = query(copy, "SELECT text, comments, extractor_version FROM articles WHERE status = 'ok'")
    assert rows and all(r["text"] != "stale" for r in rows)
    assert {r["extractor_version"] for r in rows} == {EXTRACTOR_VERSION}
    assert all(not (r["comments"] or "").startswith(("Comments (0)", "0 Comments")) for r in rows)
    found = query(copy, "SELECT count(*) AS n FROM articles_fts WHERE articles_fts MATCH 'stale'")
    assert found[0]["n"] == 0
    scores = query(copy, "SELECT t.score, t.evidence FROM topic_scores t "
                         "JOIN articles a ON a.id = t.article_id WHERE a.status = 'ok'")  # fmt: skip
    assert scores and all("stale" not in r["evidence"] for r in scores)
    assert query(copy, "SELECT count(*) AS n FROM articles WHERE status = 'ok' AND relevant = 1 "
                       "AND id NOT IN (SELECT article_id FROM topic_scores WHERE passed = 1)"
                 )[0]["n"] == 0  # fmt: skip
    signed = query(copy, "SELECT s.article_id, s.signature, s.matched_by, a.text FROM "
                         "dedupe_signatures s JOIN articles a ON a.id = s.article_id "
                         "WHERE a.status = 'ok'")  # fmt: skip
    assert signed and all(r["signature"] == text_signature(r["text"]) for r in signed)
    for row in signed:
        stored = {(r["band"], r["bucket"]) for r in query(
            copy, "SELECT band, bucket FROM dedupe_buckets WHERE article_id = ?", [row["article_id"]])}  # fmt: skip
        signature = Signature.from_bytes(row["signature"])
        expected = set(signature.buckets()) if signature and row["matched_by"] != "exact" else set()
        assert stored == expected, f"article {row['article_id']} keeps buckets of its old text"
    farm = query(copy, "SELECT text FROM articles WHERE response_url LIKE '%phone-scams-spread%' "
                       "AND text LIKE '%%'")  # fmt: skip
    assert farm and all("全国咨询热线" not in r["text"] for r in farm)
    inline = tmp_path / "inline.db"
    with sqlite3.connect(copy) as source, sqlite3.connect(inline) as target:
        source.backup(target)
    run_nkwatch("reextract", "--db", str(inline), "--workers", "0")
    texts = "SELECT id, text, flags FROM articles ORDER BY id"
    assert [tuple(r) for r in query(inline, texts)] == [tuple(r) for r in query(copy, texts)]


def _item(p) -> ArticleItem:
    return ArticleItem(url=p["url"], response_url=p["url"], source=p["site"],
                       fetched_at="2025-01-01T00:00:00Z", http_status=200, body=p["body"],
                       encoding=p["encoding"])  # fmt: skip
