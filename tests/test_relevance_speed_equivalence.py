"""The shortcuts that make scoring cheap find exactly what the plain way finds: every term's
regex over the whole text, every pattern's ``finditer``, every pair of matches for "near"."""

from __future__ import annotations

import random
import re

import pytest

from pipelines import relevance
from pipelines.relevance import Match, Term, TermMatcher, _meet, leftmost_longest, term_regex

# Letters that case folding treats specially (İ ı ſ K Σ ς), full-width forms, CJK, digits and
# the punctuation the patterns care about.
ALPHABET = "aAbBiIkKsStTnNoO İıſKΣσςßẞ０Ｉｔ北朝鮮韓国0123456789+-().,@:/\n。！？\"'”"
TERMS = (
    ("North Korea*", False),
    ("North Korean", False),
    ("IT worker*", False),
    ("skis", False),
    ("kit", False),
    ("İstanbul", False),
    ("Σος", False),
    ("北朝鮮", False),
    ("朝鮮", False),
    ("the North", True),
    ("Kit", True),
    ("*ing", False),
    ("a b", False),
)


def plain_spans(terms, text: str, lowered: str) -> list[tuple[int, int, int]]:
    """What ``TermMatcher.spans`` promises: every term whose pieces occur, matched by its regex
    over the whole text, overlaps resolved leftmost-longest."""
    found = []
    for index, (term, case_sensitive) in enumerate(terms):
        pieces = [p if case_sensitive else p.lower() for p in re.split(r"[* ]", term) if p]
        haystack = text if case_sensitive else lowered
        if all(piece in haystack for piece in pieces):
            flags = 0 if case_sensitive else re.IGNORECASE
            pattern = re.compile(term_regex(Term(term, 0.0)), flags)
            found.extend((m.start(), m.end(), index) for m in pattern.finditer(text))
    return leftmost_longest(found)


def random_texts(count: int, seed: int, words: tuple[str, ...] = ()) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = [
            rng.choice(words) if words and rng.random() < 0.3 else rng.choice(ALPHABET)
            for _ in range(rng.randrange(0, 60))
        ]
        texts.append("".join(parts))
    return texts


def test_piece_keys_are_the_text_keys_of_the_piece():
    rng = random.Random(7)
    for _ in range(300):
        piece = "".join(rng.choice(ALPHABET + "\U0001f600") for _ in range(rng.randrange(1, 9)))
        keys = relevance._gram_keys(piece).tolist()
        width = min(len(piece), 3)
        longest = keys[sum(max(0, len(piece) - n + 1) for n in range(1, width)) :]
        assert relevance._piece_keys(piece) == longest


def test_case_partners_are_every_letter_a_pattern_takes_for_ascii():
    everything = "".join(map(chr, range(0x80, 0x110000)))
    partners = set(re.findall(r"(?i:[a-z])", everything))
    assert partners == set(relevance._ASCII_CASE_PARTNERS.pattern.strip("[]"))


@pytest.mark.parametrize("seed", range(4))
def test_matcher_finds_what_every_regex_finds(seed):
    words = tuple(t for t, _ in TERMS) + ("north korean", "NORTH-KOREA", "ıt", "ſkis", "KIT")
    matcher = TermMatcher(TERMS)
    for text in random_texts(400, seed, words):
        text = relevance.normalise_for_matching(text)
        lowered = text.lower()
        assert matcher.spans(text, lowered) == plain_spans(TERMS, text, lowered), text


@pytest.mark.parametrize(
    "pattern",
    [
        relevance._PHONE_INTERNATIONAL,
        relevance._PHONE_NATIONAL,
        relevance._PHONE_NORTH_AMERICAN,
        relevance._BTC_LEGACY,
        relevance._TRON,
    ],
)
def test_finditer_from_starts_is_finditer(pattern):
    starts = relevance._MATCH_STARTS[pattern]
    words = ("+82 10-1234-5678", "(02) 123-4567", "010-1234-5678", "212-555-0100", "(212) 555-0100",
             "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "TJYeasTPa6gpEZhs1PQXAtLDsv4zKdZMdq")  # fmt: skip
    for text in random_texts(400, 11, words):
        expected = [m.span() for m in pattern.finditer(text)]
        assert [m.span() for m in relevance._finditer_from(pattern, starts, text)] == expected


def test_sentence_ends_are_found_as_before():
    for text in random_texts(400, 3, ("end. ", 'really?" ', "3.5", "終わり。")):
        expected = [m.end() for m in relevance._SENTENCE_END.finditer(text)]
        found = relevance._finditer_from(relevance._SENTENCE_END, relevance._SENTENCE_MARKS, text)
        assert [m.end() for m in found] == expected


def test_meet_is_any_pair_in_the_title_or_near_enough():
    rng = random.Random(5)
    article = relevance._Field("text", "a. b. c. d. e. f. g. h. i. j. k.")
    for _ in range(500):
        first, second = (
            [
                Match(
                    Term("x", 1.0), "g", rng.choice(("title", "text", "text")), at, at + 1, article
                )
                for at in rng.sample(range(0, 30, 3), rng.randrange(0, 4))
            ]
            for _ in range(2)
        )
        apart = rng.randrange(0, 3)
        expected = any(
            "title" in (a.field, b.field) or abs(a.sentence - b.sentence) <= apart
            for a in first
            for b in second
        )
        assert _meet(first, second, apart) == expected
