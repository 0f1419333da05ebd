"""Word filters: literal words, literal phrases and RE2 patterns, matched in linear time.

Only RE2 is used (no backtracking engine), so no pattern can stall the process: matching is
linear in the message length, backreferences and look-arounds do not compile, and every
compiled program is capped in memory (``PATTERN_MEMORY`` alone, ``SET_MEMORY`` for a channel's
whole set). Messages and literals are NFKC-normalised and compared case-insensitively, so
full-width or compatibility look-alikes do not slip past a literal, and every format character
(Unicode category Cf: zero-width spaces and joiners, soft hyphens, word joiners, direction
marks, tags) is removed first, so an invisible one inside a word does not hide it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import re2

from stagecast.chat.models import FILTER_ACTIONS, FILTER_KINDS
from stagecast.errors import Unprocessable

MAX_LITERAL = 100  # code points of a word or phrase
MAX_PATTERN = 200  # code points of a pattern
MAX_FILTERS = 100  # per channel
PATTERN_MEMORY = 1 << 20  # bytes for one compiled pattern
SET_MEMORY = 8 << 20  # bytes for a channel's compiled set

# Anything but a word character (a letter, digit or '_' in any script): RE2's \b is ASCII-only.
_NOT_WORD = r"[^\pL\pN_]"


@dataclass(frozen=True)
class FilterRule:
    """One filter of a channel."""

    id: int
    kind: str
    pattern: str
    action: str


class InvalidFilter(Unprocessable):
    """A filter is too long, does not compile under RE2, or matches every message."""

    code = "invalid_filter"


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True
    options.log_errors = False
    options.max_mem = max_mem
    return options


def without_format(text: str) -> str:
    """Return ``text`` without its format characters (Unicode category Cf)."""
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def normalise(text: str) -> str:
    """Return ``text`` as filters see it: without format characters, then NFKC (full-width and
    ligature forms folded; NFKC makes no format character out of any other)."""
    return unicodedata.normalize("NFKC", without_format(text))


def to_regex(kind: str, pattern: str) -> str:
    """Return the RE2 source that implements a filter of ``kind``."""
    if kind == "pattern":
        return pattern
    literal: str = re2.escape(normalise(pattern))
    if kind == "phrase":
        return literal
    return f"(?:^|{_NOT_WORD})(?:{literal})(?:$|{_NOT_WORD})"


def validate(kind: str, pattern: str, action: str) -> str:
    """Return the pattern to store (trimmed). Raises InvalidFilter with the reason."""
    if kind not in FILTER_KINDS:
        raise InvalidFilter(f"kind must be one of {', '.join(FILTER_KINDS)}")
    if action not in FILTER_ACTIONS:
        raise InvalidFilter(f"action must be one of {', '.join(FILTER_ACTIONS)}")
    cleaned = without_format(pattern).strip()  # a message never has them when matched
    limit = MAX_PATTERN if kind == "pattern" else MAX_LITERAL
    if not 1 <= len(cleaned) <= limit:
        raise InvalidFilter(f"a {kind} filter must be 1-{limit} characters")
    if any(unicodedata.category(c) == "Cc" for c in cleaned):
        raise InvalidFilter("filters may not contain control characters")
    try:
        compiled = re2.compile(to_regex(kind, cleaned), _options(PATTERN_MEMORY))
    except re2.error as exc:
        raise InvalidFilter(f"pattern does not compile under RE2: {_reason(exc)}") from exc
    if compiled.search("") is not None:
        raise InvalidFilter("pattern matches every message")
    return cleaned


def _reason(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else "invalid"
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)[:200]


class FilterSet:
    """A channel's filters compiled into one RE2 set; ``match`` names the rule that applies."""

    def __init__(self, rules: list[FilterRule]) -> None:
        """Compile ``rules``. Raises InvalidFilter if the set exceeds ``SET_MEMORY``.

        A stored rule that no longer compiles on its own is skipped, never fatal.
        """
        self.rules: list[FilterRule] = []
        self._set: re2.Set | None = None
        if not rules:
            return
        compiled = re2.Set.SearchSet(_options(SET_MEMORY))
        for rule in rules:
            try:
                compiled.Add(to_regex(rule.kind, rule.pattern))
            except re2.error:
                continue
            self.rules.append(rule)
        if not self.rules:
            return
        try:
            compiled.Compile()
        except re2.error as exc:
            raise InvalidFilter("the channel's filters together are too complex") from exc
        self._set = compiled

    def match(self, body: str) -> FilterRule | None:
        """Return the rule that applies to ``body``: a block before a hold, oldest first."""
        if self._set is None:
            return None
        hits: list[int] | None = self._set.Match(normalise(body))
        if not hits:
            return None
        found = sorted((self.rules[i] for i in hits), key=lambda r: (r.action != "block", r.id))
        return found[0]
