"""Relevance: watch topics as data, scores with the evidence beside them, and indicators.

A topic (``topics.toml``) is a few groups of terms in English, Korean, Japanese and Chinese.
An article passes a topic when every required group is found, the groups that must meet do
meet within a few sentences of each other, and the weighted sum of what was found reaches the
topic's threshold. Each match is kept as evidence (term, group, field, offsets, snippet), so a
reader can see why an article was kept or dropped. Relevant articles also give up their
indicators: phone numbers, e-mail addresses, wallets, domains and named organisations.

The topics file is ``RELEVANCE_TOPICS`` (setting), else ``NKWATCH_TOPICS`` (environment), else
``./topics.toml``, else the file shipped with nkwatch.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

LOCAL_FILE = Path("topics.toml")
SNIPPET_CHARS = 40
MAX_EVIDENCE_PER_GROUP = 12  # enough to show why, short enough to store beside every score

# Full-width ASCII (ＩＴ, ＠) and the ideographic space map one-to-one onto ASCII, so matching
# sees "IT" in Japanese text while offsets still point into the original string.
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_SENTENCE_END = re.compile(r"[.!?](?=[\s\"'”’)]|$)|[。！？]|\n")
_SENTENCE_MARKS = re.compile(r"[.!?。！？\n]")  # where a sentence end can be
_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")


TOPIC_KEYS = {"name", "description", "threshold", "group", "near", "near_sentences", "title_weight",
              "yields_to"}  # fmt: skip
GROUP_KEYS = {"name", "terms", "lists", "weight", "required", "cap", "min_score", "exclude"}


class TopicsError(ValueError):
    """A topics file that cannot be used; the message names the file and what is wrong."""


# --- topics as data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """One configured term: ``*`` ends a Latin word stem (``scam*``), a space allows a hyphen."""

    text: str
    weight: float
    case_sensitive: bool = False


@dataclass
class TermGroup:
    """Terms that stand for one idea (North Korea, a scam, a phone) and what one match is worth."""

    name: str
    terms: list[Term]
    required: bool = False
    cap: float = 6.0  # a group stops adding to the score here; the sign follows the weights
    min_score: float = 0.0  # a required group counts as found only from this much
    exclude: list[str] = field(default_factory=list)  # phrases whose matches do not count
    matcher: TermMatcher | None = None
    exclude_matcher: TermMatcher | None = None


@dataclass
class Topic:
    """A watch topic: its groups, which of them must meet, and the score that passes."""

    name: str
    description: str
    threshold: float
    groups: list[TermGroup]
    near: list[tuple[str, str]] = field(default_factory=list)
    near_sentences: int = 1  # "near" is the same sentence or this many sentences apart
    title_weight: float = 2.0  # a match in the title counts this many times
    yields_to: list[str] = field(default_factory=list)  # a broader topic steps aside for these


@dataclass
class Organisation:
    """A named organisation or platform investigators look for, with its names in each language."""

    name: str
    kind: str  # "platform" | "organisation"
    aliases: list[Term]
    matcher: TermMatcher | None = None


@dataclass
class Topics:
    """Everything a topics file declares, and where it came from."""

    topics: list[Topic]
    organisations: list[Organisation]
    generic_domains: frozenset[str]
    origin: str

    def names(self) -> list[str]:
        return [topic.name for topic in self.topics]


@dataclass
class TopicScore:
    """One article against one topic: the score, the verdict, the matches and what was missing."""

    topic: str
    score: float
    passed: bool
    evidence: list[dict[str, Any]]
    missing: list[str] = field(default_factory=list)  # why it did not pass (empty if it did)
    group_scores: dict[str, float] = field(default_factory=dict)  # each group's capped part

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_topics_file(configured: str | None = None) -> tuple[str, str]:
    """The topics file to use and its text: setting, NKWATCH_TOPICS, ./topics.toml, shipped."""
    chosen = configured or os.environ.get("NKWATCH_TOPICS") or ""
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise FileNotFoundError(f"topics file {chosen} not found")
        return str(path), path.read_text(encoding="utf-8")
    if LOCAL_FILE.is_file():
        return str(LOCAL_FILE), LOCAL_FILE.read_text(encoding="utf-8")
    shipped = resources.files("pipelines").joinpath("topics.toml")
    return "shipped topics.toml", shipped.read_text(encoding="utf-8")


def load_topics(configured: str | None = None) -> Topics:
    """Read and compile the topics file chosen by ``find_topics_file``."""
    origin, text = find_topics_file(configured)
    return parse_topics(text, origin)


@lru_cache(maxsize=8)
def _cached_topics(configured: str, environment: str, local_mtime: float) -> Topics:
    return load_topics(configured or None)


def default_topics(configured: str | None = None) -> Topics:
    """``load_topics`` remembered per (setting, environment, ./topics.toml version)."""
    local_mtime = LOCAL_FILE.stat().st_mtime if LOCAL_FILE.is_file() else 0.0
    return _cached_topics(configured or "", os.environ.get("NKWATCH_TOPICS", ""), local_mtime)


def parse_topics(text: str, origin: str) -> Topics:
    """Topics from TOML text; ``origin`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TopicsError(f"{origin}: not valid TOML: {error}") from None
    lists = data.get("lists", {})
    topics = [_parse_topic(entry, lists, origin) for entry in data.get("topic", [])]
    if not topics:
        raise TopicsError(f"{origin}: no [[topic]] entries")
    names = [t.name for t in topics]
    if len(set(names)) != len(names):
        raise TopicsError(f"{origin}: topic names must be unique")
    for topic in topics:
        for other in topic.yields_to:
            if other not in names:
                raise TopicsError(f"{origin}: topic {topic.name} yields to unknown {other!r}")
    organisations = [_parse_organisation(entry, origin) for entry in data.get("organisation", [])]
    generic = data.get("indicators", {}).get("generic_domains", [])
    return Topics(topics, organisations, frozenset(d.lower() for d in generic), origin)


def _parse_topic(entry: dict[str, Any], lists: dict[str, Any], origin: str) -> Topic:
    name = entry.get("name")
    if not name or "threshold" not in entry:
        raise TopicsError(f"{origin}: every [[topic]] needs a name and a threshold")
    _check_keys(entry, TOPIC_KEYS, f"{origin}: topic {name}")
    groups = [_parse_group(g, lists, f"{origin}: topic {name}") for g in entry.get("group", [])]
    group_names = {g.name for g in groups}
    near = [tuple(pair) for pair in entry.get("near", [])]
    for pair in near:
        if len(pair) != 2 or not set(pair) <= group_names:
            raise TopicsError(f"{origin}: topic {name}: near {list(pair)} names unknown groups")
    return Topic(
        name=name,
        description=entry.get("description", ""),
        threshold=float(entry["threshold"]),
        groups=groups,
        near=near,
        near_sentences=int(entry.get("near_sentences", 1)),
        title_weight=float(entry.get("title_weight", 2.0)),
        yields_to=list(entry.get("yields_to", [])),
    )


def _parse_group(entry: dict[str, Any], lists: dict[str, Any], where: str) -> TermGroup:
    name = entry.get("name")
    if not name:
        raise TopicsError(f"{where}: a group has no name")
    _check_keys(entry, GROUP_KEYS, f"{where}, group {name}")
    weight = float(entry.get("weight", 1.0))
    raw_terms: list[Any] = []
    exclude = list(entry.get("exclude", []))
    for list_name in entry.get("lists", []):
        if list_name not in lists:
            raise TopicsError(f"{where}: group {name} uses unknown list {list_name!r}")
        raw_terms.extend(lists[list_name].get("terms", []))
        exclude.extend(lists[list_name].get("exclude", []))
    raw_terms.extend(entry.get("terms", []))
    terms = [_parse_term(raw, weight, f"{where}, group {name}") for raw in raw_terms]
    if not terms:
        raise TopicsError(f"{where}: group {name} has no terms")
    group = TermGroup(
        name=name,
        terms=terms,
        required=bool(entry.get("required", False)),
        cap=float(entry.get("cap", 6.0)),
        min_score=float(entry.get("min_score", 0.0)),
        exclude=exclude,
    )
    group.matcher = compile_terms(terms)
    if exclude:
        group.exclude_matcher = compile_terms([Term(text, 0.0) for text in exclude])
    return group


def _check_keys(entry: dict[str, Any], known: set[str], where: str) -> None:
    """A misspelt key would silently change nothing; say so instead."""
    unknown = sorted(set(entry) - known)
    if unknown:
        raise TopicsError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )


def _parse_term(raw: Any, weight: float, where: str) -> Term:
    """A term is a string (the group's weight) or ``{term = "...", weight = 3, case = true}``."""
    if isinstance(raw, str):
        return Term(raw, weight)
    if isinstance(raw, dict) and isinstance(raw.get("term"), str):
        return Term(raw["term"], float(raw.get("weight", weight)), bool(raw.get("case", False)))
    raise TopicsError(f"{where}: {raw!r} is not a term")


def _parse_organisation(entry: dict[str, Any], origin: str) -> Organisation:
    name = entry.get("name")
    if not name:
        raise TopicsError(f"{origin}: an [[organisation]] has no name")
    aliases = [
        _parse_term(raw, 1.0, f"{origin}: organisation {name}")
        for raw in entry.get("aliases", [name])
    ]
    organisation = Organisation(name, entry.get("kind", "organisation"), aliases)
    organisation.matcher = compile_terms(aliases)
    return organisation


# --- matching --------------------------------------------------------------------------------


def term_regex(term: Term) -> str:
    """The regex for one term: Latin ends need a non-letter beside them, CJK ends do not.

    The start boundary is checked after the first character, not before: a lookbehind that
    leads every branch of a large alternation runs at every position and is the slow part.
    """
    parts = []
    for char in term.text:
        if char == "*":
            parts.append("[A-Za-z]*")
        elif char == " ":
            parts.append(r"[\s\-]*")
        else:
            parts.append(re.escape(char))
    if _ASCII_ALNUM.match(term.text[0]):
        parts.insert(1, f"(?<![A-Za-z0-9]{parts[0]})")
    body = "".join(parts)
    if _ASCII_ALNUM.match(term.text[-1]) or term.text.endswith("*"):
        body += "(?![A-Za-z0-9])"
    return body


_GRAM_BITS = 16  # the n-gram presence table of one text: 2**16 slots, a few percent filled
_GRAM_SHIFT = np.uint32(32 - _GRAM_BITS)
_GRAM_ALWAYS = 1 << _GRAM_BITS  # a slot that is always set: pads the key rows
_GRAM_KEYS_PER_TERM = 8  # one row of a term's slots, read as booleans, is one 64-bit word
_ROW_ALL_SET = np.uint64(int.from_bytes(b"\x01" * _GRAM_KEYS_PER_TERM, "little"))
_MIX_INTS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)
_MIX = tuple(np.uint32(mix) for mix in _MIX_INTS)
# Non-ASCII letters that a case-insensitive pattern takes for an ASCII letter (İ ı ſ K): where a
# text holds none, a match of a term's lowercase lead starts where its lowercase copy shows it.
_ASCII_CASE_PARTNERS = re.compile("[\u0130\u0131\u017f\u212a]")
_FULLWIDTH_CHARS = re.compile("[\uff01-\uff5e\u3000]")


def _gram_keys(text: str) -> np.ndarray:
    """Slots of every 1-, 2- and 3-character sequence of ``text`` in the presence table.

    Products wrap at 32 bits and the top bits are the slot: cheap, and ``_piece_keys`` repeats
    it exactly in plain integers."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    first, second, third = (codes * mix for mix in _MIX)
    parts = [first]
    if len(codes) > 1:
        parts.append(first[:-1] ^ second[1:])
    if len(codes) > 2:
        parts.append(first[:-2] ^ second[1:-1] ^ third[2:])
    return (np.concatenate(parts) >> _GRAM_SHIFT).astype(np.intp)  # indexes best as intp


def _piece_keys(piece: str) -> list[int]:
    """Table slots that must be set wherever ``piece`` occurs: its trigrams (or the piece
    itself when shorter), computed exactly as ``_gram_keys`` computes them for a text."""
    codes = [ord(char) for char in piece]
    width = min(len(codes), 3)
    keys = []
    for start in range(len(codes) - width + 1):
        mixed = 0
        for code, mix in zip(codes[start : start + width], _MIX_INTS[:width], strict=True):
            mixed ^= code * mix
        keys.append((mixed & 0xFFFFFFFF) >> (32 - _GRAM_BITS))
    return keys


def gram_table(text: str) -> np.ndarray:
    """Which n-gram slots ``text`` sets: a necessary condition for any substring test."""
    table = np.zeros(_GRAM_ALWAYS + 1, dtype=bool)
    if text:
        table[_gram_keys(text)] = True
    table[_GRAM_ALWAYS] = True
    return table


def _rows_all_set(table: np.ndarray, keys: np.ndarray) -> list[int]:
    """Rows of ``keys`` whose slots are all set in ``table``: a row's eight booleans are read as
    one word, which is cheaper than reducing along the rows."""
    return np.flatnonzero(table[keys].view(np.uint64)[:, 0] == _ROW_ALL_SET).tolist()


def _key_row(pieces: list[str]) -> list[int]:
    """A few of the slots every piece of a term sets, padded to the row width."""
    keys = sorted({key for piece in pieces for key in _piece_keys(piece)})
    step = max(1, len(keys) // _GRAM_KEYS_PER_TERM)
    keys = keys[::step][:_GRAM_KEYS_PER_TERM]
    return keys + [_GRAM_ALWAYS] * (_GRAM_KEYS_PER_TERM - len(keys))


def _lead(text: str, pieces: list[str], case_sensitive: bool) -> str | None:
    """The literal every match of the term starts with, as the substring test sees it; None
    when the term starts with a wildcard or its lowercase is not one letter for one letter."""
    if not pieces or text[0] in "* ":
        return None
    written = re.split(r"[* ]", text)[0]
    if case_sensitive or all(c.isascii() or c.lower() == c == c.upper() for c in written):
        return pieces[0]
    return None


def _folds_in_place(text: str, lowered: str) -> bool:
    """Does ``lowered`` keep every offset of ``text``, with no letter a case-insensitive
    pattern reads as another ASCII letter than its lowercase shows?"""
    return len(lowered) == len(text) and (text.isascii() or not _ASCII_CASE_PARTNERS.search(text))


class TermMatcher:
    """Finds a list of terms in a text: leftmost, longest, not overlapping.

    One regex per term, tried only when the term's literal pieces occur in the text at all (a
    plain substring test): a text holds few of a group's hundred-odd terms, and one large
    alternation would try every branch at every position. Before that, one vectorised look-up
    of each term's n-grams in the lowercase text's n-gram table rules out most case-insensitive
    terms at once (an n-gram missing from the text proves the piece is missing; a hash collision
    only lets one through to the exact test), so the outcome is the substring test's. The few
    case-sensitive terms go straight to the substring test. A regex is compiled when first
    needed, and runs only where the term's lead occurs (``pattern.match`` there finds what
    ``finditer`` would), unless the text's case folding could hide a start.
    """

    def __init__(self, terms: tuple[tuple[str, bool], ...]) -> None:
        self.terms = terms
        self.pieces: list[list[str]] = []
        self.leads: list[str | None] = []
        self.case_sensitive = [case_sensitive for _, case_sensitive in terms]
        self.always_tried = [i for i, (_, case_sensitive) in enumerate(terms) if case_sensitive]
        self.gated = [i for i, (_, case_sensitive) in enumerate(terms) if not case_sensitive]
        self._patterns: list[re.Pattern[str] | None] = [None] * len(terms)
        rows = []
        for text, case_sensitive in terms:
            if not text:
                term_regex(Term(text, 0.0))  # fails on loading, as it did when compiled eagerly
            pieces = [p if case_sensitive else p.lower() for p in re.split(r"[* ]", text) if p]
            self.pieces.append(pieces)
            self.leads.append(_lead(text, pieces, case_sensitive))
            if not case_sensitive:
                rows.append(_key_row(pieces))
        self.keys = np.array(rows, dtype=np.intp).reshape(-1, _GRAM_KEYS_PER_TERM)

    def pattern(self, position: int) -> re.Pattern[str]:
        """The regex of one term, compiled on first use: most terms are never tried."""
        pattern = self._patterns[position]
        if pattern is None:
            text, case_sensitive = self.terms[position]
            flags = 0 if case_sensitive else re.IGNORECASE
            pattern = self._patterns[position] = re.compile(term_regex(Term(text, 0.0)), flags)
        return pattern

    def possible(self, table: np.ndarray) -> list[int]:
        """Positions of the terms that may occur in the text of ``table``, ascending."""
        return self.with_always_tried([self.gated[row] for row in _rows_all_set(table, self.keys)])

    def with_always_tried(self, gated: list[int]) -> list[int]:
        return sorted(gated + self.always_tried) if self.always_tried else gated

    def spans(
        self, text: str, lowered: str, table: np.ndarray | None = None
    ) -> list[tuple[int, int, int]]:
        """(start, end, term index) of every match, overlaps resolved leftmost-longest.

        ``table`` is ``gram_table(lowered)`` when the caller keeps it for several matchers.
        """
        if table is None:
            table = gram_table(lowered)
        return self.spans_among(self.possible(table), text, lowered, _folds_in_place(text, lowered))

    def spans_among(
        self, positions: list[int], text: str, lowered: str, in_place: bool
    ) -> list[tuple[int, int, int]]:
        """``spans`` over the terms at ``positions`` (ascending) only; ``in_place`` is
        ``_folds_in_place(text, lowered)``."""
        found = []
        for position in positions:
            case_sensitive = self.case_sensitive[position]
            haystack = text if case_sensitive else lowered
            if all(piece in haystack for piece in self.pieces[position]):
                pattern, lead = self.pattern(position), self.leads[position]
                if lead is not None and (case_sensitive or in_place):
                    found.extend(_matches_at_lead(pattern, text, haystack, lead, position))
                else:
                    found.extend((m.start(), m.end(), position) for m in pattern.finditer(text))
        return leftmost_longest(found)


def leftmost_longest(found: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Of overlapping (start, end, term) matches, keep the leftmost, then the longest."""
    found.sort(key=lambda hit: (hit[0], hit[0] - hit[1]))
    kept, reached = [], -1
    for start, end, index in found:
        if start >= reached and end > start:
            kept.append((start, end, index))
            reached = end
    return kept


def _matches_at_lead(
    pattern: re.Pattern[str], text: str, haystack: str, lead: str, index: int
) -> list[tuple[int, int, int]]:
    """What ``pattern.finditer(text)`` finds, trying the pattern only where ``haystack`` (the
    text, or its lowercase with the same offsets) shows the lead every match starts with."""
    hits = []
    start = haystack.find(lead)
    while start >= 0:
        match = pattern.match(text, start)
        if match:
            hits.append((start, match.end(), index))
            start = haystack.find(lead, match.end())
        else:
            start = haystack.find(lead, start + 1)
    return hits


class _MatcherBatch:
    """The n-gram checks of several matchers (every one a topics file uses) as one look-up
    per text, instead of one look-up per matcher."""

    def __init__(self, matchers: tuple[TermMatcher, ...]) -> None:
        self.matchers = {id(matcher): matcher for matcher in matchers}
        self.keys = np.concatenate(
            [matcher.keys for matcher in matchers]
            or [np.zeros((0, _GRAM_KEYS_PER_TERM), dtype=np.intp)]
        )
        # row of ``keys`` -> (matcher id, term position)
        self.owners = [(id(m), position) for m in matchers for position in m.gated]
        self.untouched = {id(matcher): matcher.always_tried for matcher in matchers}

    def possible(self, table: np.ndarray) -> dict[int, list[int]]:
        """Each matcher's ``possible(table)``, by matcher id."""
        gated: dict[int, list[int]] = {}
        for row in _rows_all_set(table, self.keys):
            key, position = self.owners[row]
            gated.setdefault(key, []).append(position)
        result = dict(self.untouched)
        for key, positions in gated.items():
            result[key] = self.matchers[key].with_always_tried(positions)
        return result


_batches: dict[int, tuple[Topics, _MatcherBatch]] = {}  # id(topics) -> (topics, its batch)


def _batch_for(topics: Topics) -> _MatcherBatch:
    """The batch of every matcher the topics use, made once per topics object. A matcher the
    batch lacks (a group changed later) is still checked, on its own."""
    entry = _batches.get(id(topics))
    if entry is None or entry[0] is not topics:
        matchers = [
            matcher
            for topic in topics.topics
            for group in topic.groups
            for matcher in (group.matcher, group.exclude_matcher)
        ] + [organisation.matcher for organisation in topics.organisations]
        batch = _MatcherBatch(tuple(dict.fromkeys(m for m in matchers if m is not None)))
        while len(_batches) >= 8:
            _batches.pop(next(iter(_batches)))
        entry = _batches[id(topics)] = (topics, batch)
    return entry[1]


@lru_cache(maxsize=256)
def _matcher(terms: tuple[tuple[str, bool], ...]) -> TermMatcher:
    return TermMatcher(terms)


def compile_terms(terms: list[Term]) -> TermMatcher:
    """The matcher for a list of terms; groups with the same terms (the North Korea list in
    every topic) share one."""
    return _matcher(tuple((t.text, t.case_sensitive) for t in terms))


def normalise_for_matching(text: str) -> str:
    """Full-width ASCII to ASCII, one character for one, so offsets stay valid."""
    if text.isascii() or not _FULLWIDTH_CHARS.search(text):
        return text
    return text.translate(_FULLWIDTH)


@dataclass
class Match:
    term: Term
    group: str
    field: str  # "title" | "text"
    start: int
    end: int
    source: _Field = field(repr=False, compare=False)

    @property
    def sentence(self) -> int:
        """Counted only when asked: only groups that must meet need it."""
        return self.source.sentence_of(self.start)


class _Field:
    """One field of an article prepared for matching: normalised text, its lowercase copy, and
    (when first needed) its n-gram table, the spans of each matcher and its sentence ends."""

    def __init__(self, name: str, text: str, batch: _MatcherBatch | None = None) -> None:
        self.name = name
        self.text = text or ""
        self.matchable = normalise_for_matching(self.text)
        self.lowered = self.matchable.lower()  # only asked "is this substring here at all?"
        self.found: dict[int, list[tuple[int, int, int]]] = {}  # matcher id -> its spans here
        self.batch = batch
        self._possible: dict[int, list[int]] | None = None  # the batch's verdicts, made once
        self._table: np.ndarray | None = None
        self._in_place: bool | None = None
        self._sentence_ends: list[int] | None = None

    def spans(self, matcher: TermMatcher) -> list[tuple[int, int, int]]:
        """The matcher's spans in this field, found once however many groups share it."""
        key = id(matcher)
        if key not in self.found:
            if self._in_place is None:
                self._in_place = _folds_in_place(self.matchable, self.lowered)
            self.found[key] = matcher.spans_among(
                self._possible_terms(matcher), self.matchable, self.lowered, self._in_place
            )
        return self.found[key]

    def _possible_terms(self, matcher: TermMatcher) -> list[int]:
        if self._table is None:
            self._table = gram_table(self.lowered)
        if self.batch is None or id(matcher) not in self.batch.matchers:
            return matcher.possible(self._table)
        if self._possible is None:
            self._possible = self.batch.possible(self._table)
        return self._possible[id(matcher)]

    def sentence_of(self, offset: int) -> int:
        if self._sentence_ends is None:
            ends = _finditer_from(_SENTENCE_END, _SENTENCE_MARKS, self.matchable)
            self._sentence_ends = [m.end() for m in ends]
        return bisect.bisect_right(self._sentence_ends, offset)

    def snippet(self, start: int, end: int) -> str:
        left = max(0, start - SNIPPET_CHARS)
        right = min(len(self.text), end + SNIPPET_CHARS)
        around = " ".join(self.text[left:right].split())
        return ("…" if left else "") + around + ("…" if right < len(self.text) else "")


def _fields(title: str | None, text: str | None, topics: Topics) -> list[_Field]:
    batch = _batch_for(topics)
    return [_Field("title", title or "", batch), _Field("text", text or "", batch)]


def find_group(group: TermGroup, fields: list[_Field]) -> list[Match]:
    """Every match of the group's terms, minus those inside an excluded phrase."""
    found = []
    for article_field in fields:
        masked = []
        if group.exclude_matcher is not None:
            masked = article_field.spans(group.exclude_matcher)
        for start, end, index in article_field.spans(group.matcher):
            if any(s < end and start < e for s, e, _ in masked):
                continue
            term = group.terms[index]
            found.append(Match(term, group.name, article_field.name, start, end, article_field))
    return found


# --- scoring ---------------------------------------------------------------------------------


def score_article(
    title: str | None,
    text: str | None,
    language: str | None = None,
    topics: Topics | None = None,
) -> list[TopicScore]:
    """Score one article against every topic, with the evidence for each score.

    ``language`` is accepted for callers that know it, but terms of every language are matched
    in every article: news in one language quotes names and platforms in another.
    """
    topics = topics or default_topics()
    return _score_fields(_fields(title, text, topics), topics)


def _score_fields(fields: list[_Field], topics: Topics) -> list[TopicScore]:
    scores = [_score_topic(topic, fields) for topic in topics.topics]
    passed = {s.topic for s in scores if s.passed}
    by_name = {t.name: t for t in topics.topics}
    for score in scores:
        stronger = [name for name in by_name[score.topic].yields_to if name in passed]
        if score.passed and stronger:
            score.passed = False
            score.missing.append(f"yields to {', '.join(stronger)}")
    return scores


def _score_topic(topic: Topic, fields: list[_Field]) -> TopicScore:
    by_field = {f.name: f for f in fields}
    matches: dict[str, list[Match]] = {g.name: find_group(g, fields) for g in topic.groups}
    total, missing, parts = 0.0, [], {}
    for group in topic.groups:
        worth = sum(
            m.term.weight * (topic.title_weight if m.field == "title" else 1.0)
            for m in matches[group.name]
        )
        worth = max(worth, group.cap) if group.cap < 0 else min(worth, group.cap)
        total += worth
        parts[group.name] = round(worth, 2)
        if group.required and (not matches[group.name] or worth < max(group.min_score, 1e-9)):
            missing.append(f"group {group.name}")
    for first, second in topic.near:
        if not _meet(matches[first], matches[second], topic.near_sentences):
            missing.append(f"{first} near {second}")
    if total < topic.threshold:
        missing.append(f"score below {topic.threshold:g}")
    evidence = [
        _evidence(m, by_field[m.field])
        for group in topic.groups
        for m in matches[group.name][:MAX_EVIDENCE_PER_GROUP]
    ]
    return TopicScore(topic.name, round(total, 2), not missing, evidence, missing, parts)


def _meet(first: list[Match], second: list[Match], sentences: int) -> bool:
    """Do two groups meet: either in the title (which speaks for the whole article), or both
    within ``sentences`` of each other in the text?"""
    if not first or not second:
        return False
    if any(m.field == "title" for m in first) or any(m.field == "title" for m in second):
        return True
    theirs = sorted({b.sentence for b in second})
    for a in first:
        nearest = bisect.bisect_left(theirs, a.sentence - sentences)
        if nearest < len(theirs) and theirs[nearest] <= a.sentence + sentences:
            return True
    return False


def _evidence(match: Match, article_field: _Field) -> dict[str, Any]:
    return {
        "term": article_field.text[match.start : match.end],
        "pattern": match.term.text,
        "group": match.group,
        "weight": match.term.weight,
        "field": match.field,
        "start": match.start,
        "end": match.end,
        "snippet": article_field.snippet(match.start, match.end),
    }


# --- indicators ------------------------------------------------------------------------------

_PHONE_INTERNATIONAL = re.compile(
    r"(?<![A-Za-z0-9+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){1,5}(?![\d\-])"
)
_PHONE_NATIONAL = re.compile(
    r"(?<![A-Za-z0-9+\-./,])(?:\(0\d{1,4}\)\s?|0\d{1,4}[\s.\-])\d{2,5}[\s.\-]\d{3,5}(?![A-Za-z0-9\-])"
    r"|(?<![A-Za-z0-9+\-./,])0\d{2,3}-\d{7,8}(?![A-Za-z0-9\-])"
)
_PHONE_NORTH_AMERICAN = re.compile(
    r"(?<![A-Za-z0-9+\-./,$])(?:\(\d{3}\)\s?|[2-9]\d{2}-)\d{3}-\d{4}(?![A-Za-z0-9\-])"
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_ETH = re.compile(r"(?<![A-Za-z0-9])0x[0-9a-fA-F]{40}(?![A-Za-z0-9])")
_BTC_LEGACY = re.compile(r"(?<![A-Za-z0-9])[13][1-9A-HJ-NP-Za-km-z]{25,34}(?![A-Za-z0-9])")
_BTC_BECH32 = re.compile(r"(?<![A-Za-z0-9])bc1[ac-hj-np-z02-9]{11,71}(?![A-Za-z0-9])", re.I)
_TRON = re.compile(r"(?<![A-Za-z0-9])T[1-9A-HJ-NP-Za-km-z]{33}(?![A-Za-z0-9])")
_DOMAIN = re.compile(
    r"(?<![A-Za-z0-9@.\-])(?:https?://)?"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))"
    r"(?![A-Za-z0-9\-@]|\.[A-Za-z0-9])"
)
_WALLET_WORDS = re.compile(
    r"wallet|bitcoin|btc|crypto|tron|usdt|address|지갑|비트코인|가상|ウォレット|ビットコイン|"
    r"アドレス|暗号資産|钱包|錢包|比特币|比特幣|地址|加密",
    re.I,
)
# Where a match of these patterns can start: one character (which the regex engine scans for
# fast) and what must follow it. Trying each pattern only there spares its leading lookbehind
# at every position of the text.
_MATCH_STARTS = {
    _PHONE_INTERNATIONAL: re.compile(r"\+(?=\d)"),
    _PHONE_NATIONAL: re.compile(r"[(0](?=\d)"),
    _PHONE_NORTH_AMERICAN: re.compile(r"[(2-9](?:(?<=\()(?=\d{3}\))|(?=\d{2}-))"),
    _BTC_LEGACY: re.compile(r"[13](?=[1-9A-HJ-NP-Za-km-z]{25})"),
    _TRON: re.compile(r"T(?=[1-9A-HJ-NP-Za-km-z]{33})"),
}
# A domain match holds a letter or digit, a dot and a letter: without one, no domain.
_DOMAIN_HINT = re.compile(r"\.(?<=[A-Za-z0-9]\.)[A-Za-z]")
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# Top-level domains a news text plausibly names; "example" and "test" are reserved for
# documentation and appear in advisories that withhold real addresses.
KNOWN_TLDS = frozenset(
    """com net org info biz io co dev app ai me tv cc xyz online site top club shop store tech
    cloud pro live news asia mobi name work services solutions agency email link website space
    example test kr jp cn kp hk tw ru us uk de fr nl vn th ph sg my id in la mn ua ca au br"""
    .split()
)  # fmt: skip


def extract_indicators(
    title: str | None,
    text: str | None,
    *,
    page_url: str | None = None,
    language: str | None = None,
    topics: Topics | None = None,
) -> list[dict[str, str]]:
    """What investigators search for, from one article: kind, normalised value, context."""
    topics = topics or default_topics()
    return _indicators(_fields(title, text, topics), topics, page_url)


def _indicators(fields: list[_Field], topics: Topics, page_url: str | None) -> list[dict[str, str]]:
    found: dict[tuple[str, str], dict[str, str]] = {}
    for article_field in fields:
        for kind, value, start, end in _raw_indicators(article_field, topics, page_url):
            found.setdefault(
                (kind, value),
                {"kind": kind, "value": value, "context": article_field.snippet(start, end)},
            )
    return list(found.values())


def _raw_indicators(article_field: _Field, topics: Topics, page_url: str | None):
    text = article_field.matchable
    emails = []
    for hit in _EMAIL.finditer(text) if "@" in text else ():
        emails.append(hit.span())
        yield "email", hit.group().lower(), *hit.span()
    yield from _phones(text)
    yield from _wallets(text, article_field.lowered)
    page_host = (urlsplit(page_url).hostname or "").lower().removeprefix("www.") if page_url else ""
    for hit in _DOMAIN.finditer(text) if _DOMAIN_HINT.search(text) else ():
        if any(s <= hit.start() < e for s, e in emails):
            continue
        domain = hit.group(1).lower().removeprefix("www.")
        if _is_reportable_domain(domain, hit.group(2).lower(), page_host, topics):
            yield "domain", domain, *hit.span()
    for organisation in topics.organisations:
        spans = article_field.spans(organisation.matcher)
        if spans:
            yield organisation.kind, organisation.name, spans[0][0], spans[0][1]


def _phones(text: str):
    taken: list[tuple[int, int]] = []
    # Fewest digits per format: a national number shorter than 9 digits is more likely a date.
    for pattern, fewest in ((_PHONE_INTERNATIONAL, 8), (_PHONE_NATIONAL, 9),
                            (_PHONE_NORTH_AMERICAN, 10)):  # fmt: skip
        for hit in _finditer_from(pattern, _MATCH_STARTS[pattern], text):
            if any(s < hit.end() and hit.start() < e for s, e in taken):
                continue
            digits = re.sub(r"\D", "", hit.group())
            if not fewest <= len(digits) <= 15:
                continue
            taken.append(hit.span())
            value = "+" + digits if hit.group().startswith("+") else digits
            yield "phone", value, *hit.span()


def _wallets(text: str, lowered: str):
    """Wallet addresses; ``lowered`` is ``text.lower()``, to skip patterns whose fixed part
    (``0x``, ``bc1`` in any case) the text does not hold."""
    for hit in _ETH.finditer(text) if "0x" in text else ():
        yield "wallet-eth", hit.group().lower(), *hit.span()
    for hit in _BTC_BECH32.finditer(text) if "bc1" in lowered else ():
        if _bech32_valid(hit.group().lower()):
            yield "wallet-btc", hit.group().lower(), *hit.span()
    for hit in _finditer_from(_BTC_LEGACY, _MATCH_STARTS[_BTC_LEGACY], text):
        if _plausible_base58(hit.group(), text, hit.start()):
            yield "wallet-btc", hit.group(), *hit.span()
    for hit in _finditer_from(_TRON, _MATCH_STARTS[_TRON], text):
        if _plausible_base58(hit.group(), text, hit.start()):
            yield "wallet-tron", hit.group(), *hit.span()


def _finditer_from(pattern: re.Pattern[str], starts: re.Pattern[str], text: str):
    """What ``pattern.finditer(text)`` finds, trying the pattern only where ``starts`` finds a
    character a match can begin with (``pattern.match`` there sees the whole text, lookbehind
    included, and finds what the scan would)."""
    reached = 0
    for start in starts.finditer(text):
        if start.start() >= reached:
            match = pattern.match(text, start.start())
            if match:
                reached = match.end()
                yield match


def _plausible_base58(candidate: str, text: str, start: int) -> bool:
    """A valid checksum, or (for addresses quoted with a typo or redacted) wallet words nearby."""
    if not (re.search(r"\d", candidate) and re.search(r"[A-Za-z]", candidate)):
        return False
    return _base58check_valid(candidate) or bool(
        _WALLET_WORDS.search(text, max(0, start - 80), start + len(candidate) + 80)
    )


def _base58check_valid(candidate: str) -> bool:
    number = 0
    for char in candidate:
        number = number * 58 + _BASE58.index(char)
    pad = len(candidate) - len(candidate.lstrip("1"))
    raw = b"\x00" * pad + number.to_bytes((number.bit_length() + 7) // 8, "big")
    if len(raw) != 25:
        return False
    digest = hashlib.sha256(hashlib.sha256(raw[:-4]).digest()).digest()
    return digest[:4] == raw[-4:]


def _bech32_valid(candidate: str) -> bool:
    hrp, _, data = candidate.rpartition("1")
    if not data or any(c not in _BECH32 for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32.index(c) for c in data]
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            check ^= generator if (top >> i) & 1 else 0
    return check in (1, 0x2BC830A3)  # bech32 (segwit v0) and bech32m (v1+)


def _is_reportable_domain(domain: str, tld: str, page_host: str, topics: Topics) -> bool:
    if tld not in KNOWN_TLDS or len(domain.split(".")[0]) < 2:
        return False
    if page_host and (domain == page_host or page_host.endswith("." + domain)
                      or domain.endswith("." + page_host)):  # fmt: skip
        return False
    return not any(domain == g or domain.endswith("." + g) for g in topics.generic_domains)


# --- the item pipeline -----------------------------------------------------------------------


def judge_article(
    title: str | None,
    text: str | None,
    language: str | None,
    page_url: str | None,
    topics: Topics | str | None,
) -> tuple[list[dict[str, Any]], bool, list[dict[str, str]]]:
    """An article's topic scores (as stored), whether it is relevant, and its indicators.

    ``topics`` may be the path setting instead of the parsed topics: a worker process then
    parses the file once and keeps it (``default_topics``), so only text crosses processes.
    """
    if not isinstance(topics, Topics):
        topics = default_topics(topics)
    fields = _fields(title, text, topics)
    scores = _score_fields(fields, topics)
    stored = [
        {"topic": s.topic, "score": s.score, "passed": s.passed, "evidence": s.evidence}
        for s in scores
    ]
    relevant = any(s.passed for s in scores)
    indicators = _indicators(fields, topics, page_url) if relevant else []
    return stored, relevant, indicators


class RelevancePipeline:
    """Scores each extracted article against every topic; relevant ones give their indicators.

    Settings: ``RELEVANCE_TOPICS`` (the topics file; empty: ``NKWATCH_TOPICS``, then
    ``./topics.toml``, then the shipped file). Failed extractions pass through untouched; the
    store drops the text of articles that pass no topic. In a crawl the scoring runs in the
    extraction worker (``pipelines.pagework``), off the reactor thread; this pipeline counts.
    """

    def __init__(self, topics: Topics, stats=None, *, crawler=None, topics_file: str = "") -> None:
        self.topics = topics
        self.stats = stats
        self.crawler = crawler
        self.topics_file = topics_file
        if crawler is not None:
            from pipelines.pagework import RELEVANCE, request_stage

            request_stage(crawler, RELEVANCE, topics_file)

    @classmethod
    def from_crawler(cls, crawler):
        topics_file = crawler.settings.get("RELEVANCE_TOPICS") or ""
        topics = load_topics(topics_file or None)
        return cls(topics, crawler.stats, crawler=crawler, topics_file=topics_file)

    def process_item(self, item, spider=None):
        if item.status != "ok":
            return item
        work = getattr(item, "page_work", None)
        if work is not None and work.judged is not None:
            judged = work.judged
        else:
            judged = judge_article(item.title, item.text, item.language,
                                   item.response_url or item.url, self.topics)  # fmt: skip
        item.topic_scores, item.relevant, item.indicators = judged
        if self.stats is not None:
            self.stats.inc_value("nkwatch/relevant" if item.relevant else "nkwatch/offtopic")
            for score in item.topic_scores:
                if score["passed"]:
                    self.stats.inc_value(f"nkwatch/topic/{score['topic']}")
        return item
