"""The offline demo web: five outlets, each on its own port of 127.0.0.1, rendered from data.

Outlets come from ``outlets.toml``, articles from ``content/<outlet>/*.toml``, chrome from
``templates/<outlet>/*.html``. Feeds, sitemaps and section pages are built from the articles
that are published, so ``publish()`` (or ``POST /_demo/publish`` on any outlet) makes a held-back
article appear everywhere at once, as on a real site. Feeds and sitemaps answer conditional
GETs with 304, and every request is logged for tests to inspect.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from string import Template
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from crawler.sources import Source

PACKAGE = resources.files("crawler.demo")


@dataclass
class DemoArticle:
    outlet: str
    slug: str
    title: str
    section: str
    published_at: str
    language: str
    summary: str
    label: str
    paragraphs: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    modified_at: str | None = None
    charset: str | None = None
    caption: str | None = None
    comments: list[dict[str, str]] = field(default_factory=list)
    body_html: str | None = None
    copy_of: str | None = None
    publish_later: bool = False

    @property
    def key(self) -> str:
        return f"{self.outlet}/{self.slug}"

    @property
    def path(self) -> str:
        stamp = self.published_at[:7].replace("-", "/")
        return f"/{self.section}/{stamp}/{self.slug}.html"


@dataclass
class Outlet:
    name: str
    site_name: str
    language: str
    charset: str
    date_format: str
    jsonld: bool
    sections: list[dict[str, str]]
    feeds: list[dict[str, str]]
    news_sitemap: str | None = None
    utc_offset_hours: int = 0  # pages write their times in the outlet's own zone, feeds in UTC
    port: int = 0

    def local_time(self, stamp: str) -> datetime:
        return _parse(stamp).astimezone(timezone(timedelta(hours=self.utc_offset_hours)))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def section_title(self, slug: str) -> str:
        return next((s["title"] for s in self.sections if s["slug"] == slug), slug)


def load_outlets() -> dict[str, Outlet]:
    data = tomllib.loads(PACKAGE.joinpath("outlets.toml").read_text("utf-8"))
    return {entry["name"]: Outlet(**entry) for entry in data["outlet"]}


def load_articles(outlets: dict[str, Outlet]) -> list[DemoArticle]:
    articles = []
    for outlet in outlets:
        folder = PACKAGE.joinpath("content", outlet)
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".toml"):
                data = tomllib.loads(entry.read_text("utf-8"))
                articles.append(DemoArticle(outlet=outlet, slug=entry.name[:-5], **data))
    return articles


class DemoWeb:
    """The demo outlets, served in background threads; use as a context manager."""

    def __init__(self) -> None:
        self.outlets = load_outlets()
        self.articles = load_articles(self.outlets)
        self.published = {a.key for a in self.articles if not a.publish_later}
        self.templates: dict[tuple[str, str], Template] = {}
        self.lock = threading.Lock()
        self.request_log: list[tuple[str, str, int]] = []  # (outlet, path, status)
        self.servers: list[ThreadingHTTPServer] = []
        self.feed_failures: set[str] = set()  # outlet names whose feeds answer 500 (tests)
        self.gone: set[str] = set()  # article keys still listed in feeds but answering 404

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> DemoWeb:
        for outlet in self.outlets.values():
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self, outlet))
            server.daemon_threads = True
            outlet.port = server.server_address[1]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> DemoWeb:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- what tests and the CLI ask ------------------------------------------------------
    def sources(self, kinds: tuple[str, ...] = ("rss", "atom", "news-sitemap", "section")):
        """The demo's sources: every feed, every news sitemap, one section page per outlet.

        All may fetch from loopback (``allow_private``); the content farm has low trust.
        """
        found: list[Source] = []

        def add(outlet: Outlet, name: str, path: str, kind: str, **extra: Any) -> None:
            if kind in kinds:
                found.append(
                    Source(name=name, url=outlet.base_url + path.lstrip("/"), kind=kind,
                           interval_minutes=1, allow_private=True, recent_days=3650,
                           trust=0.2 if outlet.name == "wuhan-lighting" else 1.0, **extra)
                )  # fmt: skip

        for outlet in self.outlets.values():
            for feed in outlet.feeds:
                stem = feed["path"].strip("/").split("/")[-1].rsplit(".", 1)[0] or feed["kind"]
                name = outlet.name if len(outlet.feeds) == 1 else f"{outlet.name}-{stem}"
                add(outlet, name, feed["path"], feed["kind"],
                    language=feed.get("language", outlet.language))  # fmt: skip
            if outlet.news_sitemap:
                add(outlet, f"{outlet.name}-news-sitemap", outlet.news_sitemap, "news-sitemap")
            section = outlet.sections[-1]["slug"]
            add(outlet, f"{outlet.name}-section-{section}", f"/section/{section}/", "section",
                article_pattern=r"/\d{4}/\d{2}/[^/]+\.html$")  # fmt: skip
        return found

    def url_of(self, key: str) -> str:
        article = self.article(key)
        return self.outlets[article.outlet].base_url + article.path.lstrip("/")

    def article(self, key: str) -> DemoArticle:
        return next(a for a in self.articles if a.key == key)

    def published_articles(self, outlet: str | None = None) -> list[DemoArticle]:
        with self.lock:
            chosen = [a for a in self.articles if a.key in self.published]
        if outlet:
            chosen = [a for a in chosen if a.outlet == outlet]
        return sorted(chosen, key=lambda a: a.published_at, reverse=True)

    def publish(self, key: str | None = None) -> DemoArticle:
        """Publish a held-back article (the first one if no key), dated now."""
        with self.lock:
            waiting = [a for a in self.articles if a.key not in self.published]
            if key:
                waiting = [a for a in waiting if a.key == key]
            if not waiting:
                raise LookupError("no held-back article left to publish")
            article = waiting[0]
            article.published_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.published.add(article.key)
        return article

    def article_requests(self) -> list[str]:
        with self.lock:
            return [path for _, path, _ in self.request_log if path.endswith(".html")]

    # --- rendering ----------------------------------------------------------------------
    def template(self, outlet: str, page: str) -> Template:
        if (outlet, page) not in self.templates:
            text = PACKAGE.joinpath("templates", outlet, f"{page}.html").read_text("utf-8")
            self.templates[(outlet, page)] = Template(text)
        return self.templates[(outlet, page)]

    def common(self, outlet: Outlet, charset: str, lang: str) -> dict[str, str]:
        nav = "\n".join(
            f'<li><a href="{outlet.base_url}section/{s["slug"]}/">{html.escape(s["title"])}</a></li>'
            for s in outlet.sections
        )
        links = "\n".join(
            f'<link rel="alternate" type="application/{f["kind"]}+xml" '
            f'title="{html.escape(f["title"])}" href="{outlet.base_url}{f["path"].lstrip("/")}">'
            for f in outlet.feeds
        )
        return {"lang": lang, "charset": charset, "site_name": html.escape(outlet.site_name),
                "home_url": outlet.base_url, "nav_html": nav, "feed_links": links,
                "year": str(datetime.now(UTC).year)}  # fmt: skip

    def render_article(self, article: DemoArticle) -> tuple[bytes, str]:
        outlet = self.outlets[article.outlet]
        charset = article.charset or outlet.charset
        url = outlet.base_url + article.path.lstrip("/")
        published = outlet.local_time(article.published_at)
        related = [a for a in self.published_articles(outlet.name) if a.key != article.key][:4]
        values = {
            **self.common(outlet, charset, article.language),
            "title": html.escape(article.title),
            "description": html.escape(article.summary),
            "canonical_url": url,
            "published_iso": published.isoformat(),
            "published_display": published.strftime(outlet.date_format),
            "modified_iso": article.modified_at or article.published_at,
            "authors": html.escape(", ".join(article.authors)),
            "byline_html": _byline(article.authors),
            "section_title": html.escape(outlet.section_title(article.section)),
            "section_url": f"{outlet.base_url}section/{article.section}/",
            "body_html": article.body_html or _body(article),
            "comments_html": _comments(article.comments),
            "comment_count": str(len(article.comments)),
            "related_html": "\n".join(_list_item(outlet, a) for a in related),
            "jsonld": _jsonld(article, outlet, url) if outlet.jsonld else "",
        }
        page = self.template(outlet.name, "article").substitute(values)
        return page.encode(charset, errors="xmlcharrefreplace"), charset

    def render_listing(self, outlet: Outlet, section: str | None) -> bytes:
        articles = self.published_articles(outlet.name)
        if section:
            articles = [a for a in articles if a.section == section]
        title = outlet.section_title(section) if section else ""
        values = {
            **self.common(outlet, outlet.charset, outlet.language),
            "page_title": html.escape(
                f"{title} - {outlet.site_name}" if title else outlet.site_name
            ),
            "article_list_html": "\n".join(_list_item(outlet, a) for a in articles),
            "section_title": html.escape(title),
        }
        page = self.template(outlet.name, "section" if section else "home").substitute(values)
        return page.encode(outlet.charset, errors="xmlcharrefreplace")

    def render_feed(self, outlet: Outlet, feed: dict[str, str]) -> bytes:
        articles = self.published_articles(outlet.name)
        if feed.get("section"):
            articles = [a for a in articles if a.section == feed["section"]]
        if feed.get("language"):
            articles = [a for a in articles if a.language == feed["language"]]
        suffix = feed.get("link_suffix", "")
        links = [(a, outlet.base_url + a.path.lstrip("/") + suffix) for a in articles]
        if feed["kind"] == "atom":
            return _atom(outlet, feed, links)
        return _rss(outlet, feed, links)

    def render_news_sitemap(self, outlet: Outlet) -> bytes:
        rows = []
        for a in self.published_articles(outlet.name):
            rows.append(
                f"<url><loc>{xml_escape(outlet.base_url + a.path.lstrip('/'))}</loc>"
                f"<lastmod>{a.modified_at or a.published_at}</lastmod><news:news>"
                f"<news:publication><news:name>{xml_escape(outlet.site_name)}</news:name>"
                f"<news:language>{a.language}</news:language></news:publication>"
                f"<news:publication_date>{a.published_at}</news:publication_date>"
                f"<news:title>{xml_escape(a.title)}</news:title></news:news></url>"
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">\n'
            + "\n".join(rows)
            + "\n</urlset>\n"
        ).encode("utf-8")

    def robots(self, outlet: Outlet) -> bytes:
        lines = ["User-agent: *", "Disallow: /search", "Disallow: /member/", ""]
        if outlet.news_sitemap:
            lines.append(f"Sitemap: {outlet.base_url}{outlet.news_sitemap.lstrip('/')}")
        return ("\n".join(lines) + "\n").encode("ascii")

    def route(self, outlet: Outlet, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path`` on ``outlet``."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path == "/":
            return 200, self.render_listing(outlet, None), f"text/html; charset={outlet.charset}"
        if path == "/robots.txt":
            return 200, self.robots(outlet), "text/plain"
        for feed in outlet.feeds:
            if path == feed["path"]:
                if outlet.name in self.feed_failures:
                    return 500, b"Internal Server Error", "text/plain"
                kind = "application/atom+xml" if feed["kind"] == "atom" else "application/rss+xml"
                return 200, self.render_feed(outlet, feed), f"{kind}; charset=utf-8"
        if outlet.news_sitemap and path == outlet.news_sitemap:
            return 200, self.render_news_sitemap(outlet), "application/xml"
        if path.startswith("/section/"):
            slug = path.strip("/").split("/")[-1]
            if any(s["slug"] == slug for s in outlet.sections):
                body = self.render_listing(outlet, slug)
                return 200, body, f"text/html; charset={outlet.charset}"
        for article in self.published_articles(outlet.name):
            if article.path == path and article.key not in self.gone:
                body, charset = self.render_article(article)
                return 200, body, f"text/html; charset={charset}"
        return 404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html"


def _handler_for(web: DemoWeb, outlet: Outlet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "nkwatch-demo/1"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            status, body, content_type = web.route(outlet, self.path)
            validator = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            cacheable = content_type.startswith(("application/", "text/xml"))
            if cacheable and status == 200 and self.headers.get("If-None-Match") == validator:
                status, body = 304, b""
            with web.lock:
                web.request_log.append((outlet.name, self.path, status))
            self.send_response(status)
            if cacheable:
                self.send_header("ETag", validator)
                self.send_header("Last-Modified", format_datetime(datetime.now(UTC), usegmt=True))
            if status != 304:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/_demo/publish":
                self.send_error(404)
                return
            key = self.path.split("key=", 1)[1] if "key=" in self.path else None
            try:
                article = web.publish(key)
                status, answer = 200, {"published": article.key, "url": web.url_of(article.key)}
            except LookupError as error:
                status, answer = 404, {"error": str(error)}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _byline(authors: list[str]) -> str:
    if not authors:
        return ""
    names = ", ".join(f'<a rel="author" href="#">{html.escape(n)}</a>' for n in authors)
    return f'<p class="byline">By {names}</p>'


def _body(article: DemoArticle) -> str:
    parts = []
    if article.caption:
        parts.append(
            f'<figure class="photo"><img src="/img/{article.slug}.jpg" alt="">'
            f"<figcaption>{html.escape(article.caption)}</figcaption></figure>"
        )
    parts.extend(f"<p>{html.escape(p)}</p>" for p in article.paragraphs)
    return "\n".join(parts)


def _comments(comments: list[dict[str, str]]) -> str:
    if not comments:
        return ""
    items = "\n".join(
        f'<li class="comment"><div class="comment-author">{html.escape(c["author"])}</div>'
        f'<div class="comment-body"><p>{html.escape(c["text"])}</p></div></li>'
        for c in comments
    )
    return f'<ol class="comment-list">\n{items}\n</ol>'


def _list_item(outlet: Outlet, article: DemoArticle) -> str:
    return (
        f'<li><a href="{outlet.base_url}{article.path.lstrip("/")}">{html.escape(article.title)}'
        f'</a> <span class="date">{article.published_at[:10]}</span></li>'
    )


def _jsonld(article: DemoArticle, outlet: Outlet, url: str) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": article.title,
        "datePublished": outlet.local_time(article.published_at).isoformat(),
        "dateModified": article.modified_at or article.published_at,
        "author": [{"@type": "Person", "name": n} for n in article.authors],
        "publisher": {"@type": "Organization", "name": outlet.site_name},
        "mainEntityOfPage": url,
        "inLanguage": article.language,
    }
    text = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/ld+json">{text}</script>'


def _rss(outlet: Outlet, feed: dict[str, str], links: list[tuple[DemoArticle, str]]) -> bytes:
    items = []
    for article, link in links:
        authors = "".join(
            f"<dc:creator>{xml_escape(name)}</dc:creator>" for name in article.authors
        )
        items.append(
            f"<item><title>{xml_escape(article.title)}</title><link>{xml_escape(link)}</link>"
            f'<guid isPermaLink="false">{xml_escape(article.key)}</guid>'
            f"<pubDate>{format_datetime(_parse(article.published_at))}</pubDate>{authors}"
            f"<description>{xml_escape(article.summary)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{xml_escape(feed['title'])}</title><link>{outlet.base_url}</link>"
        f"<description>{xml_escape(outlet.site_name)}</description>"
        f"<language>{feed.get('language', outlet.language)}</language>\n"
        + "\n".join(items)
        + "\n</channel></rss>\n"
    ).encode("utf-8")


def _atom(outlet: Outlet, feed: dict[str, str], links: list[tuple[DemoArticle, str]]) -> bytes:
    updated = links[0][0].published_at if links else "2024-01-01T00:00:00Z"
    entries = []
    for article, link in links:
        authors = "".join(
            f"<author><name>{xml_escape(name)}</name></author>" for name in article.authors
        )
        entries.append(
            f"<entry><title>{xml_escape(article.title)}</title>"
            f'<link rel="alternate" href="{xml_escape(link)}"/>'
            f"<id>tag:{outlet.name},2024:{xml_escape(article.slug)}</id>"
            f"<published>{article.published_at}</published>"
            f"<updated>{article.modified_at or article.published_at}</updated>{authors}"
            f"<summary>{xml_escape(article.summary)}</summary></entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{xml_escape(feed['title'])}</title>"
        f'<link rel="alternate" href="{outlet.base_url}"/>'
        f'<link rel="self" href="{outlet.base_url}{feed["path"].lstrip("/")}"/>'
        f"<id>{outlet.base_url}</id><updated>{updated}</updated>\n"
        + "\n".join(entries)
        + "\n</feed>\n"
    ).encode("utf-8")
