"""Bytes to text for HTML pages whose declared charset may be missing or wrong."""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

# Legacy CJK names decode as their Microsoft supersets, which browsers use in their place.
SUPERSETS = {
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "euc_kr": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "gb2312": "gb18030", "gbk": "gb18030", "gb_2312-80": "gb18030",
    "iso-8859-1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "us-ascii": "cp1252",
}  # fmt: skip
DETECTABLE = ["cp949", "cp932", "euc_jp", "gb18030", "big5", "cp1252", "cp1251", "utf_16"]
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def normalise_encoding(name: str | None) -> str | None:
    """A Python codec name for a declared charset, or None if Python knows no such codec."""
    if not name:
        return None
    name = name.strip().strip("\"'").lower()
    name = SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def declared_encoding(body: bytes) -> str | None:
    """The charset a page declares in its first bytes (BOM or ``<meta charset>``)."""
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8"
    match = _META_CHARSET.search(body[:4096])
    return normalise_encoding(match.group(1).decode("ascii", "ignore")) if match else None


def decode_html(body: bytes, encoding: str | None = None) -> str:
    """Decode as a careful browser would: trust a declaration only if the bytes agree with it.

    Valid UTF-8 with non-ASCII bytes is UTF-8 whatever the label says (legacy CJK and Latin-1
    text almost never forms valid UTF-8). Otherwise the declared charsets are tried strictly,
    and when none fits (a page labelled UTF-8 that is really EUC-KR) the bytes are detected.
    """
    if not _has_non_ascii(body):
        return body.decode("ascii", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    names = [n for n in dict.fromkeys([normalise_encoding(encoding), declared_encoding(body)]) if n]
    if len(names) == 2 and names[0] in LATIN_SINGLE_BYTE and names[1] not in LATIN_SINGLE_BYTE:
        # a server default (Apache's ISO-8859-1) over a page that names its own CJK charset
        names.reverse()
    detected: list[str | None] = []  # detection costs ms: run it once, when first needed
    for name in names:
        if name == "utf-8":
            continue
        if name in LATIN_SINGLE_BYTE:
            detected = detected or [_detected(body)]
            if detected[0] in MULTIBYTE:
                continue  # Latin-1 decodes any bytes: a Korean page labelled so is mojibake
        try:
            return body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    guess = (detected or [_detected(body)])[0]
    if guess:
        return body.decode(guess, errors="replace")
    return body.decode("cp1252", errors="replace")


# Single-byte Latin codecs decode any bytes at all, so "it decodes" proves nothing for them.
LATIN_SINGLE_BYTE = frozenset({"cp1252", "iso8859-1", "iso8859-15", "ascii"})
MULTIBYTE = frozenset({"cp949", "cp932", "euc_jp", "gb18030", "big5"})


def _detected(body: bytes) -> str | None:
    guess = from_bytes(body[:200_000], cp_isolation=DETECTABLE).best()
    if guess is None or not guess.encoding:
        return None
    return normalise_encoding(guess.encoding) or guess.encoding


def _has_non_ascii(body: bytes) -> bool:
    return not body.isascii()
