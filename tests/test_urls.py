"""URL canonicalization: what we request (clean_url) and what says two URLs are one page (url_key)."""

from __future__ import annotations

import pytest

from crawler.urls import clean_url, is_fetchable, url_key

BASE = "https://news.example.com/nk/2024/09/phone-scams.html"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # tracking parameters, any case, are dropped; real parameters stay, sorted
        (BASE + "?utm_source=rss&utm_medium=feed&UTM_Campaign=nk", BASE),
        (BASE + "?fbclid=IwAR0abc", BASE),
        (BASE + "?gclid=xyz&page=2", BASE + "?page=2"),
        (BASE + "?mc_cid=1&mc_eid=2&_ga=3&b=2&a=1", BASE + "?a=1&b=2"),
        # the fragment is not sent to a server
        (BASE + "#comments", BASE),
        # default ports go, other ports stay; the host is lower-cased
        ("http://News.Example.COM:80/a.html", "http://news.example.com/a.html"),
        ("https://news.example.com:443/a.html", "https://news.example.com/a.html"),
        ("https://news.example.com:8443/a.html", "https://news.example.com:8443/a.html"),
        # credentials and session ids never reach a request
        (
            "https://user:pw@news.example.com/a;jsessionid=AB12?x=1",
            "https://news.example.com/a?x=1",
        ),
        # the loopback demo web keeps working: courlan would reject these
        ("http://127.0.0.1:38511/tech/a.html?utm_source=x", "http://127.0.0.1:38511/tech/a.html"),
        ("http://localhost:8080/a.html#top", "http://localhost:8080/a.html"),
        ("http://[::1]:8080/a.html?gclid=1", "http://[::1]:8080/a.html"),
        # parameters that may name the article itself are kept
        (
            "https://example.com/view.php?cid=42&from=rss",
            "https://example.com/view.php?cid=42&from=rss",
        ),
    ],
)
def test_clean_url_drops_what_does_not_change_the_page(url, expected):
    assert clean_url(url) == expected


@pytest.mark.parametrize(
    "variant",
    [
        BASE,
        BASE + "?utm_source=twitter&fbclid=1#section-2",
        "http://news.example.com/nk/2024/09/phone-scams.html",  # scheme
        "https://www.news.example.com/nk/2024/09/phone-scams.html",  # www.
        "https://NEWS.example.com:443/nk/2024/09/phone-scams.html",  # host case, default port
        "https://amp.news.example.com/nk/2024/09/phone-scams.html",  # AMP host
        "https://m.news.example.com/nk/2024/09/phone-scams.html",  # mobile host
        "https://news.example.com/nk/2024/09/phone-scams.amp.html",  # AMP file
        "https://news.example.com/nk/2024/09/phone-scams.html?amp",  # AMP parameter
        "https://news.example.com/nk/2024/09/phone-scams.html?amp=1",
        "https://news.example.com/nk/2024/09/phone-scams.html?outputType=amp",
        "https://news.example.com/nk/2024/09/phone-scams.html?print=1",  # print variant
        "https://news.example.com/nk/2024/09/phone-scams.html?view=print",
        "https://news.example.com/amp/nk/2024/09/phone-scams.html",  # AMP path segment
    ],
)
def test_every_variant_of_an_article_has_one_key(variant):
    assert (
        url_key(variant) == url_key(BASE) == "https://news.example.com/nk/2024/09/phone-scams.html"
    )


@pytest.mark.parametrize(
    "variant",
    [
        "https://example.com/news/2024/story-123/",
        "https://example.com/news/2024/story-123",
        "https://example.com/news/2024/story-123/amp",
        "https://example.com/news/2024/story-123/amp/",
        "https://example.com/news/2024/story-123/print",
        "https://example.com/news/2024/story-123/print.html",
    ],
)
def test_trailing_slash_and_variant_suffixes_share_a_key(variant):
    assert url_key(variant) == "https://example.com/news/2024/story-123"


def test_sorted_query_is_one_key_but_different_articles_are_not():
    assert url_key("https://e.com/a?id=1&lang=en") == url_key("https://e.com/a?lang=en&id=1")
    assert url_key("https://e.com/a?id=1") != url_key("https://e.com/a?id=2")
    assert url_key("https://e.com/a/b") != url_key("https://e.com/a/c")
    # a parameter only counts as a variant when its value says so
    assert url_key("https://e.com/index.php?view=article&id=5") != url_key(
        "https://e.com/index.php?view=category&id=5"
    )
    # "amp" inside a word is not an AMP marker
    assert url_key("https://e.com/examples/amplifier") == "https://e.com/examples/amplifier"


def test_loopback_with_port_keeps_its_port_in_the_key():
    key = url_key("http://127.0.0.1:38511/tech/2024/07/a.html?utm_source=rss")
    assert key == "https://127.0.0.1:38511/tech/2024/07/a.html"
    assert url_key("http://127.0.0.1:38512/tech/2024/07/a.html") != key


def test_keys_are_stable_when_keyed_again():
    for url in [
        "http://a.com:443/x",
        "https://www.example.com/news/story.amp.html?outputType=amp&utm_medium=x",
        "http://127.0.0.1:8080/a/?b=2&a=1",
        "https://例え.jp/記事?q=é",
        "http://[::1]:8080/x/",
    ]:
        assert url_key(url_key(url)) == url_key(url)
        assert clean_url(clean_url(url)) == clean_url(url)


def test_non_ascii_urls_are_percent_encoded_consistently():
    assert clean_url("https://例え.jp/記事?q=é") == (
        "https://xn--r8jz45g.jp/%E8%A8%98%E4%BA%8B?q=%C3%A9"
    )
    assert url_key("https://例え.jp/記事") == url_key("https://xn--r8jz45g.jp/%E8%A8%98%E4%BA%8B")


@pytest.mark.parametrize(
    ("url", "fetchable"),
    [
        ("https://example.com/a", True),
        ("http://127.0.0.1:8080/a", True),
        ("javascript:alert(1)", False),
        ("mailto:desk@example.com", False),
        ("file:///etc/passwd", False),
        ("data:text/html,hi", False),
        ("https:///no-host", False),
    ],
)
def test_only_http_links_with_a_host_are_fetchable(url, fetchable):
    assert is_fetchable(url) is fetchable
