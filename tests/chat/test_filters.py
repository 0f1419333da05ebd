"""Word filters: literal words and phrases, RE2 patterns, limits, and hostile input."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.chat.filters import (
    MAX_PATTERN,
    FilterRule,
    FilterSet,
    InvalidFilter,
    validate,
)

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)


def one(kind: str, pattern: str, action: str = "block") -> FilterSet:
    """A set with a single filter."""
    return FilterSet([FilterRule(1, kind, validate(kind, pattern, action), action)])


def test_a_word_matches_whole_words_in_any_case_and_width() -> None:
    """A word filter matches the word alone, in any case or full-width form, not inside others."""
    rules = one("word", "café")
    assert rules.match("un CAFÉ noir") is not None
    assert rules.match("ｃａｆé, please") is not None
    assert rules.match("cafés and cafébar") is None


def test_a_phrase_matches_anywhere_and_is_literal() -> None:
    """A phrase filter is a literal substring: regex metacharacters mean themselves."""
    rules = one("phrase", "buy (now)+")
    assert rules.match("please BUY (NOW)+ today") is not None
    assert rules.match("buy nownow") is None


def test_block_wins_over_hold_and_the_oldest_rule_is_named() -> None:
    """When several filters match, a block beats a hold, then the oldest wins."""
    rules = FilterSet(
        [
            FilterRule(1, "word", "spam", "hold"),
            FilterRule(2, "phrase", "spam", "block"),
            FilterRule(3, "pattern", "sp.m", "block"),
        ]
    )
    found = rules.match("spam!")
    assert found is not None
    assert (found.id, found.action) == (2, "block")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreference"),
        (r"(?<=a)b", "look-behind"),
        (r"(?=a)", "look-ahead"),
        ("(a{1000}){1000}", "repetition beyond the limit"),
        ("(x{0,999}y){0,30}", "program beyond the memory cap"),
        ("a*", "matches every message"),
        ("[", "syntax error"),
        ("x" * (MAX_PATTERN + 1), "too long"),
        ("bad\x00", "control character"),
    ],
)
def test_hostile_or_broken_patterns_are_refused(pattern: str, reason: str) -> None:
    """Patterns RE2 cannot run safely, or that would match everything, are a 422 at creation."""
    with pytest.raises(InvalidFilter):
        validate("pattern", pattern, "block")


def test_catastrophic_backtracking_patterns_run_in_linear_time() -> None:
    """A pattern that makes backtracking engines explode matches a long hostile text at once."""
    rules = one("pattern", r"(a+)+$")
    hostile = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert rules.match(hostile) is None
    assert time.perf_counter() - started < 0.5


def test_a_set_too_large_for_its_memory_cap_is_refused() -> None:
    """Patterns that pass alone but not together are refused when the set is compiled."""
    pattern = "(?:ab|cd|ef){200}z"
    validate("pattern", pattern, "block")
    rules = [FilterRule(i, "pattern", f"{pattern}{i}", "block") for i in range(100)]
    with pytest.raises(InvalidFilter):
        FilterSet(rules)


def test_unknown_kinds_actions_and_blank_literals_are_refused() -> None:
    """Only word/phrase/pattern and block/hold exist; an empty literal is refused."""
    for kind, pattern, action in (
        ("regex", "a", "block"),
        ("word", "a", "drop"),
        ("word", "  ", "hold"),
    ):
        with pytest.raises(InvalidFilter):
            validate(kind, pattern, action)


@settings(max_examples=200, deadline=None)
@given(word=WORDS, text=st.lists(st.sampled_from(["", " ", ",", "x", "spam", "é", "_"]) | WORDS))
def test_word_filters_agree_with_a_reference_tokeniser(word: str, text: list[str]) -> None:
    """For ASCII words, the RE2 word filter matches exactly when the word is a token."""
    body = " ".join(text)
    tokens = re.split(r"[^\w]+", body.lower())
    assert (one("word", word).match(body) is not None) == (word in tokens)


@settings(max_examples=200, deadline=None)
@given(
    literal=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and s.isprintable()),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_any_printable_phrase_matches_itself_literally(
    literal: str, before: str, after: str
) -> None:
    """Whatever characters a phrase holds (metacharacters included), it matches its own text."""
    try:
        rules = one("phrase", literal)
    except InvalidFilter:
        return  # e.g. a phrase that normalises to nothing matchable
    assert rules.match(before + literal + after) is not None


@settings(max_examples=100, deadline=None)
@given(body=st.text(max_size=500))
def test_matching_never_fails_on_arbitrary_text(body: str) -> None:
    """Any message text, including lone surrogates and odd scripts, is matched without error."""
    block = FilterRule(1, "word", "spam", "block")
    hold = FilterRule(2, "pattern", r"(\pL+\s*){3,}", "hold")
    rules = FilterSet([block, hold])
    assert rules.match(body) in (None, block, hold)
    assert rules.match(body + " spam ") == block  # and odd text does not blind the matcher
