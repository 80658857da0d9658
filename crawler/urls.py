"""URL identity: the cleaned form we request and the key that says two URLs are one page.

Requests go to ``clean_url`` (tracking parameters, fragments and default ports gone, query
sorted), because the server still has to answer it. ``url_key`` goes further (AMP and print
variants, ``www.``, trailing slashes) and is only ever compared, never fetched.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "twclid",
        "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "spm", "cmpid", "ocid",
        "ref_src", "ref_url", "src", "s_cid", "smid", "sr_share", "at_medium", "at_campaign",
        "utm", "cid", "ito", "xtor", "__twitter_impression", "share", "rss", "from",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_", "vero_", "oly_")
VARIANT_PARAMS = frozenset({"amp", "outputtype", "output", "print", "printable", "view", "mobile"})
DEFAULT_PORTS = {"http": 80, "https": 443}
SAFE_SCHEMES = ("http", "https")
_AMP_PATH = re.compile(r"(/amp|/print|\.amp|/amp\.html|/print\.html)$", re.I)


def is_tracking_param(name: str) -> bool:
    """True for query parameters that only say how a reader arrived, not which page it is."""
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def clean_url(url: str) -> str:
    """The URL we request: tracking parameters, fragment and default port dropped, query sorted."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{parts.port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if not is_tracking_param(k)]
    rebuilt = urlunsplit((scheme, host, parts.path or "/", urlencode(query), ""))
    return canonicalize_url(rebuilt)


def url_key(url: str) -> str:
    """The identity of a page: ``clean_url`` without AMP/print variants, ``www.`` or a final slash."""
    parts = urlsplit(clean_url(url))
    host = parts.netloc.removeprefix("www.").removeprefix("amp.").removeprefix("m.")
    path = _AMP_PATH.sub("", parts.path)
    path = re.sub(r"/amp/", "/", path, flags=re.I)
    if len(path) > 1:
        path = path.rstrip("/")
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in VARIANT_PARAMS
    ]
    return urlunsplit(("https" if parts.scheme in SAFE_SCHEMES else parts.scheme, host,
                       path or "/", urlencode(query), ""))  # fmt: skip


def is_fetchable(url: str) -> bool:
    """Only http(s) links with a host are fetched; javascript:, file:, data: and mailto: are not."""
    parts = urlsplit(url)
    return parts.scheme.lower() in SAFE_SCHEMES and bool(parts.hostname)
