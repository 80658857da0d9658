"""Watch topics: the seeds land in their topics, the labeled set holds its figures, the evidence
points at the words, indicators are found (and dates and prices are not), and the CLI shows it."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest
from scrapy.utils.test import get_crawler

from crawler.items import ArticleItem
from pipelines.corpus import open_corpus
from pipelines.relevance import (
    RelevancePipeline,
    TopicsError,
    extract_indicators,
    load_topics,
    parse_topics,
    score_article,
)
from tests.conftest import query, run_nkwatch

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO.parent / "shared" / "seeds"
TOPICS = ("nk-phone-scams", "nk-it-workers", "nk-mobile-phones")


def passed(title: str, text: str) -> set[str]:
    return {s.topic for s in score_article(title, text) if s.passed}


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_relevance", REPO / "bench" / "relevance.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the seeds -------------------------------------------------------------------------------

SEED_TOPICS = {"000": {"nk-phone-scams"}, "002": {"nk-it-workers"}, "004": {"nk-mobile-phones"}}


@pytest.mark.parametrize("number", sorted(SEED_TOPICS))
def test_seed_files_land_in_their_topic(number):
    files = sorted(SEEDS.glob(f"{number}_*.txt")) if SEEDS.is_dir() else []
    if not files:
        pytest.skip(f"seed {number} not found under {SEEDS}")
    text = files[0].read_text(encoding="utf-8")
    first, _, rest = text.strip().partition("\n")
    assert passed(first, rest) == SEED_TOPICS[number]


# The seeds' key facts in our own words, so the check does not need ../shared.
SEED_EQUIVALENTS = {
    "000": (
        "Phone scams spread in North Korea with increased mobile phone users",
        "With more than 600,000 mobile phone users, phone scams are spreading in North Korea, "
        "defectors in Seoul say. Callers impersonate officials of the State Security Department "
        "and threaten wealthy merchants with arrest unless they hand over cash. Victims rarely "
        "question the purported officials. Losses run from $380 to $630 a case.",
    ),
    "002": (
        "Two men referred to prosecutors over North Korean IT worker scheme",
        "Tokyo police referred two Japanese men who gave their personal and financial details to "
        "a person claiming to be North Korean. Investigators suspect a scheme by North Korean IT "
        "workers to earn foreign currency through false identities: someone impersonated the men "
        "to open accounts on a crowdsourcing website and took payments for work.",
    ),
    "004": (
        "North Korea takes aim at citizens' cell-phone links to South Korea",
        "North Koreans use cell phones to call relatives in South Korea more than ever, and "
        "security agents are failing to shut the links down, sources say. Chinese-made phones "
        "with Chinese USIM chips can make international calls near the border, where signals are "
        "not jammed, and agents are hunting users down.",
    ),
}


@pytest.mark.parametrize("number", sorted(SEED_EQUIVALENTS))
def test_seed_stories_land_in_their_topic(number):
    assert passed(*SEED_EQUIVALENTS[number]) == SEED_TOPICS[number]


# --- the labeled set -------------------------------------------------------------------------


def test_labeled_set_reaches_precision_and_recall_of_0_9_per_topic():
    bench = load_bench()
    articles = bench.load_labeled([REPO / "bench" / "data" / "relevance"])
    assert len(articles) >= 80
    assert {a["language"] for a in articles} == {"en", "ko", "ja", "zh"}
    result = bench.evaluate(articles, load_topics())
    for topic in TOPICS:
        precision, recall, _ = bench.figures(result["counts"][topic])
        assert precision >= 0.9 and recall >= 0.9, (topic, precision, recall)


def test_benchmark_prints_figures_per_topic_and_the_seeds(capsys, monkeypatch):
    bench = load_bench()
    monkeypatch.setattr("sys.argv", ["relevance.py"])
    bench.main()
    out = capsys.readouterr().out
    for topic in TOPICS:
        assert topic in out
    assert "precision" in out and "recall" in out and "Seeds" in out


# --- matching ------------------------------------------------------------------------------


def test_evidence_offsets_point_at_the_matched_words():
    title = "Phone scams spread in North Korea"
    text = ("Scammers impersonating security officials call traders in Hyesan.\n"
            "북한에서 보위원을 사칭한 전화 사기가 늘고 있다. 北朝鮮で電話詐欺が横行。")  # fmt: skip
    fields = {"title": title, "text": text}
    scores = score_article(title, text)
    evidence = [e for s in scores for e in s.evidence]
    assert evidence
    for item in evidence:
        assert fields[item["field"]][item["start"] : item["end"]] == item["term"]
        assert item["term"] in item["snippet"]
    terms = {e["term"] for e in evidence}
    assert {"Phone scams", "Scammers", "impersonating", "사칭", "電話詐欺"} <= terms


@pytest.mark.parametrize("word", ["scam", "scams", "scammer", "scammers", "scammed"])
def test_latin_terms_match_inflections(word):
    text = f"North Korean callers {word} traders by phone in Hyesan, posing as security agents."
    scores = {s.topic: s for s in score_article("", text)}
    assert word in {e["term"] for e in scores["nk-phone-scams"].evidence}


def test_latin_terms_need_word_boundaries():
    scores = score_article(
        "", "Pyongyangers? No: the scampi at Hyesan was bad, said a phoneme expert."
    )
    terms = {e["term"].lower() for s in scores for e in s.evidence}
    assert "scam" not in terms and "phone" not in terms and "pyongyang" not in terms


def test_cjk_false_friends_do_not_count():
    # 북한산 the mountain, 朝鲜半岛 the peninsula, 사기 "to buy", 사기 "morale".
    text = ("주말에 북한산에 올랐다. 朝鲜半岛南部天气晴朗。새 스마트폰은 비싸서 사기 어렵다. "
            "군의 사기를 높이기 위해 전화로 격려했다.")  # fmt: skip
    scores = {s.topic: s for s in score_article("", text)}
    assert not any(s.passed for s in scores.values())
    assert scores["nk-phone-scams"].group_scores["north-korea"] == 0
    assert scores["nk-phone-scams"].group_scores["scam"] == 0


def test_full_width_letters_match_and_keep_offsets():
    text = "北朝鮮のＩＴ技術者が偽の身分でクラウドソーシングサイトから受注していた。"
    scores = {s.topic: s for s in score_article("", text)}
    found = {e["term"]: e for e in scores["nk-it-workers"].evidence}
    assert "ＩＴ技術者" in found
    assert text[found["ＩＴ技術者"]["start"] : found["ＩＴ技術者"]["end"]] == "ＩＴ技術者"
    assert scores["nk-it-workers"].passed


@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("Voice phishing losses fall", "Callers posing as prosecutors swindled pensioners in "
         "Seoul out of 28 billion won, regulators said. Banks now delay transfers."),
        ("North Korea fires missile", "North Korea launched a ballistic missile; residents of "
         "Hokkaido received alerts on their mobile phones telling them to take shelter."),
        ("北朝鮮ハッカー、偽の求人で技術者を狙う", "北朝鮮のハッカー集団が採用担当者を装い、"
         "技術者にマルウェア入りの課題を送って暗号資産を盗んだ。"),
        ("삼성, 국내 스마트폰 점유율 70% 돌파", "폴더블폰 인기에 힘입어 삼성전자의 국내 "
         "스마트폰 점유율이 70%를 넘었다. 이동통신 3사는 지원금을 늘렸다."),
    ],
)  # fmt: skip
def test_near_misses_pass_no_topic(title, text):
    assert passed(title, text) == set()


def test_a_topic_yields_to_the_more_specific_one():
    title = "北朝鮮で携帯電話を使った詐欺が増加"
    text = (
        "携帯電話が普及した北朝鮮で、保衛省の職員を名乗る電話詐欺で商人が現金をだまし取られている。"
    )
    scores = {s.topic: s for s in score_article(title, text)}
    assert scores["nk-phone-scams"].passed
    assert not scores["nk-mobile-phones"].passed
    assert "yields to nk-phone-scams" in scores["nk-mobile-phones"].missing


# --- topics files ----------------------------------------------------------------------------

MINIMAL_TOPICS = """
[[topic]]
name = "lighthouses"
threshold = 2
[[topic.group]]
name = "light"
required = true
terms = ["lighthouse*", "등대"]
"""


def test_topics_file_is_found_by_environment_then_local_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NKWATCH_TOPICS", raising=False)
    assert load_topics().names() == list(TOPICS)
    (tmp_path / "topics.toml").write_text(MINIMAL_TOPICS, encoding="utf-8")
    assert load_topics().names() == ["lighthouses"]
    other = tmp_path / "other.toml"
    other.write_text(MINIMAL_TOPICS.replace("lighthouses", "beacons"), encoding="utf-8")
    monkeypatch.setenv("NKWATCH_TOPICS", str(other))
    assert load_topics().names() == ["beacons"]
    assert load_topics(str(tmp_path / "topics.toml")).names() == ["lighthouses"]


def test_bad_topics_files_are_one_line_errors():
    with pytest.raises(TopicsError, match="x.toml: not valid TOML"):
        parse_topics("[[topic]\n", "x.toml")
    with pytest.raises(TopicsError, match="unknown groups"):
        parse_topics(
            MINIMAL_TOPICS.replace("threshold = 2", 'threshold = 2\nnear = [["light", "dark"]]'),
            "x.toml",
        )
    with pytest.raises(TopicsError, match="unknown key 'wieght'"):
        parse_topics(MINIMAL_TOPICS + "wieght = 3\n", "x.toml")


# --- indicators ------------------------------------------------------------------------------

INDICATOR_TEXT = """Investigators listed +1-614-555-0148, +82-10-2345-6789, 010-9876-5432 and
03-1234-5678 as contact numbers, the address Recruit.Team@bluepeak-softlab.example, the site
https://www.remote-dev-solutions.example/apply and the wallets
0x3F9a1c7e52b8d04a6e91f2c3b7d8e5a0c4f61b29, 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2,
bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq and TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW.
The workers used Upwork, LinkedIn and 텔레그램, and report to the Reconnaissance General Bureau.
On 2024-09-17, 12.05.2024 and 2023-2024 they earned $1,234,567, 3,000 yuan and 287 billion won.
Read more on news.example.org or google.com; U.S. officials, e.g. the FBI, agreed."""


def test_indicators_are_found_and_normalised():
    found = {
        (i["kind"], i["value"])
        for i in extract_indicators("", INDICATOR_TEXT, page_url="https://news.example.org/a/1")
    }
    assert found >= {
        ("phone", "+16145550148"),
        ("phone", "+821023456789"),
        ("phone", "01098765432"),
        ("phone", "0312345678"),
        ("email", "recruit.team@bluepeak-softlab.example"),
        ("domain", "remote-dev-solutions.example"),
        ("wallet-eth", "0x3f9a1c7e52b8d04a6e91f2c3b7d8e5a0c4f61b29"),
        ("wallet-btc", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("wallet-btc", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
        ("wallet-tron", "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW"),
        ("platform", "Upwork"),
        ("platform", "LinkedIn"),
        ("platform", "Telegram"),
        ("organisation", "Reconnaissance General Bureau"),
    }


def test_dates_prices_own_site_and_generic_domains_are_not_indicators():
    found = extract_indicators("", INDICATOR_TEXT, page_url="https://news.example.org/a/1")
    values = {i["value"] for i in found}
    phones = {i["value"] for i in found if i["kind"] == "phone"}
    assert len(phones) == 4
    assert not values & {"news.example.org", "google.com", "u.s", "e.g"}
    assert not any(v.startswith(("2024", "1234567", "3000", "287")) for v in values)
    for item in found:
        assert len(item["context"]) < 140 and item["context"]


# --- the item pipeline -----------------------------------------------------------------------


def make_item(title: str, text: str, status: str = "ok") -> ArticleItem:
    return ArticleItem(
        url="http://127.0.0.1:8000/a.html", response_url="http://127.0.0.1:8000/a.html",
        source="test", fetched_at="2025-01-01T00:00:00Z", http_status=200, title=title,
        text=text, status=status, language="en",
    )  # fmt: skip


def test_pipeline_scores_every_topic_and_extracts_indicators_of_relevant_items():
    pipeline = RelevancePipeline.from_crawler(get_crawler(settings_dict={}))
    item = pipeline.process_item(make_item(*SEED_EQUIVALENTS["002"]))
    assert [s["topic"] for s in item.topic_scores] == list(TOPICS)
    assert item.relevant
    assert {s["topic"] for s in item.topic_scores if s["passed"]} == {"nk-it-workers"}
    assert all({"term", "group", "field", "start", "end", "snippet"} <= set(e)
               for s in item.topic_scores for e in s["evidence"])  # fmt: skip

    off = pipeline.process_item(make_item("Seoul logs record tropical night",
                                          "The heat wave kept temperatures above 25 C again."))  # fmt: skip
    assert not off.relevant and off.indicators == []
    assert len(off.topic_scores) == len(TOPICS)

    failed = make_item("", "", status="failed")
    assert pipeline.process_item(failed).topic_scores == []
    assert failed.relevant is True  # untouched: the store records the failure as it is


def test_pipeline_reads_its_topics_setting(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(MINIMAL_TOPICS, encoding="utf-8")
    crawler = get_crawler(settings_dict={"RELEVANCE_TOPICS": str(path)})
    item = RelevancePipeline.from_crawler(crawler).process_item(
        make_item("Old lighthouses", "Two lighthouses on the coast were restored this year.")
    )
    assert [s["topic"] for s in item.topic_scores] == ["lighthouses"] and item.relevant


# --- the CLI ---------------------------------------------------------------------------------


def test_topics_list_json():
    listing = json.loads(run_nkwatch("topics", "list", "--json").stdout)
    assert [t["name"] for t in listing["topics"]] == list(TOPICS)
    assert all(t["threshold"] > 0 and t["groups"] for t in listing["topics"])


def test_topics_test_text_file_json(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("\n".join(SEED_EQUIVALENTS["000"]), encoding="utf-8")
    report = json.loads(run_nkwatch("topics", "test", str(path), "--json").stdout)
    verdicts = {s["topic"]: s["passed"] for s in report["scores"]}
    assert verdicts == {"nk-phone-scams": True, "nk-it-workers": False, "nk-mobile-phones": False}
    scam = next(s for s in report["scores"] if s["topic"] == "nk-phone-scams")
    assert {"scam", "phone", "north-korea"} <= {e["group"] for e in scam["evidence"]}
    human = run_nkwatch("topics", "test", str(path)).stdout
    assert "nk-phone-scams" in human and "PASS" in human and "impersonate" in human


def test_topics_test_html_file_and_url(tmp_path, demo_web):
    url = demo_web.url_of("tokyo-report/npa-warns-firms-over-north-korean-it-workers")
    report = json.loads(run_nkwatch("topics", "test", url, "--json").stdout)
    assert [s["topic"] for s in report["scores"] if s["passed"]] == ["nk-it-workers"]
    assert ("domain", "remote-dev-solutions.example") in {
        (i["kind"], i["value"]) for i in report["indicators"]
    }
    import urllib.request

    page = tmp_path / "page.html"
    page.write_bytes(urllib.request.urlopen(url, timeout=10).read())
    from_file = json.loads(run_nkwatch("topics", "test", str(page), "--json").stdout)
    assert from_file["scores"] == report["scores"]


def test_topics_test_refuses_other_schemes_in_one_line():
    result = run_nkwatch("topics", "test", "file:///etc/passwd", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "only http(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_indicators_lists_rows_with_their_article(tmp_path):
    db_path = tmp_path / "c.db"
    db = open_corpus(db_path)
    with db.atomic():
        db["articles"].insert({"id": 1, "url": "http://a/1", "source": "s", "fetched_at": "x",
                               "title": "Laptop farm operator sentenced", "status": "ok"})  # fmt: skip
        db["indicators"].insert_all([
            {"article_id": 1, "kind": "wallet-eth", "value": "0xabc", "context": "paid to 0xabc"},
            {"article_id": 1, "kind": "domain", "value": "x.example", "context": "site x.example"},
        ])  # fmt: skip
    db.close()
    rows = json.loads(run_nkwatch("indicators", "--db", str(db_path), "--json",
                                  "--kind", "wallet").stdout)  # fmt: skip
    assert [(r["kind"], r["value"], r["title"]) for r in rows] == [
        ("wallet-eth", "0xabc", "Laptop farm operator sentenced")
    ]
    human = run_nkwatch("indicators", "--db", str(db_path)).stdout
    assert "x.example" in human and "0xabc" in human
    missing = run_nkwatch("indicators", "--db", str(tmp_path / "none.db"), check=False)
    assert missing.returncode != 0 and "no corpus" in missing.stderr


def _pipeline_wired() -> bool:
    from crawler import settings

    return "pipelines.relevance.RelevancePipeline" in settings.ITEM_PIPELINES


@pytest.mark.skipif(not _pipeline_wired(), reason="RelevancePipeline not in ITEM_PIPELINES yet")
def test_demo_crawl_keeps_relevant_articles_and_their_indicators(demo_corpus, demo_web):
    labels = {demo_web.url_of(a.key): a.label for a in demo_web.published_articles()}
    conn = sqlite3.connect(demo_corpus)
    try:
        passed_by_url = {}
        for url, topic in conn.execute(
            "SELECT a.response_url, t.topic FROM topic_scores t "
            "JOIN articles a ON a.id = t.article_id WHERE t.passed"
        ):
            passed_by_url.setdefault(url, set()).add(topic)
    finally:
        conn.close()
    for url, label in labels.items():
        expected = {label} if label.startswith("nk-") else set()
        assert passed_by_url.get(url, set()) == expected, url
    kinds = {row["kind"] for row in query(demo_corpus, "SELECT DISTINCT kind FROM indicators")}
    assert {"email", "phone", "domain", "wallet-eth", "platform"} <= kinds
