"""Deduplication: one story per distinct article, every copy a sighting, the original in front.

Unit tests write articles into real SQLite files the way the store does (insert, then
``assign_story`` in the same transaction); the end-to-end tests read the demo crawl.
"""

from __future__ import annotations

import json

import pytest

from crawler.demo.server import load_articles, load_outlets
from crawler.items import ArticleItem
from crawler.urls import url_key
from pipelines.corpus import open_corpus
from pipelines.dedupe import DedupePipeline, _probe_sql, assign_story, get_story, shingle
from pipelines.store import ARTICLE_COLUMNS, INSERT_ARTICLE
from tests.conftest import query, run_nkwatch

DEMO = {a.key: a for a in load_articles(load_outlets())}
SCAMS = "\n".join(DEMO["seoul-herald/phone-scams-spread-in-north-korea"].paragraphs)
LAPTOPS = "\n".join(DEMO["seoul-herald/laptop-farm-facilitator-sentenced"].paragraphs)
DEFECTORS = "\n".join(DEMO["seoul-herald/defectors-hit-by-fake-security-agent-calls"].paragraphs)
IT_ZH = DEMO["dongya-times/chaoxian-it-renyuan-maoyong-shenfen-zhongbao-jiedan"].paragraphs
FARMS_ZH = "\n".join(DEMO["dongya-times/meiguo-chachu-bijiben-diannao-nongchang"].paragraphs)
NPA_JA = DEMO["tokyo-report/npa-warns-firms-over-north-korean-it-workers"].paragraphs


def make_item(url: str, text: str, **fields) -> ArticleItem:
    """An extracted article as the store receives it (before the dedupe pipeline)."""
    item = ArticleItem(
        url=url_key(url), response_url=url, source=fields.pop("source", "outlet"),
        fetched_at="2025-01-01T00:00:00Z", http_status=200,
        source_trust=fields.pop("trust", 1.0),
    )  # fmt: skip
    item.text = text
    item.title = fields.pop("title", text.splitlines()[0][:60])
    item.published_at = fields.pop("published_at", "2024-09-17T03:52:55Z")
    item.authors = list(fields.pop("authors", ["Staff Writer"]))
    item.canonical_url = fields.pop("canonical", url)
    assert not fields, fields
    return item


def store(db, item: ArticleItem) -> tuple[int, int, bool]:
    """What the crawl does with one article: dedupe pipeline, then the store's insert + assign."""
    DedupePipeline().process_item(item)
    row = {column: getattr(item, column, None) for column in ARTICLE_COLUMNS}
    row.update(status="ok", authors=json.dumps(item.authors), flags="[]", relevant=1)
    with db.atomic():
        article_id = db.execute(INSERT_ARTICLE, [row[c] for c in ARTICLE_COLUMNS]).lastrowid
        story_id, is_new = assign_story(db, article_id, item)
    return article_id, story_id, is_new


@pytest.fixture()
def db(tmp_path):
    corpus = open_corpus(tmp_path / "c.db")
    yield corpus
    corpus.close()


def story_row(db, story_id: int) -> dict:
    return next(db.query("SELECT * FROM stories WHERE id = ?", [story_id]))


# --- exact and near copies ------------------------------------------------------------------


def test_the_same_text_at_another_url_is_a_second_sighting(db):
    original, story, new = store(db, make_item("https://herald.example/a.html", SCAMS))
    copy, story2, new2 = store(db, make_item("https://mirror.example/b.html", SCAMS + "\n"))
    assert (new, new2) == (True, False)
    assert story2 == story
    row = story_row(db, story)
    assert (row["sightings"], row["sites"]) == (2, 2)
    assert get_story(db, story)["sightings_list"][1]["matched_by"] == "exact"


def test_a_copy_under_other_chrome_with_a_dropped_paragraph_joins_the_story(db):
    _, story, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    paragraphs = SCAMS.splitlines()
    del paragraphs[6]
    copy = "\n".join(
        ["Share this article", "Source: The Seoul Herald"] + paragraphs
        + ["Copyright Wuhan Lighting Co. Contact us for LED products."]
    )  # fmt: skip
    _, story2, new = store(db, make_item("https://farm.example/news/1.html", copy, trust=0.2))
    assert (story2, new) == (story, False)


def test_a_copy_with_a_changed_headline_and_an_added_paragraph_joins_the_story(db):
    _, story, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    paragraphs = SCAMS.splitlines()
    paragraphs.insert(4, "Analysts in Seoul said the trend was likely to continue next year.")
    copy = "\n".join(["North Korea sees wave of phone fraud as handsets spread"] + paragraphs)
    _, story2, _ = store(db, make_item("https://other.example/x", copy, title="Phone fraud"))
    assert story2 == story


def test_a_copy_truncated_to_the_lead_joins_the_story(db):
    _, story, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    lead = "\n".join(SCAMS.splitlines()[:4] + ["Read more at the Seoul Herald"])
    assert 40 <= len(lead.split()) < len(SCAMS.split()) / 3
    _, story2, _ = store(db, make_item("https://aggregator.example/item/9", lead))
    assert story2 == story


def test_unrelated_articles_on_the_same_subject_stay_separate_stories(db):
    stories = {
        store(db, make_item(f"https://herald.example/{n}.html", text))[1]
        for n, text in enumerate([SCAMS, LAPTOPS, DEFECTORS, "\n".join(IT_ZH), FARMS_ZH])
    }
    assert len(stories) == 5
    assert db.execute("SELECT COUNT(*) FROM stories").fetchone()[0] == 5


# --- scripts without spaces ----------------------------------------------------------------


def test_chinese_and_japanese_are_shingled_by_characters():
    assert shingle("\n".join(IT_ZH)).mode == "chars"
    assert shingle("\n".join(NPA_JA)).mode == "chars"
    assert shingle(SCAMS).mode == "words"
    korean = "\n".join(DEMO["free-asia-radio/bukhan-sonjeonhwa-geomyeol-ganghwa"].paragraphs)
    assert shingle(korean).mode == "words"  # Hangul is written with spaces


def test_a_chinese_copy_joins_and_a_chinese_article_on_the_same_subject_does_not(db):
    _, story, _ = store(db, make_item("https://dongya.example/it.html", "\n".join(IT_ZH)))
    copy = "\n".join(IT_ZH[:3] + IT_ZH[4:] + ["欢迎咨询本厂LED产品。"])
    _, copy_story, _ = store(db, make_item("https://wuhan.example/news/7.html", copy, trust=0.2))
    _, other_story, _ = store(db, make_item("https://dongya.example/farms.html", FARMS_ZH))
    assert copy_story == story
    assert other_story != story


def test_a_japanese_copy_under_other_chrome_joins_the_story(db):
    _, story, _ = store(db, make_item("https://tokyo.example/npa.html", "\n".join(NPA_JA)))
    copy = "\n".join(["この記事をシェアする"] + NPA_JA + ["無断転載を禁じます"])
    assert store(db, make_item("https://copy.example/1", copy))[1] == story


# --- bad input ------------------------------------------------------------------------------


def test_headline_only_pages_merge_only_when_identical(db):
    one = "North Korea fires two short-range ballistic missiles into the East Sea"
    two = "North Korea fires two long-range ballistic missiles into the East Sea"
    _, first, _ = store(db, make_item("https://a.example/1", one))
    _, second, _ = store(db, make_item("https://b.example/2", two))
    _, third, _ = store(db, make_item("https://c.example/3", one))
    assert second != first
    assert third == first  # the exact hash still applies to short texts


def test_pages_that_are_mostly_one_quote_are_not_merged_on_the_quote(db):
    statement = '"' + " ".join(SCAMS.splitlines()[1:5]) + '"'
    one = (
        f"The ministry issued the following statement on Monday.\n{statement}\nIt gave no details."
    )
    two = f"Officials in Seoul reacted to a foreign ministry notice.\n{statement}\nMore soon."
    _, first, _ = store(db, make_item("https://a.example/q1", one))
    _, second, _ = store(db, make_item("https://b.example/q2", two))
    assert first != second
    _, third, _ = store(db, make_item("https://c.example/q3", one))
    assert third == first  # an identical copy of such a page is still one story


# --- the representative ----------------------------------------------------------------------


def test_the_original_represents_the_story_even_when_a_content_farm_copy_came_first(db):
    farm_id, story, _ = store(
        db, make_item("https://farm.example/1", "Share\n" + SCAMS, trust=0.2, authors=[])
    )
    original_id, story2, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    assert story2 == story
    row = story_row(db, story)
    assert row["representative_id"] == original_id != farm_id


def test_a_backdated_content_farm_copy_never_represents_the_outlet_it_copied(db):
    original_id, story, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    store(db, make_item("https://farm.example/1", SCAMS + "\nLED lamps", trust=0.2,
                        published_at="2024-09-16T00:00:00Z", authors=[]))  # fmt: skip
    row = story_row(db, story)
    assert row["representative_id"] == original_id
    assert row["first_published_at"] == "2024-09-16T00:00:00Z"  # dates still count as seen


def test_earliest_publication_wins_then_canonical_and_byline_break_ties(db):
    later_id, story, _ = store(db, make_item("https://partner.example/a", SCAMS + "\nUpdated",
                                             published_at="2024-09-18T08:00:00Z"))  # fmt: skip
    earlier_id, _, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    assert story_row(db, story)["representative_id"] == earlier_id != later_id
    # same day: a page whose rel=canonical points elsewhere, and one without a byline, lose
    _, other, _ = store(db, make_item("https://syndicate.example/a", LAPTOPS,
                                      canonical="https://herald.example/laptops.html"))  # fmt: skip
    unsigned_id, _, _ = store(db, make_item("https://x.example/b", LAPTOPS + "\nMore", authors=[]))
    assert story_row(db, other)["representative_id"] == unsigned_id
    signed_id, _, _ = store(db, make_item("https://y.example/c", LAPTOPS + "\nEnd"))
    assert story_row(db, other)["representative_id"] == signed_id


def test_republishing_on_the_same_site_is_a_sighting_but_not_a_new_site(db):
    _, story, _ = store(db, make_item("https://herald.example/nk/a.html", SCAMS))
    store(db, make_item("https://www.herald.example/national/a.html", SCAMS + "\nMore"))
    store(db, make_item("https://farm.example/a.html", SCAMS + "\nLED", trust=0.2))
    row = story_row(db, story)
    assert (row["sightings"], row["sites"]) == (3, 2)


# --- URLs --------------------------------------------------------------------------------------


def test_rel_canonical_is_stored_as_a_url_key():
    item = make_item("http://127.0.0.1:8080/a.html?utm_source=x", SCAMS,
                     canonical="/a.html?utm_medium=feed#top")  # fmt: skip
    DedupePipeline().process_item(item)
    assert item.canonical_url == "https://127.0.0.1:8080/a.html" == item.url


def test_a_page_whose_canonical_names_a_stored_article_joins_its_story(db):
    original, story, _ = store(db, make_item("https://herald.example/a.html", SCAMS))
    # a partner edition: half the text, no shared lead, but it names the original as canonical
    partial = "\n".join(SCAMS.splitlines()[5:] + ["Reprinted with permission."])
    partner = make_item("https://partner.example/p/1", partial,
                        canonical="https://herald.example/a.html?utm_source=partner")  # fmt: skip
    assert store(db, partner)[1] == story
    # a template bug (every page canonical to the home page) proves nothing
    buggy = make_item("https://herald.example/b.html", LAPTOPS, canonical="https://herald.example/")
    assert store(db, buggy)[1] != story


# --- the index ----------------------------------------------------------------------------------


def test_the_index_persists_across_processes(tmp_path):
    path = tmp_path / "c.db"
    first = open_corpus(path)
    _, story, _ = store(first, make_item("https://herald.example/a.html", SCAMS))
    first.close()
    again = open_corpus(path)  # as a later crawl would: nothing is rebuilt in memory
    paragraphs = SCAMS.splitlines()
    _, story2, _ = store(again, make_item("https://farm.example/1", "\n".join(paragraphs[1:])))
    assert story2 == story
    buckets = again.execute("SELECT COUNT(DISTINCT article_id) FROM dedupe_buckets").fetchone()
    assert buckets[0] == 2
    again.close()


def test_finding_candidates_is_an_index_lookup_not_a_scan(db):
    plan = " ".join(str(row[-1]) for row in db.execute("EXPLAIN QUERY PLAN " + _probe_sql(),
                                                       [0] * _probe_sql().count("?")))  # fmt: skip
    assert "SCAN dedupe_buckets" not in plan
    assert "SEARCH dedupe_buckets USING PRIMARY KEY (band=? AND bucket=?)" in plan


# --- the demo web, end to end --------------------------------------------------------------------


def _article(db_path, demo_web, key: str):
    rows = query(db_path, "SELECT * FROM articles WHERE url = ?", [url_key(demo_web.url_of(key))])
    assert len(rows) == 1, f"{key} stored {len(rows)} times"
    return rows[0]


def test_demo_lighting_factory_copy_is_a_sighting_of_the_original(demo_corpus, demo_web):
    original = _article(demo_corpus, demo_web, "seoul-herald/phone-scams-spread-in-north-korea")
    copy = _article(demo_corpus, demo_web, "wuhan-lighting/phone-scams-spread-in-north-korea")
    assert copy["story_id"] == original["story_id"] is not None
    story = query(demo_corpus, "SELECT * FROM stories WHERE id = ?", [original["story_id"]])[0]
    assert story["representative_id"] == original["id"]
    assert (story["sightings"], story["sites"]) == (2, 2)


def test_demo_chinese_near_copy_joins_the_dongya_times_story(demo_corpus, demo_web):
    original = _article(
        demo_corpus, demo_web, "dongya-times/chaoxian-it-renyuan-maoyong-shenfen-zhongbao-jiedan"
    )
    copy = _article(
        demo_corpus, demo_web,
        "wuhan-lighting/chaoxian-it-renyuan-maochong-waiguoren-jiedan-zhuan-waihui",
    )  # fmt: skip
    assert copy["story_id"] == original["story_id"]
    story = query(demo_corpus, "SELECT * FROM stories WHERE id = ?", [original["story_id"]])[0]
    assert story["representative_id"] == original["id"]


def test_demo_unrelated_articles_are_not_merged(demo_corpus, demo_web):
    articles = query(demo_corpus, "SELECT id, url, story_id FROM articles WHERE status = 'ok'")
    stories = {row["story_id"] for row in articles}
    copies = [a for a in demo_web.articles if a.copy_of and a.key in demo_web.published]
    assert len(stories) == len(articles) - len(copies)
    assert None not in stories
    merged = query(demo_corpus, "SELECT id FROM stories WHERE sightings > 1")
    assert len(merged) == len(copies)


def test_demo_articles_from_two_feeds_and_tracking_links_are_stored_once(demo_corpus, demo_web):
    feed_urls = [s.url for s in demo_web.sources() if s.name.startswith("seoul-herald")]
    assert any(u.endswith("/rss/north-korea.xml") for u in feed_urls)
    listed_twice = [
        a.key for a in demo_web.published_articles("seoul-herald") if a.section == "north-korea"
    ]
    assert listed_twice
    for key in listed_twice:
        path = demo_web.article(key).path
        rows = query(demo_corpus, "SELECT url FROM articles WHERE response_url LIKE ?",
                     [f"%{path}%"])  # fmt: skip
        assert len(rows) == 1, f"{key} stored {len(rows)} times"
        assert "utm_" not in rows[0]["url"]


def test_demo_story_commands_show_the_story_and_its_sightings(demo_corpus, demo_web):
    listing = json.loads(run_nkwatch("stories", "--db", str(demo_corpus), "--json",
                                     "--sort", "sightings", "--limit", "5").stdout)  # fmt: skip
    assert [s["sightings"] for s in listing[:2]] == [2, 2]
    original = _article(demo_corpus, demo_web, "seoul-herald/phone-scams-spread-in-north-korea")
    shown = run_nkwatch("story", str(original["story_id"]), "--db", str(demo_corpus)).stdout
    assert "2 sighting(s) on 2 site(s)" in shown
    assert f"* #{original['id']} " in shown
    assert "wuhan-lighting" in shown
    missing = run_nkwatch("story", "999999", "--db", str(demo_corpus), check=False)
    assert missing.returncode != 0
    assert "no story 999999" in missing.stderr and "Traceback" not in missing.stderr
