"""Export, search, stats and browsing, on copies of the demo corpus and on real crawls.

Every test that writes works on its own copy of the session's demo corpus (other tests read
the original). The CLI runs as a child process, as a user would run it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import feedparser
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from crawler.cli import main
from crawler.commands.export import datasette_metadata
from pipelines.export import (
    ARTICLE_FIELDS,
    STORY_FIELDS,
    arrow_type,
    atomic_output,
    write_atom,
)
from tests.conftest import query, run_nkwatch, write_sources

ROOT = Path(__file__).resolve().parent.parent
SEED_002 = "police-refer-two-men-over-north-korean-it-worker-scheme"
WATCH_TOPIC = "test-watch"


@pytest.fixture()
def corpus(demo_corpus, tmp_path) -> Path:
    """A private copy of the demo corpus, with a watch topic scored on a few articles."""
    copy = tmp_path / "corpus.db"
    source = sqlite3.connect(demo_corpus)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    with target:
        rows = target.execute("SELECT id, url FROM articles WHERE status = 'ok'").fetchall()
        passing = {i for i, url in rows if i % 3 == 0 or SEED_002 in url}
        target.executemany(
            "INSERT OR REPLACE INTO topic_scores (article_id, topic, score, passed, evidence) "
            "VALUES (?, ?, ?, ?, '[]')",
            [(i, WATCH_TOPIC, 3.0 if i in passing else 0.5, int(i in passing)) for i, _ in rows],
        )
    target.close()
    return copy


def nkwatch(*args: str, check: bool = True) -> SimpleNamespace:
    """Run the CLI in this process (fast); crawls and one error check use child processes."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if check and result.exit_code != 0:
        raise AssertionError(f"nkwatch {' '.join(args)} exited {result.exit_code}: {result.stderr}")
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def export(corpus: Path, *args: str, check: bool = True) -> SimpleNamespace:
    return nkwatch("export", "--db", str(corpus), *args, check=check)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ok_article_ids(corpus: Path) -> list[int]:
    return [
        r["id"] for r in query(corpus, "SELECT id FROM articles WHERE status = 'ok' ORDER BY id")
    ]


def insert_article(corpus: Path, title: str, text: str = "Inserted for the export tests.") -> int:
    """A new ok article with a story of its own, as the store would leave it."""
    conn = sqlite3.connect(corpus)
    with conn:
        cursor = conn.execute(
            "INSERT INTO articles (url, response_url, canonical_url, source, fetched_at, status, "
            "title, authors, published_at, language, text, content_hash, extractor_version, "
            "flags, relevant) VALUES (?, ?, ?, 'tokyo-report', '2026-01-02T03:04:05Z', 'ok', ?, "
            "'[\"@someone\"]', '2026-01-01T00:00:00Z', 'en', ?, 'hash-x', 'test', '[]', 1)",
            [f"http://127.0.0.1:9/{title}", f"http://127.0.0.1:9/{title}",
             f"http://127.0.0.1:9/{title}", title, text],
        )  # fmt: skip
        article_id = cursor.lastrowid
        story = conn.execute(
            "INSERT INTO stories (representative_id, title, first_seen_at, first_published_at, "
            "sightings, sites) VALUES (?, ?, '2026-01-02T03:04:05Z', '2026-01-01T00:00:00Z', 1, 1)",
            [article_id, title],
        ).lastrowid
        conn.execute("UPDATE articles SET story_id = ? WHERE id = ?", [story, article_id])
    conn.close()
    return article_id


# --- must show 1: the same rows in every format; Parquet typed; Atom parses -----------------


def test_jsonl_csv_and_parquet_hold_the_same_rows(corpus, tmp_path):
    for fmt in ("jsonl", "csv", "parquet"):
        export(corpus, "--format", fmt, "--out", str(tmp_path / f"all.{fmt}"))
    from_jsonl = read_jsonl(tmp_path / "all.jsonl")
    with open(tmp_path / "all.csv", encoding="utf-8", newline="") as file:
        from_csv = list(csv.DictReader(file))
    from_parquet = pq.read_table(tmp_path / "all.parquet").to_pylist()

    assert [r["id"] for r in from_jsonl] == ok_article_ids(corpus)
    assert [int(r["id"]) for r in from_csv] == [r["id"] for r in from_jsonl]
    assert [r["id"] for r in from_parquet] == [r["id"] for r in from_jsonl]
    for j, c, p in zip(from_jsonl, from_csv, from_parquet, strict=True):
        assert j["url"] == c["url"] == p["url"] and j["url"].startswith("http://127.0.0.1:")
        assert j["title"] == c["title"] == p["title"]
        assert j["text"] == c["text"] == p["text"]
        assert j["authors"] == json.loads(c["authors"]) == p["authors"]
        assert j["topic_scores"] == json.loads(c["topic_scores"]) == dict(p["topic_scores"])
        assert j["topics_passed"] == json.loads(c["topics_passed"]) == p["topics_passed"]
        assert j["content_hash"] == c["content_hash"] == p["content_hash"]
        assert j["fetched_at"] == c["fetched_at"]
        assert p["fetched_at"].isoformat().replace("+00:00", "Z") == j["fetched_at"]
    seed = next(r for r in from_jsonl if SEED_002 in r["url"])
    assert seed["source"] == "tokyo-report" and seed["story_id"] and seed["extractor_version"]
    assert seed["published_at"] == "2025-03-26T06:40:00Z"


def test_parquet_reads_back_with_typed_columns(corpus, tmp_path):
    out = tmp_path / "stories.parquet"
    export(corpus, "--format", "parquet", "--per", "story", "--out", str(out))
    schema = pq.read_schema(out)
    assert schema.field("id").type == pa.int64()
    assert schema.field("story_id").type == pa.int64()
    for name in ("fetched_at", "published_at", "first_seen_at"):
        assert pa.types.is_timestamp(schema.field(name).type)
        assert schema.field(name).type.tz == "UTC"
    assert schema.field("authors").type.value_type == pa.string()
    assert pa.types.is_map(schema.field("topic_scores").type)
    assert schema.field("topic_scores").type.item_type == pa.float64()
    sighting = schema.field("sightings").type.value_type
    assert [sighting.field(i).name for i in range(sighting.num_fields)] == [
        "article_id", "url", "source", "fetched_at"
    ]  # fmt: skip
    table = pq.read_table(out)
    stories = query(corpus, "SELECT count(*) AS n FROM stories")[0]["n"]
    assert table.num_rows == stories
    row = next(r for r in table.to_pylist() if SEED_002 in r["url"])
    assert row["published_at"].year == 2025 and row["sightings"][0]["source"] == "tokyo-report"


def test_atom_feed_parses_with_one_entry_per_story_and_topics_as_categories(corpus, tmp_path):
    out = tmp_path / "watch.atom"
    export(corpus, "--format", "atom", "--topic", WATCH_TOPIC, "--out", str(out))
    feed = feedparser.parse(out.read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert WATCH_TOPIC in [tag.term for tag in feed.feed.tags]
    expected = query(
        corpus,
        "SELECT count(*) AS n FROM stories s JOIN topic_scores t ON t.article_id = "
        "s.representative_id AND t.topic = ? AND t.passed",
        [WATCH_TOPIC],
    )[0]["n"]
    assert expected > 0 and len(feed.entries) == expected
    entry = feed.entries[0]
    assert entry.link.startswith("http://127.0.0.1:") and entry.title and entry.summary
    assert WATCH_TOPIC in [tag.term for tag in entry.tags]


def test_atom_entries_escape_markup_and_drop_characters_xml_forbids():
    row = {"canonical_url": "https://news.example/a?x=1&y=2", "url": "https://news.example/a",
           "title": "Scam <calls> & \x0bcash", "fetched_at": "2024-05-01T00:00:00Z",
           "published_at": "2024-04-30T23:00:00Z", "authors": ["Kim & Lee"],
           "topics_passed": ["nk-phone-scams"], "text": "Body\x00 text " * 5, "source": "s"}  # fmt: skip
    stream = io.BytesIO()
    assert write_atom(iter([row, {**row, "url": "https://news.example/b"}]), stream, ["t"]) == 2
    feed = feedparser.parse(stream.getvalue())
    assert not feed.bozo, feed.bozo_exception
    entry = feed.entries[0]
    assert entry.title == "Scam <calls> & cash" and entry.id == row["canonical_url"]
    assert entry.published == "2024-04-30T23:00:00Z" and entry.author == "Kim & Lee"
    assert "Body text" in entry.summary and len(feed.entries) == 2


def test_schema_doc_lists_exactly_the_fields_the_exporter_writes(corpus, tmp_path):
    documented = _documented_fields(ROOT / "docs" / "schema.md")
    export(corpus, "--out", str(tmp_path / "a.jsonl"))
    export(corpus, "--per", "story", "--out", str(tmp_path / "s.jsonl"))
    written_article = list(read_jsonl(tmp_path / "a.jsonl")[0])
    written_story = list(read_jsonl(tmp_path / "s.jsonl")[0])
    assert [name for name, _ in documented["Article rows"]] == written_article
    story_extra = [name for name, _ in documented["Story rows"]]
    assert written_article + story_extra == written_story
    # the documented types are the Parquet types written
    export(corpus, "--format", "parquet", "--per", "story", "--out", str(tmp_path / "s.parquet"))
    schema = pq.read_schema(tmp_path / "s.parquet")
    for name, type_name in documented["Article rows"] + documented["Story rows"]:
        assert schema.field(name).type == arrow_type(pa, type_name), name
    assert [f.name for f in STORY_FIELDS] == written_story
    assert [f.name for f in ARTICLE_FIELDS] == written_article


def _documented_fields(path: Path) -> dict[str, list[tuple[str, str]]]:
    """The ``| `name` | `type` | meaning |`` rows of each ``## ...`` section."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].split(" (")[0]
            continue
        match = re.match(r"\| `([^`]+)` \| `([^`]+)` \|", line)
        if match and current:
            sections.setdefault(current, []).append((match[1], match[2]))
    return sections


# --- must show 2: incremental exports --------------------------------------------------------


def test_consumer_gets_nothing_twice_and_only_what_is_new(corpus, tmp_path):
    first = export(corpus, "--consumer", "notebook", "--out", str(tmp_path / "1.jsonl"))
    assert len(read_jsonl(tmp_path / "1.jsonl")) == len(ok_article_ids(corpus))
    assert "consumer 'notebook' now at article" in first.stderr

    second = export(corpus, "--consumer", "notebook", "--out", str(tmp_path / "2.jsonl"))
    assert read_jsonl(tmp_path / "2.jsonl") == []
    assert "nothing new for consumer 'notebook'" in second.stderr

    # a failed export (unwritable path) does not move the cursor
    new_id = insert_article(corpus, "Brand new sighting")
    failed = export(corpus, "--consumer", "notebook", "--out", str(tmp_path / "no/3.jsonl"), check=False)  # fmt: skip
    assert failed.returncode != 0
    export(corpus, "--consumer", "notebook", "--out", str(tmp_path / "3.jsonl"))
    assert [r["id"] for r in read_jsonl(tmp_path / "3.jsonl")] == [new_id]
    # another consumer has its own cursor
    export(corpus, "--consumer", "sheet", "--format", "csv", "--out", str(tmp_path / "sheet.csv"))
    with open(tmp_path / "sheet.csv", encoding="utf-8") as file:
        assert len(list(csv.DictReader(file))) == len(ok_article_ids(corpus))


def test_consumer_after_a_new_crawl_gets_only_the_new_story(fresh_demo_web, tmp_path):
    sources = write_sources(fresh_demo_web, tmp_path)
    db = tmp_path / "live.db"
    crawl = ("crawl", "--db", str(db), "--sources", str(sources), "--source", "seoul-herald-all",
             "--set", "DOWNLOAD_DELAY=0", "--set", "AUTOTHROTTLE_ENABLED=False")  # fmt: skip
    run_nkwatch(*crawl)
    export(db, "--consumer", "reader", "--format", "atom", "--out", str(tmp_path / "1.atom"))
    assert len(feedparser.parse(str(tmp_path / "1.atom")).entries) > 0
    export(db, "--consumer", "reader", "--format", "atom", "--out", str(tmp_path / "2.atom"))
    assert feedparser.parse(str(tmp_path / "2.atom")).entries == []

    published = fresh_demo_web.publish("seoul-herald/startups-warned-over-fake-remote-developers")
    run_nkwatch(*crawl)
    export(db, "--consumer", "reader", "--format", "atom", "--out", str(tmp_path / "3.atom"))
    entries = feedparser.parse(str(tmp_path / "3.atom")).entries
    assert [e.link for e in entries] == [fresh_demo_web.url_of(published.key)]


# --- must show 3: CSV safe to open -----------------------------------------------------------


def test_csv_neutralises_formula_cells_and_can_carry_a_bom(corpus, tmp_path):
    title = '=HYPERLINK("http://evil.example/","click")'
    insert_article(corpus, title, text="+1 555 0100 call now")
    out = tmp_path / "safe.csv"
    export(corpus, "--format", "csv", "--bom", "--out", str(out))
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    row = next(r for r in rows if "HYPERLINK" in r["title"])
    assert row["title"] == "'" + title
    assert row["text"] == "'+1 555 0100 call now"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    assert any(r["language"] == "ja" and "北朝鮮" in r["title"] for r in rows)  # UTF-8 intact


# --- must show 4: search ---------------------------------------------------------------------


def test_search_finds_the_seed_002_story_by_a_phrase_from_its_text(demo_corpus):
    for phrase in ("crowdsourcing website", '"crowdsourcing website"'):
        result = nkwatch("search", phrase, "--db", str(demo_corpus), "--json")
        hits = json.loads(result.stdout)["hits"]
        assert SEED_002 in hits[0]["url"]
        assert "[crowdsourcing" in hits[0]["snippet"]
    human = nkwatch("search", "crowdsourcing website", "--db", str(demo_corpus))
    assert "Police refer two men" in human.stdout.splitlines()[0]


def test_search_finds_japanese_chinese_and_korean_phrases(demo_corpus):
    for phrase, language in (("クラウドソーシング", "ja"), ("众包平台", "zh"), ("위장 신분", "ko")):
        result = nkwatch("search", phrase, "--db", str(demo_corpus), "--json", "--lang", language)  # fmt: skip
        hits = json.loads(result.stdout)["hits"]
        assert hits, phrase
        assert all(h["language"] == language for h in hits)


def test_search_with_fts_syntax_errors_does_not_fail(demo_corpus):
    result = nkwatch("search", '"crowdsourcing AND (', "--db", str(demo_corpus), "--json")
    assert SEED_002 in json.loads(result.stdout)["hits"][0]["url"]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--topic", "no-such-topic"], "no-such-topic"),
        (["--source", "no-such-source"], "no-such-source"),
        (["--since", "2025-02-30"], "2025-02-30"),
        (["--until", "yesterday"], "yesterday"),
        (["--status", "nonsense"], "nonsense"),
        (["--out", "{tmp}/missing/dir/out.jsonl"], "missing/dir/out.jsonl"),
        (["--out", "{tmp}"], "is a directory"),
    ],
)
def test_bad_input_is_one_line_error_and_leaves_no_file(corpus, tmp_path, args, named):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = _files(tmp_path)
    result = export(corpus, *args, *([] if "--out" in args else ["--out", str(tmp_path / "x.jsonl")]), check=False)  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert _files(tmp_path) == before


def _files(folder: Path) -> list[str]:
    """What is in the folder, less SQLite's own -wal and -shm files (a reader may make them)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm")))


def test_a_bad_date_from_the_shell_is_one_line_without_traceback(demo_corpus, tmp_path):
    out = tmp_path / "x.csv"
    result = run_nkwatch("export", "--db", str(demo_corpus), "--format", "csv", "--since",
                         "2025-13-01", "--out", str(out), check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: bad date '2025-13-01': use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z]"
    )
    assert not out.exists()


@pytest.mark.parametrize("command", [["search", "scam"], ["status"], ["stories"],
                                     ["export", "--format", "jsonl", "--out", "{tmp}/x.jsonl"]])  # fmt: skip
def test_readers_work_on_a_file_whose_first_crawl_died_before_its_schema(tmp_path, command):
    """A crawl killed between creating the file and committing its schema leaves an empty
    database; every reader must treat it as an empty corpus, not fail on a missing table."""
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = wal")
    conn.close()
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = run_nkwatch(*args, "--db", str(db), check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert query(db, "SELECT count(*) AS n FROM articles")[0]["n"] == 0


def test_an_interrupted_export_leaves_neither_file_nor_partial(tmp_path):
    out = tmp_path / "big.jsonl"
    with pytest.raises(KeyboardInterrupt), atomic_output(out) as stream:
        stream.write(b'{"id": 1}\n')
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_filters_select_the_rows_they_name(corpus, tmp_path):
    out = tmp_path / "f.jsonl"
    export(corpus, "--lang", "ja", "--since", "2025-01-01", "--until", "2025-12-31", "--out", str(out))  # fmt: skip
    rows = read_jsonl(out)
    assert rows and all(r["language"] == "ja" for r in rows)
    assert all("2025-01-01" <= r["published_at"][:10] <= "2025-12-31" for r in rows)
    export(corpus, "--topic", WATCH_TOPIC, "--min-score", "2", "--source", "tokyo-report", "--out", str(out))  # fmt: skip
    rows = read_jsonl(out)
    assert rows and all(r["source"] == "tokyo-report" for r in rows)
    assert all(WATCH_TOPIC in r["topics_passed"] and r["topic_scores"][WATCH_TOPIC] >= 2 for r in rows)  # fmt: skip


# --- stats and browsing ----------------------------------------------------------------------


def test_stats_tables_and_json_count_the_corpus(corpus, tmp_path):
    counts = json.loads(nkwatch("stats", "--db", str(corpus), "--json").stdout)
    total = query(corpus, "SELECT count(*) AS n FROM articles")[0]["n"]
    assert counts["totals"]["articles"] == total
    assert sum(r["articles"] for r in counts["per_source"]) == total
    assert sum(r["articles"] for r in counts["per_language"]) == total
    assert {"ja", "ko", "zh", "en"} <= {r["language"] for r in counts["per_language"]}
    assert WATCH_TOPIC in {r["topic"] for r in counts["per_topic"]}
    table = nkwatch("stats", "--db", str(corpus)).stdout
    for heading in ("Per day", "Per source", "Per topic", "Per language", "tokyo-report"):
        assert heading in table


def test_stats_plot_draws_a_png(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "stories.png"
    nkwatch("stats", "--db", str(corpus), "--plot", str(out))
    assert out.read_bytes().startswith(b"\x89PNG")


def test_datasette_metadata_in_docs_is_what_serve_writes(tmp_path):
    out = tmp_path / "metadata.json"
    nkwatch("serve", "--db", "nkwatch.db", "--metadata", str(out))
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == datasette_metadata("nkwatch")
    shipped = json.loads((ROOT / "docs" / "datasette-metadata.json").read_text(encoding="utf-8"))
    assert shipped == written
    facets = written["databases"]["nkwatch"]["tables"]["articles"]["facets"]
    assert {"source", "language", "status"} <= {f for f in facets if isinstance(f, str)}
