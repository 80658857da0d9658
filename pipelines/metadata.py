"""Page metadata: title, authors, dates, site name, canonical URL and declared language.

What the page declares comes first (JSON-LD, then Open Graph and other meta tags), the markup
after (``<time>``, the byline, ``<h1>``, ``<title>``), because declarations are written for
machines and markup for people. Values are cleaned here once (entities, white space, a site
name repeated in the title, profile URLs given as authors), and the publication date is cross-
checked against the feed, the news sitemap and the URL (``choose_published_at``).
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import lxml.html
from htmldate import find_date

from pipelines.dates import to_local_iso, to_utc_iso

_WS = re.compile(r"\s+")
_URL_DATE = re.compile(r"/((?:19|20)\d\d)[/-](0[1-9]|1[0-2])(?:[/-](0[1-9]|[12]\d|3[01]))?(?=[/-])")


def split_authors(value: str | list[str] | None) -> list[str]:
    """Author names from a byline ("By A and B", "Par A, B | 12 mai") or a list of them.

    Labels ("By", "Von", "Por"...), dates and times after the names, profile URLs, e-mail
    addresses and words that are no name ("Admin", "View all posts") are dropped.
    """
    if not value:
        return []
    pieces = value if isinstance(value, list) else [value]
    names: list[str] = []
    for piece in pieces:
        if not isinstance(piece, str):
            continue
        piece = _BYLINE_END.split(clean_value(piece), maxsplit=1)[0]
        # a list holds one name an entry ("Smith, John" stays whole); a string may hold several
        for name in [piece] if isinstance(value, list) else _NAME_SEPARATOR.split(piece):
            name = _BYLINE_LABEL.sub("", name.strip(" ,;:-–—|·•")).strip(" ,;:-–—|·•")
            if _looks_like_name(name):
                names.append(name)
    return list(dict.fromkeys(names))


def _looks_like_name(name: str) -> bool:
    if not 2 <= len(name) <= 60 or len(name.split()) > 5:
        return False
    if any(char.isdigit() for char in name) or "@" in name or "/" in name or "http" in name:
        return False
    return not _NOT_A_NAME.search(name) and any(char.isalpha() for char in name)


_BYLINE_LABEL = re.compile(
    r"^(?:(?:written|posted|published|reported|text|photos?|words|story)\s+by|by|von|par|por|"
    r"di|door|af|av|przez|autor(?:in|a)?|author|auteur|redacción|reporter|text|texto)\b\s*[:：]?\s*",
    re.I,
)
# what follows the names in a byline: a date, a time, a separator, "Updated", "Published"
_BYLINE_END = re.compile(
    r"\s(?:[|•·]|[-–—]\s+\d)|\s\d{1,4}[./-]\d{1,2}|\s\d{1,2}\.\s|\b(?:updated|published|posted|on|am)(?:\s|$)"
    r"|\b(?:january|february|march|april|may|june|july|august|september|october|november|"
    r"december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?\s+\d",
    re.I,
)
_NAME_SEPARATOR = re.compile(r"\s*(?:[,;&|]|\s(?:and|und|et|y|e|i|og|och)\s)\s*", re.I)
_NOT_A_NAME = re.compile(
    r"^(?:admin|administrator|user|guest|anonymous|unknown|none|null|author|autor|editor|"
    r"no author|ph\.?d|m\.?d|msc?|rdn?|mph|dr|prof)\.?$|"
    r"\b(?:posts? by|view all|more from|all posts|follow|share|comments?|read more|"
    r"subscribe|newsletter|about the author|profile|staff (?:writer|reporter)|correspondent|"
    r"contributor|columnist|senior (?:writer|editor|reporter))\b",
    re.I,
)


def url_date(url: str | None) -> str | None:
    """The date a URL path carries (``/2024/09/`` or ``/2024/09/17/``), as ``YYYY-MM(-DD)``."""
    match = _URL_DATE.search(url or "")
    if not match:
        return None
    return "-".join(part for part in match.groups() if part)


def page_metadata(tree: lxml.html.HtmlElement) -> dict[str, Any]:
    """Metadata as the page declares it: JSON-LD first, then Open Graph/meta tags, then markup."""
    found: dict[str, Any] = {}
    published: str | None = None  # the stamp as the page wrote it, for ``published_local``
    for ld in _json_ld_articles(tree):
        found.setdefault("title", _text(ld.get("headline")))
        if not found.get("published_at") and plausible_date(_text(ld.get("datePublished"))):
            published = _text(ld.get("datePublished"))
            found["published_at"] = plausible_date(published)
        found.setdefault("modified_at", plausible_date(_text(ld.get("dateModified"))))
        found.setdefault("authors", split_authors(_ld_names(ld.get("author"))))
        publisher = ld.get("publisher")
        if isinstance(publisher, dict):
            found.setdefault("site_name", _text(publisher.get("name")))
    found = {k: v for k, v in found.items() if v}
    metas = {}
    for node in tree.iter("meta"):
        name = (node.get("property") or node.get("name") or node.get("itemprop") or "").lower()
        if node.get("content") and name not in metas:
            metas[name] = node.get("content").strip()
    for key, names in META_NAMES.items():
        for name in names:
            if not found.get(key) and metas.get(name):
                value = metas[name]
                if key.endswith("_at"):
                    found[key] = plausible_date(value)
                    if key == "published_at" and found[key]:
                        published = value
                elif key == "authors":
                    found[key] = split_authors(value)
                else:
                    found[key] = value
    if not found.get("published_at"):
        published = _markup_date(tree)
        found["published_at"] = plausible_date(published)
    if found.get("published_at"):
        found["published_local"] = to_local_iso(published)
    if not found.get("authors"):
        found["authors"] = byline_authors(tree)
    if not found.get("title"):
        found["title"] = _markup_title(tree)
    for key in ("title", "site_name"):
        if found.get(key):
            found[key] = clean_value(found[key])
    if found.get("title"):
        title = strip_site_name(found["title"], found.get("site_name"))
        found["title"] = _title_without_dangling_separator(title)
    for link in tree.iter("link"):
        if (link.get("rel") or "").lower() == "canonical" and link.get("href"):
            found["canonical_url"] = link.get("href").strip()
            break
    root = tree.getroottree().getroot()
    found["lang"] = root.get("lang") or metas.get("og:locale") or metas.get("language")
    return {k: v for k, v in found.items() if v}


def clean_value(value: str) -> str:
    """Entities decoded (titles are often escaped twice) and white space made single spaces."""
    if "&" in value:
        value = html.unescape(value)
    return _WS.sub(" ", value).strip()


def strip_site_name(title: str, site_name: str | None) -> str:
    """The title without the site's name tacked on: "Story | Site", "Site - Story"."""
    if not site_name:
        return title
    for separator in (" | ", " - ", " – ", " — ", " :: ", " · ", " » "):
        head, sep, tail = title.rpartition(separator)
        if sep and head and tail.strip().casefold() == site_name.casefold():
            return head.strip()
        head, sep, tail = title.partition(separator)
        if sep and tail and head.strip().casefold() == site_name.casefold():
            return tail.strip()
    return title


def _title_without_dangling_separator(title: str) -> str:
    return title.rstrip(" |-–—:·»").strip() or title


def plausible_date(value: str | None) -> str | None:
    """A stamp as UTC ISO, or None for the placeholders pages carry (the epoch, year 0001...)."""
    stamp = to_utc_iso(value)
    return stamp if stamp and stamp[:4] >= EARLIEST_YEAR else None


EARLIEST_YEAR = "1995"  # before it, a "publication date" on the web is a placeholder

# Elements that may hold a byline, found in one pass over the tree (faster here than an XPath
# with the same tests, which walks the tree once per alternative), then checked in Python.
_BYLINE_TAGS = ("a", "span", "div", "p", "address", "strong", "b", "em", "small", "cite",
                "h2", "h3", "h4", "h5", "li", "section", "header", "author")  # fmt: skip
_BYLINE_CLASS = re.compile(r"author|byline|\bbyl\b|writer|journalist|reporter", re.I)
_NOT_BYLINE_CLASS = re.compile(
    r"avatar|image|img|photo|picture|bio|desc|about|date|time|label|follow|social|share|box|"
    r"list|more|related|comment",
    re.I,
)
_NOT_BYLINE_AREA = re.compile(r"comment|sidebar|related|recommend|widget|footer|teaser|promo", re.I)


def byline_authors(tree: lxml.html.HtmlElement) -> list[str]:
    """Author names from the page's byline markup, when it declares none in metadata."""
    tiers: tuple[list, list] = ([], [])
    for node in tree.iter(*_BYLINE_TAGS):
        explicit = node.get("rel") == "author" or "author" in (node.get("itemprop") or "")
        if not explicit:
            marks = " ".join(filter(None, (node.get("class"), node.get("id"))))
            if not marks or not _BYLINE_CLASS.search(marks) or _NOT_BYLINE_CLASS.search(marks):
                continue
        tiers[0 if explicit else 1].append(node)
        if len(tiers[0]) + len(tiers[1]) >= 60:
            break
    for tier in tiers:
        for node in tier:
            if _in_excluded_area(node):
                continue
            names = split_authors(_byline_text(node))
            if names:
                return names[:5]
    return []


def _byline_text(node: lxml.html.HtmlElement) -> str:
    named = node.xpath(".//*[@itemprop='name']")
    if named:
        return ", ".join(n.text_content() for n in named)
    text = _WS.sub(" ", " ".join(node.itertext())).strip()
    return text if len(text) <= 120 else ""


def _in_excluded_area(node: lxml.html.HtmlElement) -> bool:
    """Inside comments, a sidebar, related stories, a footer or navigation (up to <body>, whose
    classes name the page's template, not the area)."""
    for depth, ancestor in enumerate(node.iterancestors()):
        if ancestor.tag in ("body", "html") or depth > 12:
            return False
        if ancestor.tag in ("footer", "nav"):
            return True
        marks = " ".join(filter(None, (ancestor.get("class"), ancestor.get("id"))))
        if marks and _NOT_BYLINE_AREA.search(marks):
            return True
    return False


META_NAMES = {
    "title": ("og:title", "twitter:title", "dc.title", "headline"),
    "published_at": ("article:published_time", "og:published_time", "datepublished",
                     "pubdate", "publishdate", "dc.date.issued", "dc.date", "date",
                     "sailthru.date", "parsely-pub-date"),
    "modified_at": ("article:modified_time", "og:updated_time", "datemodified"),
    "site_name": ("og:site_name", "application-name"),
    "authors": ("author", "article:author", "dc.creator", "byl", "parsely-author"),
}  # fmt: skip


def _markup_date(tree: lxml.html.HtmlElement) -> str | None:
    """A <time datetime> or, failing that, htmldate's fast (markup-only) search; as written."""
    for node in tree.iter("time"):
        if plausible_date(node.get("datetime")):
            return node.get("datetime")
    try:
        return find_date(tree, extensive_search=False, original_date=True)
    except Exception:  # htmldate raises on odd trees; a missing date is not a failure
        return None


def _markup_title(tree: lxml.html.HtmlElement) -> str | None:
    heading = next(iter(tree.iter("h1")), None)
    if heading is not None and heading.text_content().strip():
        return heading.text_content()
    title = next(iter(tree.iter("title")), None)
    return title.text_content() if title is not None else None


def _json_ld_articles(tree: lxml.html.HtmlElement) -> list[dict[str, Any]]:
    found = []
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        stack = data if isinstance(data, list) else [data]
        for entry in list(stack):
            if isinstance(entry, dict) and isinstance(entry.get("@graph"), list):
                stack.extend(entry["@graph"])
        for node in stack:
            kind = node.get("@type") if isinstance(node, dict) else None
            kinds = kind if isinstance(kind, list) else [kind]
            if any(isinstance(k, str) and ("Article" in k or k == "BlogPosting") for k in kinds):
                found.append(node)
    return found


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def _ld_names(value: Any) -> list[str] | None:
    if not value:
        return None
    items = value if isinstance(value, list) else [value]
    names = [i.get("name") if isinstance(i, dict) else str(i) for i in items]
    return [n for n in names if isinstance(n, str) and n] or None


def choose_published_at(
    page_at: str | None,
    *,
    feed_at: str | None = None,
    sitemap_at: str | None = None,
    url_date: str | None = None,
    now: datetime | None = None,
) -> tuple[str | None, list[str]]:
    """The publication date to store and the warnings from cross-checking every witness.

    The page's own date (JSON-LD/meta/markup) wins, then the news sitemap's, then the feed's.
    A date more than a day in the future is flagged and replaced by a witness that is not; two
    witnesses more than two days apart, or a date outside the URL's year/month, are flagged.
    """
    limit = (now or datetime.now(UTC)) + timedelta(days=1)
    witnesses = {"page": page_at, "sitemap": sitemap_at, "feed": feed_at}
    present = {name: stamp for name, stamp in witnesses.items() if stamp}
    flags = []
    future = {name for name, stamp in present.items() if _moment(stamp) > limit}
    if future:
        flags.append("date-in-future")
    usable = [stamp for name, stamp in present.items() if name not in future]
    chosen = usable[0] if usable else next(iter(present.values()), None)
    names = list(present)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if abs((_moment(present[first]) - _moment(present[second])).days) > 2:
                flags.append(f"dates-disagree:{first}-{second}")
    if chosen and url_date and not _fits_url_date(chosen, url_date):
        flags.append("dates-disagree:url")
    return chosen, flags


def _moment(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fits_url_date(stamp: str, path_date: str) -> bool:
    """Is the date within two days of the URL's day, or of its month when it names no day?"""
    moment = _moment(stamp)
    parts = [int(p) for p in path_date.split("-")]
    first = datetime(parts[0], parts[1], parts[2] if len(parts) > 2 else 1, tzinfo=UTC)
    if len(parts) > 2:
        last = first + timedelta(days=1)
    else:
        last = (first + timedelta(days=32)).replace(day=1)
    return first - timedelta(days=2) <= moment <= last + timedelta(days=2)

