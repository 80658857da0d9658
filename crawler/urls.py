"""URL identity: the cleaned form we request and the key that says two URLs are one page.

Requests go to ``clean_url`` (tracking parameters, session ids, fragments, credentials and
default ports gone, host lower-cased, query sorted), because the server still has to answer
it. ``url_key`` goes further (AMP, print and mobile variants, ``www.``, the scheme, trailing
slashes) and is only ever compared, never fetched. Both are built on w3lib rather than courlan:
courlan rejects loopback hosts with ports, which the offline demo web and the tests use
(``strip_url`` is Scrapy's, built on w3lib).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from scrapy.utils.url import strip_url
from w3lib.url import canonicalize_url

TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "twclid",
        "ttclid", "li_fat_id", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok",
        "spm", "cmpid", "ocid", "ref_src", "ref_url", "s_cid", "smid", "sr_share", "at_medium",
        "at_campaign", "utm", "ito", "xtor", "__twitter_impression", "rss", "phpsessid",
        "jsessionid", "sessionid", "sid_campaign",
    }
)  # fmt: skip
# Kept on purpose: "cid", "src", "from", "id", "p": on some sites they name the article itself,
# and a request without them would fetch a different page.
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "vero_", "oly_")
# A parameter that only selects a rendering of the same article (AMP, print, mobile).
VARIANT_PARAMS = frozenset({"amp", "print", "printable", "mobile"})
VARIANT_VALUES = frozenset({"amp", "print", "printable", "mobile"})
VARIANT_VALUE_PARAMS = frozenset({"output", "outputtype", "view", "format", "mode", "version"})
VARIANT_HOST_PREFIXES = ("www.", "amp.", "m.", "mobile.")
DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_SCHEMES = ("http", "https")
# (pattern, replacement) for the end of a path: ``story.amp.html`` is ``story.html``.
_VARIANT_SUFFIXES = (
    (re.compile(r"\.(amp|print)(\.html?)$", re.I), r"\2"),
    (re.compile(r"(/amp|/print)(\.html?)?/?$|\.amp$", re.I), ""),
)
_VARIANT_SEGMENT = re.compile(r"/(amp|print)/", re.I)
_SESSION_PATH_PARAM = re.compile(r";(jsessionid|phpsessid|sid)=[^/?#]*", re.I)


def is_tracking_param(name: str) -> bool:
    """True for query parameters that only say how a reader arrived, not which page it is."""
    lowered = unquote_plus(name).lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _is_variant_param(name: str, value: str) -> bool:
    name, value = unquote_plus(name).lower(), unquote_plus(value).lower()
    return name in VARIANT_PARAMS or (name in VARIANT_VALUE_PARAMS and value in VARIANT_VALUES)


def _filter_query(query: str, drop) -> str:
    """The query without the ``name=value`` pieces ``drop(name, value)`` refuses, encoding kept."""
    kept = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if not drop(name, value):
            kept.append(piece)
    return "&".join(kept)


def clean_url(url: str) -> str:
    """The URL we request: tracking parameters, fragment and default port dropped, query sorted."""
    stripped = strip_url(url.strip(), strip_credentials=True, strip_default_port=True)
    parts = urlsplit(stripped)
    query = _filter_query(parts.query, lambda name, value: is_tracking_param(name))
    path = _SESSION_PATH_PARAM.sub("", parts.path) or "/"
    return canonicalize_url(urlunsplit((parts.scheme.lower(), parts.netloc, path, query, "")))


def url_key(url: str) -> str:
    """The identity of a page: ``clean_url`` without variants, ``www.``, scheme or a final slash.

    Idempotent (``url_key(url_key(u)) == url_key(u)``), so keys can be re-keyed safely.
    """
    parts = urlsplit(clean_url(url))
    host = parts.hostname or ""
    for prefix in VARIANT_HOST_PREFIXES:
        if host.startswith(prefix) and "." in host[len(prefix) :]:
            host = host[len(prefix) :]
            break
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if parts.port and parts.port not in DEFAULT_PORTS.values():
        host = f"{host}:{parts.port}"
    path = parts.path
    for pattern, replacement in _VARIANT_SUFFIXES:
        path = pattern.sub(replacement, path)
    path = _VARIANT_SEGMENT.sub("/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    query = _filter_query(parts.query, _is_variant_param)
    scheme = "https" if parts.scheme in SAFE_SCHEMES else parts.scheme
    return urlunsplit((scheme, host, path or "/", query, ""))


def is_fetchable(url: str) -> bool:
    """Only http(s) links with a host are fetched; javascript:, file:, data: and mailto: are not."""
    parts = urlsplit(url)
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.hostname)
