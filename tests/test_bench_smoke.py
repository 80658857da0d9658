"""The benchmarks still run end to end and print their figures (tiny sizes; no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from synthetic_web import SyntheticSite, SyntheticWeb  # noqa: E402


def run_bench(*args: str, timeout: float = 150) -> str:
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout[-3000:]}"
    return result.stdout


def test_synthetic_web_is_deterministic_sized_and_answers_conditional_gets():
    first, again = SyntheticSite(60, seed=5), SyntheticSite(60, seed=5)
    page = first.article(13)
    assert page == again.article(13) and page != first.article(14)
    assert 45_000 < len(page) < 80_000
    assert (
        len(re.sub(rb"<[^>]+>", b" ", page.split(b'<div class="article-body">')[1]).split()) > 700
    )
    with SyntheticWeb(60, seed=5) as web:
        with urlopen(web.feed_urls()[0]) as response:
            etag = response.headers["ETag"]
            assert response.read().count(b"<item>") == 60
        with urlopen(web.article_url(13)) as response:
            assert response.read() == SyntheticSite(60, 5, web.base_url).article(13)
        request = __import__("urllib.request").request.Request(
            web.feed_urls()[0], headers={"If-None-Match": etag}
        )
        try:
            urlopen(request)
            raise AssertionError("expected 304")
        except Exception as error:  # urllib raises HTTPError for 304
            assert getattr(error, "code", None) == 304
        assert web.request_counts()["counts"] == {"feed": 1, "article": 1, "feed_not_modified": 1}


def test_throughput_prints_every_phase_the_ratios_and_a_recrawl_that_fetches_no_article():
    output = run_bench("bench/throughput.py", "--pages", "60", "--rounds", "1")
    for phase in ("download", "naive", "nkwatch", "recrawl"):
        assert re.search(rf"^  {phase} +\d+ +[\d.]+ +[\d.]+", output, re.M), output
    assert re.search(r"c/b = [\d.]+", output) and re.search(r"c/a = [\d.]+", output)
    assert "nkwatch mean CPU use:" in output
    assert re.search(r"^  nkwatch +60 ", output, re.M), "the full crawl fetched every page"
    assert "0 article pages fetched" in output


def test_scale_prints_cost_and_rss_at_each_size():
    output = run_bench(
        "bench/scale.py", "--sizes", "300,600", "--count", "60", "--seed", "2", timeout=120
    )
    assert re.search(r"^ +300 +[\d.]+ +[\d.]+ +\d+ +1\.00x", output, re.M), output
    assert re.search(r"^ +600 +[\d.]+ ", output, re.M), output
