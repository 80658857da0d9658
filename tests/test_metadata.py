"""Page metadata as real pages give it: escaped titles, site names, bylines, placeholder dates."""

from __future__ import annotations

import pytest

from pipelines.extract import parse_page
from pipelines.metadata import page_metadata, split_authors


def metadata_of(head: str, body: str) -> dict:
    tree = parse_page(f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>")
    return page_metadata(tree)


def test_title_is_unescaped_and_loses_the_site_name_it_repeats():
    found = metadata_of(
        '<meta property="og:title" content="Police break up call-centre ring &amp;#8211; '
        'seven held | The Korea Times"><meta property="og:site_name" content="The Korea Times">',
        "<p>text</p>",
    )
    assert found["title"] == "Police break up call-centre ring – seven held"
    assert found["site_name"] == "The Korea Times"


def test_a_title_with_the_site_name_first_or_a_dangling_separator():
    found = metadata_of(
        '<meta property="og:site_name" content="NK News"><title>NK News - Remote IT workers '
        "\n   charged</title>",
        "",
    )
    assert found["title"] == "Remote IT workers charged"
    assert metadata_of("<title>Scam warning issued |</title>", "")["title"] == "Scam warning issued"


@pytest.mark.parametrize(("byline", "names"), [
    ('<div class="byline">By Kim Min-ji and Lee Jae-hoon | Updated 2024-05-01</div>',
     ["Kim Min-ji", "Lee Jae-hoon"]),
    ('<span itemprop="author" itemscope><a href="/p/1"><span itemprop="name">Jane Doe'
     "</span></a> Staff Reporter</span>", ["Jane Doe"]),
    ('<p class="byline__author">VON MORITZ GATHMANN am 21. April 2020</p>', ["MORITZ GATHMANN"]),
    ('<div class="td-post-author-name"><div class="td-author-by">By</div> '
     '<a href="/a/loshaun">Loshaun Dixon</a> -</div>', ["Loshaun Dixon"]),
    ('<span class="author-name">Par Stefan Häne, Sylvain Besson</span>',
     ["Stefan Häne", "Sylvain Besson"]),
])  # fmt: skip
def test_the_byline_gives_the_authors_when_the_page_declares_none(byline, names):
    body = f"<article><h1>Headline</h1>{byline}<p>{'Story text. ' * 30}</p></article>"
    assert metadata_of("", body)["authors"] == names


def test_bylines_in_comments_sidebars_and_footers_are_not_the_authors():
    body = (
        "<article><h1>Headline</h1><p>Story.</p></article>"
        '<section class="comments"><span class="comment-author">Reader One</span></section>'
        '<aside class="sidebar"><span class="author">Columnist Two</span></aside>'
        '<footer><span class="author">Webmaster Three</span></footer>'
    )
    assert "authors" not in metadata_of("", body)


def test_declared_authors_win_and_profile_urls_are_no_names():
    head = ('<meta property="article:author" content="https://www.facebook.com/someone">'
            '<meta name="author" content="Park Ji-won">')  # fmt: skip
    found = metadata_of(head, '<div class="byline">By Someone Else</div>')
    assert found["authors"] == ["Park Ji-won"]


def test_placeholder_dates_are_not_publication_dates():
    found = metadata_of(
        '<meta property="article:published_time" content="1970-01-01T00:00:00Z">',
        '<time datetime="2024-05-01T09:00:00+09:00">1 May</time>',
    )
    assert found["published_at"] == "2024-05-01T00:00:00Z"


@pytest.mark.parametrize(("value", "names"), [
    ("By John Smith, Staff Writer", ["John Smith"]),
    ("Grant Tinsley, PhD", ["Grant Tinsley"]),
    (["Admin"], []),
    (["Smith, John", "By Kim Min-ji"], ["Smith, John", "Kim Min-ji"]),
    ("View all posts by Daniel Lemire", []),
    ("Reuters Updated", ["Reuters"]),
    ("Isabella DiBiase am Samstag, 19. Oktober 2019 um 11:14 Uhr", ["Isabella DiBiase"]),
])  # fmt: skip
def test_split_authors_keeps_names_only(value, names):
    assert split_authors(value) == names


def test_the_page_own_day_is_kept_beside_the_utc_time():
    """A Seoul story published at 08:00 KST is 23:00 UTC the day before: both are kept."""
    found = metadata_of(
        '<meta property="article:published_time" content="2024-05-01T08:00:00+09:00">', ""
    )
    assert found["published_at"] == "2024-04-30T23:00:00Z"
    assert found["published_local"] == "2024-05-01T08:00:00+09:00"
