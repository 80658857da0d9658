"""A fault-serving web on 127.0.0.1: every way a feed or page can go wrong, one path each.

``CASES`` maps a case name to the source kind that exercises it and the reason a crawl must
report; ``HostileWeb`` serves them all on one port, and a good feed beside them.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = (
    "<html><head><title>{title}</title></head><body><nav>Home | World | Sports</nav><article>"
    "<h1>{title}</h1>" + "<p>{sentence} This paragraph is part of a long enough article body "
    "for the extractor to keep it, with several sentences of ordinary reporting.</p>"
    * 6
    + "</article><footer>Copyright Hostile Web</footer></body></html>"
)
KOREAN = "북한 당국이 휴대전화 사용자를 단속하고 있다고 소식통이 전했다."


def article(title: str, sentence: str = "Officials said the investigation continues.") -> str:
    return ARTICLE.format(title=title, sentence=sentence)


def rss(items: list[tuple[str, str]], title: str = "Hostile feed") -> bytes:
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid></item>"
        for t, link in items
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{title}'
            f"</title>{body}</channel></rss>").encode()  # fmt: skip


@dataclass
class Case:
    """One hostile case: the source that reaches it and what the crawl must say about it."""

    source_path: str
    kind: str
    reason: str | tuple[str, ...]  # the logged reason contains this (or one of these)
    description: str


CASES: dict[str, Case] = {
    "malformed-feed": Case("/feeds/malformed.xml", "rss", "malformed feed", "RSS with broken XML, read leniently"),
    "truncated-feed": Case("/feeds/truncated.xml", "rss", "malformed feed", "a feed cut off mid-element"),
    "html-feed": Case("/feeds/html.xml", "rss", "HTML page, not a feed", "an HTML page where a feed should be"),
    "huge-feed": Case("/feeds/huge.xml", "rss", "cut to", "10,000 entries"),
    "duplicate-guids": Case("/feeds/dupes.xml", "rss", "duplicate", "the same entry listed three times"),
    "bad-links": Case("/feeds/badlinks.xml", "rss", "not an http(s) link", "javascript:, file:, data: links"),
    "billion-laughs-feed": Case("/feeds/laughs.xml", "rss", "entity declarations", "XML entity expansion"),
    "external-entity-feed": Case("/feeds/xxe.xml", "rss", "entity declarations", "an external entity"),
    "external-entity-sitemap": Case("/sitemaps/xxe.xml", "sitemap", "entity declarations", "XXE in a sitemap"),
    "wrong-charset": Case("/feeds/charsets.xml", "rss", "stored", "EUC-KR page declared as UTF-8, page with no charset"),
    "binary-as-html": Case("/feeds/binary.xml", "rss", "not HTML: binary", "a PNG served as text/html"),
    "huge-body": Case("/feeds/hugebody.xml", "rss", "max size", "a 50 MB page"),
    "gzip-bomb": Case("/feeds/bomb.xml", "rss", "DOWNLOAD_MAXSIZE", "a gzip bomb"),
    "slow-drip": Case("/feeds/drip.xml", "rss", "timed out", "a body that never ends"),
    "redirect-loop": Case("/feeds/loop.xml", "rss", "max redirections", "endless redirects"),
    "redirect-scheme": Case("/feeds/scheme.xml", "rss", "HTTP 302", "a redirect to file:///etc/passwd"),
    "rate-limited": Case("/feeds/ratelimit.xml", "rss", "stored", "429 with Retry-After, then 200"),
    "server-errors": Case("/feeds/errors.xml", "rss", "HTTP 50", "500, 502 and 503 pages"),
    "reset-mid-body": Case("/feeds/reset.xml", "rss", ("ResponseFailed", "timed out", "onnection"), "a connection reset mid-body"),
    "robots-disallow": Case("/feeds/robots.xml", "rss", "robots.txt", "a site whose robots.txt forbids all"),
    "meta-refresh": Case("/feeds/refresh.xml", "rss", "stored", "a page that moves on by <meta http-equiv=refresh>"),
    "not-found-feed": Case("/feeds/gone.xml", "rss", "HTTP 404", "a feed that is gone"),
}  # fmt: skip
GOOD_FEED = "/feeds/good.xml"
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
          b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">'
          b'<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>'
          b'<rss version="2.0"><channel><title>&e;</title><item><title>&e;</title>'
          b"<link>/pages/laugh.html</link></item></channel></rss>")  # fmt: skip
XXE = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<rss version="2.0"><channel><title>x</title><item><title>&x;</title>'
       b"<link>/pages/xxe.html</link></item></channel></rss>")  # fmt: skip
XXE_SITEMAP = (b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
               b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
               b"<url><loc>http://127.0.0.1/&x;</loc></url></urlset>")  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up on a hostile page are expected; do not print their tracebacks."""

    def handle_error(self, request, client_address) -> None:
        pass


class HostileWeb:
    """Serves every case of ``CASES`` and a good feed; ``hits`` counts requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.robots_server = QuietServer(("127.0.0.1", 0), self._handler(robots_all=True))
        self.robots_server.daemon_threads = True
        self.robots_base = f"http://127.0.0.1:{self.robots_server.server_address[1]}"
        self._bomb = self._make_bomb()

    def __enter__(self) -> HostileWeb:
        for server in (self.server, self.robots_server):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for server in (self.server, self.robots_server):
            server.shutdown()
            server.server_close()

    def source_url(self, case: str) -> str:
        base = self.robots_base if case == "robots-disallow" else self.base
        return base + CASES[case].source_path

    @staticmethod
    def _make_bomb() -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        chunk = b"\0" * (1 << 20)
        parts = [compressor.compress(chunk) for _ in range(300)]  # 300 MB of zeros, ~300 KB
        return b"".join(parts) + compressor.flush()

    def feed_for(self, path: str) -> bytes | None:
        pages = {
            "/feeds/malformed.xml": rss([("ok", "/pages/ok-1.html")]).replace(b"</channel>", b"<channel><item></rss"),
            "/feeds/truncated.xml": rss([("ok", "/pages/ok-2.html"), ("x", "/pages/never.html")])[:-60],
            "/feeds/html.xml": b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>",
            "/feeds/huge.xml": rss([(f"n{i}", f"/pages/many-{i}.html") for i in range(10_000)]),
            "/feeds/dupes.xml": rss([("d", "/pages/dupe.html")] * 3 + [("d2", "/pages/dupe.html?utm_source=x")]),
            "/feeds/badlinks.xml": rss([("js", "javascript:alert(1)"), ("file", "file:///etc/passwd"),
                                        ("data", "data:text/html,<p>x</p>"), ("rel", "../pages/relative.html")]),
            "/feeds/laughs.xml": LAUGHS,
            "/feeds/xxe.xml": XXE,
            "/feeds/charsets.xml": rss([("kr", "/pages/euckr.html"), ("none", "/pages/nocharset.html")]),
            "/feeds/binary.xml": rss([("png", "/pages/binary.html")]),
            "/feeds/hugebody.xml": rss([("big", "/pages/huge.html")]),
            "/feeds/bomb.xml": rss([("bomb", "/pages/bomb.html")]),
            "/feeds/drip.xml": rss([("drip", "/pages/drip.html")]),
            "/feeds/loop.xml": rss([("loop", "/pages/loop-0.html")]),
            "/feeds/scheme.xml": rss([("scheme", "/pages/to-file.html")]),
            "/feeds/ratelimit.xml": rss([("rl", "/pages/ratelimited.html")]),
            "/feeds/errors.xml": rss([(f"e{c}", f"/pages/error-{c}.html") for c in (500, 502, 503)]),
            "/feeds/reset.xml": rss([("reset", "/pages/reset.html")]),
            "/feeds/robots.xml": rss([("r", "/pages/ok-3.html")]),
            "/feeds/refresh.xml": rss([("moved", "/pages/refresh.html")]),
            GOOD_FEED: rss([(f"good {i}", f"/pages/good-{i}.html") for i in range(3)]),
        }  # fmt: skip
        return pages.get(path)

    def _handler(self, robots_all: bool = False):
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                with web.lock:
                    web.hits[path] = web.hits.get(path, 0) + 1
                    count = web.hits[path]
                if path == "/robots.txt":
                    rules = (
                        "User-agent: *\nDisallow: /\n"
                        if robots_all
                        else "User-agent: *\nAllow: /\n"
                    )
                    return self.reply(200, rules.encode(), "text/plain")
                feed = web.feed_for(path)
                if feed is not None:
                    return self.reply(200, feed, "application/rss+xml")
                if path == "/sitemaps/xxe.xml":
                    return self.reply(200, XXE_SITEMAP, "application/xml")
                if path.startswith("/pages/"):
                    return self.page(path[len("/pages/") :], count)
                return self.reply(404, b"not found", "text/plain")

            def page(self, name: str, count: int):
                if name == "euckr.html":
                    body = (
                        f"<html><head><title>{KOREAN}</title></head><body><article>"
                        + f"<p>{KOREAN} 주민들은 중국산 휴대전화로 외부와 통화한다.</p>" * 8
                        + "</article></body></html>"
                    )
                    return self.reply(200, body.encode("euc-kr"), "text/html; charset=utf-8")
                if name == "nocharset.html":
                    body = article(
                        "Caf\u00e9 owners report \u201cnew\u201d scams",
                        "Caf\u00e9 na\u00efve r\u00e9sum\u00e9.",
                    )
                    return self.reply(200, body.encode("utf-8"), "text/html")
                if name == "binary.html":
                    return self.reply(200, PNG, "text/html")
                if name == "huge.html":
                    return self.stream(50 * 1024 * 1024)
                if name == "bomb.html":
                    return self.reply(200, web._bomb, "text/html", {"Content-Encoding": "gzip"})
                if name == "drip.html":
                    return self.drip()
                if name.startswith("loop-"):
                    step = int(name[5:-5]) + 1
                    return self.reply(
                        302, b"", "text/html", {"Location": f"/pages/loop-{step}.html"}
                    )
                if name == "to-file.html":
                    return self.reply(302, b"", "text/html", {"Location": "file:///etc/passwd"})
                if name == "ratelimited.html" and count == 1:
                    return self.reply(429, b"slow down", "text/plain", {"Retry-After": "1"})
                if name.startswith("error-"):
                    return self.reply(int(name[6:9]), b"<html>error</html>", "text/html")
                if name == "reset.html":
                    return self.reset()
                if name == "refresh.html":
                    body = (b"<html><head><meta http-equiv='Refresh' content='0; url=/pages/"
                            b"refreshed-story.html'></head><body>Moved.</body></html>")  # fmt: skip
                    return self.reply(200, body, "text/html; charset=utf-8")
                return self.reply(
                    200,
                    article(name.replace("-", " ").title()).encode(),
                    "text/html; charset=utf-8",
                )

            def reply(self, status, body, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def stream(self, size: int):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"<p>" + b"x" * 65_530 + b"</p>"
                try:
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                except OSError:
                    pass

            def drip(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Connection", "close")  # no length: the body ends when we close
                self.end_headers()
                try:
                    for _ in range(120):  # bounded: gives up after a minute by itself
                        self.wfile.write(b"<p>")
                        self.wfile.flush()
                        time.sleep(0.5)
                except OSError:
                    pass

            def reset(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"<html><body><p>partial")
                self.wfile.flush()
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                self.connection.close()

            def log_message(self, *args):
                pass

        return Handler
