"""Extraction: the one module that imports trafilatura.

``extract_article(html, url=None)`` turns one page into clean body text, reader comments kept
apart, metadata and health flags. Everything else (the pipeline, ``nkwatch extract``,
``nkwatch reextract``, the benchmark) calls it, so there is exactly one definition of "the text
of a page". Lines a site repeats on every page are a second, per-site step (``pipelines.boilerplate``)
because no single page can tell its own chrome from its story.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from copy import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import lxml.html
import trafilatura
from trafilatura.settings import Extractor, use_config
from trafilatura.utils import DOCTYPE_TAG, FAULTY_HTML, HTML_PARSER, load_html

from pipelines.dates import to_utc_iso
from pipelines.decode import decode_html
from pipelines.metadata import choose_published_at, page_metadata, split_authors, url_date

logger = logging.getLogger(__name__)

EXTRACTOR_VERSION = f"nkwatch-3+trafilatura-{trafilatura.__version__}"
MIN_WORDS = 20
MAX_HTML_BYTES = 20 * 1024 * 1024
FALLBACK_BELOW_WORDS = 100  # a main pass shorter than this gets trafilatura's fallbacks too

# Lines that are page furniture on any site that prints them alone on a line: share and print
# tools, "read more" and subscription prompts. Matched whole, case-insensitively.
CHROME_LINES = frozenset(
    line.casefold()
    for line in """
email story|email this story|e-mail this story|print story|print this story|print this article
comment on this story|view full site|more listening options|share this story|share this article
share on facebook|share on twitter|share on x|share via email|share|tweet|print|email
read more|read the full story|continue reading|advertisement|sponsored content|related stories
related articles|most read|most viewed|popular|subscribe|sign up for our newsletter
login to leave a comment|log in to comment|leave a comment|comments|back to top|listen
download our app|skip to content|skip to main content|cookie settings|accept cookies|accept all
分享到|打印|返回顶部|相关新闻|热门资讯|广告|기사 공유|인쇄|댓글|関連記事|広告
related content|contenido relacionado|noticias relacionadas|à lire aussi|lire aussi|pour lire la suite
pour accéder en illimité|lesen sie auch|weitere beiträge aus der kolumne|czytaj także|czytaj też
""".replace("\n", "|").split("|")
    if line.strip()
)
# Lines that are furniture by their shape, on any site: a cross-link to another story ("Read
# more: <headline>", "Lea también: ...") and calls to subscribe, sign up or follow. Matched at
# the start of a casefolded line of at most CHROME_PATTERN_MAX_WORDS words, so a sentence of the
# story that merely mentions a newsletter is kept.
CHROME_PATTERN_MAX_WORDS = 40
CHROME_LINE_PATTERN = re.compile(
    r"(?:read more|read also|also read|see also|related|more on this|watch|lea también|lea más"
    r"|lea|mire|vea también|puedes ver|lire aussi|à lire aussi|voir aussi|lesen sie auch"
    r"|mehr zum thema|czytaj (?:też|także|więcej)|zobacz (?:też|także)|leggi anche|leia também"
    r"|관련\s?기사|相关阅读|延伸阅读|関連記事)\s*[:»›|]"
    r"|subscribe (?:now|today|to)\b|sign up (?:now |today |here )?(?:to|for)\b|never miss\b"
    r"|(?:get|receive) the\b.{0,60}\b(?:newsletter|daily edition|briefing)\b"
    r"|follow (?:us|[^.]{1,40}?) on (?:twitter|facebook|instagram|x|linkedin|telegram|whatsapp"
    r"|tiktok|youtube|google news)\b"
    r"|for the latest\b.{0,80}\b(?:download|follow|subscribe)\b"
    r"|to (?:view|read|continue reading|access) (?:the|this) (?:full |rest of the |entire )?"
    r"(?:story|article)\b.{0,40}\bsubscri"
    r"|if you.re (?:seeing this message|already a subscriber)"
    r"|[(\[]?(?:photo|photograph|image|picture|credit|foto|bild|quelle|사진|写真|图片)\s?[:：=]"
    r"(?=[^.!?]{0,60}$)"
    r"|[<\[(]?\s*(?:copyright(?:\s*(?:©|ⓒ|\(c\)|\d{4})|$)|ⓒ|©|\(c\)\s*\d{4}"
    r"|저작권자\s*(?:ⓒ|©|\(c\)))"
)
# The same for phrases found later in the line; searched only in lines holding the cue word.
CHROME_LINE_CUES = ("copyrighted", "newsletter", "sign up", "comment", "rights reserved", "무단",
                    "재배포", "無断", "转载", "轉載", "版权", "版權", "przedruk")  # fmt: skip
CHROME_LINE_TAIL = re.compile(
    r"\bcopyrighted property of\b|^[^.!?]{0,40}\bnewsletter$|\bsign up (?:here|now|today)[.!]?$"
    r"|\ball rights reserved\b|무단\s*(?:전재|복제)|재배포\s*금지|無断(?:転載|複製|転用)"
    r"|(?:未经|未經).{0,12}(?:转载|轉載|使用)|版权所有|版權所有|zasady przedruków"
    r"|\bcomments? (?:are|is|will be) (?:moderated|reviewed)\b|\bcomment(?:ing)? (?:policy|rules|"
    r"guidelines)\b|\bwe welcome (?:reader |your )?comments\b|\bwe ask that comments\b"
)
# Phrases that betray chrome inside a kept line. Not removed (an article may quote them), but
# an article that still contains one is flagged for a look.
CHROME_HINTS = re.compile(
    r"all rights reserved|copyright ©|©\s*\d{4}|powered by|版权所有|무단\s*전재|"
    r"sign up for our newsletter|click here to|this website uses cookies",
    re.I,
)
# The same hints for lower-cased text. Lower-casing matches as ``re.I`` does for every character
# but these three, which ``re.I`` folds onto "i" or "s" and ``str.lower`` does not.
_CHROME_HINTS_LOWERED = re.compile(CHROME_HINTS.pattern)
_FOLDS_UNLIKE_LOWER = ("ı", "ſ", "İ")
# Reader-comment furniture: counters ("11 Comments", "网友留言 (0)", "已有0条评论"), sign-in
# prompts and moderation notices. A comment section reduced to these has no comments.
_COMMENT_WORDS = (
    r"comments?|responses?|replies|reactions|评论|留言|網友留言|网友留言|网友评论|댓글|コメント"
)
COMMENT_COUNTER = re.compile(
    rf"^\s*(?:(\d+)\s*(?:{_COMMENT_WORDS})|(?:{_COMMENT_WORDS})\s*[(（\[]?\s*(\d+)\s*[)）\]]?"
    rf"|(?:{_COMMENT_WORDS})?\s*已有\s*(\d+)\s*条(?:评论|留言)|(?:{_COMMENT_WORDS}))\s*$",
    re.I,
)
COMMENT_CHROME = re.compile(
    r"^(?:.{0,40}\b(?:sign in|log ?in|sign up|register)\b.{0,80}"
    r"|comments? (?:are|policy).*|.*community guidelines.*|.*keep (?:it|them) civil.*"
    r"|(?:留言|评论)须知.*|.*请遵守.*法律法规.*|.*(?:登录|注册)后.{0,20}|댓글.{0,30}(?:로그인|운영원칙).*"
    r"|.{0,30}don't have an account.*)$",
    re.I,
)
_GARBAGE = re.compile(r"[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_LETTER = re.compile(r"[^\W\d_]")
_NOT_GARBAGE_BYTES = bytes(code for code in range(256) if not _GARBAGE.match(chr(code)))
_WS = re.compile(r"[ \t\u00a0\u3000]+")
_CJK_CHAR = re.compile(r"[\u3040-\u9fff\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[^\W\d_]{2,}")
_SCRIPT_RANGES = {
    "ko": re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
    "ja": re.compile(r"[\u3040-\u30ff]"),
    "zh": re.compile(r"[\u4e00-\u9fff]"),
}
_ANY_SCRIPT_RANGE = re.compile("|".join(pattern.pattern for pattern in _SCRIPT_RANGES.values()))
# ASCII bytes mapped to "a" if ``_LETTER`` matches them, else to a space (see _ascii_word_count).
_ASCII_LETTER_MARKS = bytes(
    ord("a") if code < 128 and _LETTER.fullmatch(chr(code)) else ord(" ") for code in range(256)
)


@dataclass
class ExtractedArticle:
    """Clean text and metadata of one page."""

    text: str
    comments: str = ""
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    published_at: str | None = None
    published_local: str | None = None  # the same moment with the offset the page wrote
    modified_at: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    site_name: str | None = None
    word_count: int = 0
    flags: list[str] = field(default_factory=list)  # health warnings, e.g. "chrome-suspected"
    url_date: str | None = None  # the year-month(-day) the URL path carries, for cross-checks
    extractor_version: str = EXTRACTOR_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Extraction:
    """The article, or None with the reason it could not be extracted."""

    article: ExtractedArticle | None
    reason: str | None = None


def build_extractor(
    *, favor: str = "balanced", url: str | None = None, fast: bool = False
) -> Extractor:
    """The one trafilatura configuration nkwatch uses, built from the ``EXTRACT_*`` settings.

    Each choice, measured on the 260-page extraction-dev set against plain ``extract()``:
    - ``with_metadata=False``: trafilatura's metadata pass (htmldate's extensive search,
      dateparser) took ~40% of the time; ``page_metadata`` reads JSON-LD/meta and a fast htmldate.
    - ``comments=True``: extracted so they can be kept apart, never mixed into the body.
    - ``dedup=False``: trafilatura's dedup cache is shared across pages, so a page's text would
      depend on what was extracted before it; repeated lines are removed per page instead.
    - fallbacks on (``fast=False``): readability/jusText rescue pages the main pass misses.
    - ``EXTRACTION_TIMEOUT=0``: signal-based timeouts do not work in worker processes.
    """
    return Extractor(
        config=_trafilatura_config(),
        output_format="python",
        precision=favor == "precision",
        recall=favor == "recall",
        comments=True,
        tables=True,
        links=False,
        images=False,
        dedup=False,
        with_metadata=False,
        url=url,
        fast=fast,
    )


def _page_extractor(favor: str, url: str | None, fast: bool) -> Extractor:
    """``build_extractor`` for one page, copied from a cached build instead of rebuilt.

    Building reads a dozen settings through configparser on every page; the copy only sets what
    differs between pages, the URL and the source name ``Extractor.__init__`` derives from it.
    """
    options = copy(_shared_extractor(favor, fast))
    options.url = url
    options.source = url and url.encode("utf-8", "replace").decode("utf-8")
    return options


@functools.cache
def _shared_extractor(favor: str, fast: bool) -> Extractor:
    """One build per mode. Its date settings (today's date) would go stale in a long run, but
    they only serve trafilatura's metadata pass, which ``with_metadata=False`` turns off."""
    return build_extractor(favor=favor, fast=fast)


@functools.cache
def _trafilatura_config():
    config = use_config()
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")
    config.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")
    return config


def extract_article(
    html: bytes | str,
    url: str | None = None,
    *,
    encoding: str | None = None,
    favor: str = "balanced",
    min_words: int = MIN_WORDS,
) -> Extraction:
    """Extract one page: clean body text, comments apart, and metadata; or None with the reason."""
    if isinstance(html, bytes):
        if len(html) > MAX_HTML_BYTES:
            return Extraction(None, f"page too large ({len(html) / 1024 / 1024:.0f} MB)")
        if looks_binary(html):
            return Extraction(None, "not HTML: binary content")
        html = decode_html(html, encoding)
    elif len(html) > MAX_HTML_BYTES:
        return Extraction(None, f"page too large ({len(html) / 1024 / 1024:.0f} MB)")
    if not html.strip():
        return Extraction(None, "empty page")
    if _garbage_share(html[:20_000]) > 0.05:
        return Extraction(None, "not HTML: undecodable or binary content")
    tree = parse_page(html)
    if tree is None or tree.find(".//body") is None and len(tree) < 2:
        return Extraction(None, "not HTML: no document tree")
    meta = page_metadata(tree)  # trafilatura prunes a copy: the tree itself stays untouched
    try:
        document = _run_trafilatura(tree, url, favor)
    except Exception as error:  # trafilatura raises assorted errors on broken trees
        return Extraction(None, f"extractor failed: {type(error).__name__}: {error}")
    if document is None or not (document.text or "").strip():
        return Extraction(None, "no article body found")
    text = clean_lines(document.text)
    if _garbage_share(text) > 0.02:
        return Extraction(None, "garbage text: undecodable characters in the body")
    word_count = count_words(text)
    if word_count < min_words:
        return Extraction(None, f"body too short ({word_count} words)")
    if not has_prose(text):
        return Extraction(None, "no article body: only short lines (navigation or a list)")
    article = ExtractedArticle(
        text=text,
        comments=clean_comments(document.comments or ""),
        title=meta.get("title"),
        authors=split_authors(meta.get("authors")),
        published_at=meta.get("published_at"),
        published_local=meta.get("published_local"),
        modified_at=meta.get("modified_at"),
        language=detect_language(text, meta.get("lang")),
        canonical_url=meta.get("canonical_url") or url,
        site_name=meta.get("site_name"),
        word_count=word_count,
        flags=health_flags(text),
        url_date=url_date(url),
    )
    return Extraction(article)


_XML_INVALID_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


def parse_page(html: str) -> lxml.html.HtmlElement | None:
    """The page's tree, as trafilatura's ``load_html`` builds it, a third of a millisecond sooner.

    ``load_html`` first deletes the characters XML forbids with a regex scan of the whole page
    (0.45 ms on 60 KB, a twentieth of a page's work). Most pages hold none: ``bytes.translate``
    tells that in a quarter of the time, and only then is the rest of ``load_html`` done here,
    in the same order: the doctype and self-closing ``<html/>`` repairs, the parse from text,
    the parse from UTF-8 bytes when that fails, the rejection of a non-HTML fragment. A page
    with such characters goes through ``load_html`` itself.
    """
    encoded = html.encode("utf-8", "surrogatepass")
    if len(encoded.translate(None, _XML_INVALID_BYTES)) != len(encoded) \
            or "\ufffe" in html or "\uffff" in html:  # fmt: skip
        return load_html(html)
    beginning = html[:50].lower()
    if "doctype" in beginning:
        first_line, _, rest = html.partition("\n")
        html = DOCTYPE_TAG.sub("", first_line, count=1) + "\n" + rest
    for line in html[:4096].splitlines()[:4]:
        if "<html" in line and line.endswith("/>"):
            html = FAULTY_HTML.sub(r"\1>", html, count=1)
            break
    tree, from_bytes = None, False
    try:
        tree = lxml.html.fromstring(html, parser=HTML_PARSER)
    except ValueError:  # a str that declares its encoding: lxml wants bytes
        tree, from_bytes = _parse_bytes(html), True
    except Exception:  # lxml gives up on some inputs; the caller reports "no document tree"
        tree = None
    if (tree is None or len(tree) < 1) and not from_bytes:
        tree = _parse_bytes(html)
    if tree is not None and "html" not in beginning and len(tree) < 2:
        return None  # a fragment, not a page
    return tree


def _parse_bytes(html: str) -> lxml.html.HtmlElement | None:
    try:
        return lxml.html.fromstring(html.encode("utf-8", "surrogatepass"), parser=HTML_PARSER)
    except Exception:  # as load_html: no tree rather than an error
        return None


def _run_trafilatura(tree, url: str | None, favor: str):
    """trafilatura's main pass alone; its fallbacks only when that pass found little.

    The readability/jusText fallbacks cost about a third of the time and, on the dev set, only
    change the outcome of pages whose main pass came back short: those are run again in full.
    ``bare_extraction`` works on its own copy of a tree it is handed, so the full run can start
    from the same untouched tree instead of parsing the page again.
    """
    document = trafilatura.bare_extraction(
        tree, url=url, options=_page_extractor(favor, url, fast=True)
    )
    if document is not None and has_words(document.text or "", FALLBACK_BELOW_WORDS):
        return document
    full = trafilatura.bare_extraction(
        tree, url=url, options=_page_extractor(favor, url, fast=False)
    )
    return full if full is not None else document


def clean_lines(text: str) -> str:
    """Normalise white space, drop furniture lines and lines repeated verbatim (a caption twice).

    Normalisation runs once on the whole text: NFC never joins or splits characters across a line
    break, and ``_WS`` holds no line break. Text whose every space run is one plain space (most
    text) has nothing for ``_WS`` to change, which ``in`` tells far faster than the regex.
    """
    text = unicodedata.normalize("NFC", text)
    if "  " in text or "\t" in text or "\u00a0" in text or "\u3000" in text:
        text = _WS.sub(" ", text)
    seen: set[str] = set()
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        folded = line.casefold().rstrip(":：")
        if not line or folded in CHROME_LINES or _chrome_by_shape(folded):
            continue
        if len(line) > 30 and folded in seen:
            continue
        seen.add(folded)
        kept.append(line)
    return "\n".join(kept)


def _chrome_by_shape(folded: str) -> bool:
    """A short line shaped like a cross-link or a call to subscribe (``CHROME_LINE_PATTERN``)."""
    if folded.count(" ") >= CHROME_PATTERN_MAX_WORDS:
        return False
    if CHROME_LINE_PATTERN.match(folded) is not None:
        return True
    return any(cue in folded for cue in CHROME_LINE_CUES) and bool(CHROME_LINE_TAIL.search(folded))


def clean_comments(text: str) -> str:
    """Reader comments without the section's furniture; empty when no real comment is left."""
    lines = []
    for line in clean_lines(text).splitlines():
        counter = COMMENT_COUNTER.match(line)
        if counter:
            if any(group == "0" for group in counter.groups()):
                return ""  # the section says it holds no comment: the rest is its furniture
            continue
        if not COMMENT_CHROME.match(line):
            lines.append(line)
    kept = "\n".join(lines)
    return kept if has_words(kept, 3) else ""


def health_flags(text: str) -> list[str]:
    """Warnings a reader of the corpus should see: chrome the cleaning could not tell apart.

    The hints are searched in lower-cased text without ``re.I``, several times faster and the
    same result, unless the text holds one of the few characters the two fold differently.
    """
    if any(char in text for char in _FOLDS_UNLIKE_LOWER):
        suspected = CHROME_HINTS.search(text) is not None
    else:
        suspected = _CHROME_HINTS_LOWERED.search(text.lower()) is not None
    return ["chrome-suspected"] if suspected else []


def has_prose(text: str) -> bool:
    """Does the text hold at least one sentence-length line, not only menu-sized fragments?"""
    return any(count_words(line) >= 10 for line in text.splitlines())


def count_words(text: str) -> int:
    """Words in Latin text; in Chinese/Japanese/Korean, every two CJK characters count as one."""
    if text.isascii():
        return _ascii_word_count(text)
    cjk = len(_CJK_CHAR.findall(text))
    latin = len(_LATIN_WORD.findall(_CJK_CHAR.sub(" ", text) if cjk else text))
    return latin + cjk // 2


def _ascii_word_count(text: str) -> int:
    """``count_words`` for ASCII text (no CJK), on bytes: several times faster than the regex.

    With every letter marked "a" and everything else a space, each run of two or more letters
    (a ``_LATIN_WORD``) starts with the only " aa" it holds, once a space is put in front.
    """
    marked = b" " + text.encode("ascii").translate(_ASCII_LETTER_MARKS)
    return marked.count(b" aa")


def has_words(text: str, at_least: int) -> bool:
    """Does the text hold at least this many words (``count_words``)?

    A prefix never holds more words than the whole text, so a long text that reaches the mark
    early is decided on its beginning alone.
    """
    head = text[: at_least * 20]
    if count_words(head) >= at_least:
        return True
    return len(head) < len(text) and count_words(text) >= at_least


def detect_language(text: str, declared: str | None = None) -> str | None:
    """The language of the body text; the page's lang attribute only where the script agrees."""
    sample = text[:3000]
    script = _script_language(sample)
    if script:
        return script
    declared = (declared or "").split("-")[0].lower() or None
    if declared and declared not in _SCRIPT_RANGES:
        return declared
    try:
        import py3langid

        return py3langid.classify(sample)[0]
    except ImportError:  # optional: without it a Latin-script page keeps its declared language
        return declared


def _script_language(sample: str) -> str | None:
    """Korean, Japanese or Chinese if enough of the sample's letters are in that script.

    Most samples hold no character of these scripts at all, and then no letter needs counting.
    """
    if sample.isascii() or not _ANY_SCRIPT_RANGE.search(sample):
        return None
    counts = {lang: len(pattern.findall(sample)) for lang, pattern in _SCRIPT_RANGES.items()}
    letters = max(1, len(_LETTER.findall(sample)))
    if counts["ko"] / letters > 0.2:
        return "ko"
    if counts["ja"] / letters > 0.05:
        return "ja"
    if counts["zh"] / letters > 0.3:
        return "zh"
    return None


def looks_binary(body: bytes) -> bool:
    """Is this an image, archive, PDF or other non-text file served as HTML?"""
    head = body[:4096]
    if head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b",
                        b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF", b"BZh")):  # fmt: skip
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 text holds NUL bytes by design
    return head.count(b"\x00") > 8


def _garbage_share(text: str) -> float:
    """Share of characters that no text holds: replacement marks and C0/C1 control codes.

    Text within Latin-1 (English markup mostly is) is counted as bytes, with a deletion table
    that keeps exactly the bytes ``_GARBAGE`` matches: several times faster than the regex.
    """
    if not text:
        return 0.0
    try:
        garbage = len(text.encode("latin-1").translate(None, _NOT_GARBAGE_BYTES))
    except UnicodeEncodeError:
        garbage = len(_GARBAGE.findall(text))
    return garbage / len(text)


def apply_extraction(item: Any, result: Extraction) -> None:
    """Copy an extraction onto the item; the feed entry fills what the page did not say."""
    item.extractor_version = EXTRACTOR_VERSION
    hints = item.hints or {}
    if result.article is None:
        item.status, item.failure_reason = "failed", result.reason
        item.text, item.comments, item.word_count = "", "", 0
        item.title = item.title or hints.get("title")
        return
    article = result.article
    item.status, item.failure_reason = "ok", None
    item.text, item.comments = article.text, article.comments
    item.title = article.title or hints.get("title")
    item.authors = article.authors or list(hints.get("authors") or [])
    feed_at = to_utc_iso(hints.get("published_at"))
    sitemap_at = to_utc_iso(hints.get("sitemap_published_at"))
    item.published_at, date_warnings = choose_published_at(
        article.published_at, feed_at=feed_at, sitemap_at=sitemap_at, url_date=article.url_date
    )
    # the chosen moment as its witness wrote it; where witnesses agree, the page's words win
    written = {}
    for stamp, local in ((feed_at, hints.get("published_local")),
                         (sitemap_at, hints.get("sitemap_published_local")),
                         (article.published_at, article.published_local)):  # fmt: skip
        if stamp and local:
            written[stamp] = local
    item.published_local = (written.get(item.published_at) if item.published_at else None) \
        or item.published_at  # fmt: skip
    item.modified_at = article.modified_at
    item.language = article.language or hints.get("language")
    item.canonical_url = article.canonical_url
    item.site_name = article.site_name
    item.word_count = article.word_count
    item.flags = list(dict.fromkeys([*article.flags, *date_warnings]))


