"""Capped exponential backoff with full jitter (pure logic, property tests)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecast.backoff import Backoff, ceiling, delay

firsts = st.floats(min_value=1e-6, max_value=100.0)
caps = st.floats(min_value=1e-6, max_value=3600.0)
seeds = st.integers()


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(failures=st.integers(min_value=-5, max_value=5000), first=firsts, cap=caps, seed=seeds)
def test_a_delay_lies_between_zero_and_the_capped_ceiling(
    failures: int, first: float, cap: float, seed: int
) -> None:
    """Every delay is in [0, min(cap, first * 2^(n-1))], even for huge failure counts."""
    drawn = delay(failures, first, cap, random.Random(seed))
    assert 0.0 <= drawn <= ceiling(failures, first, cap) <= cap


@given(failures=st.integers(min_value=1, max_value=60), first=firsts, cap=caps)
def test_the_ceiling_doubles_from_first_until_the_cap(
    failures: int, first: float, cap: float
) -> None:
    """The ceiling is first after one failure and doubles per failure, never above cap."""
    assert ceiling(1, first, cap) == min(cap, first)
    assert ceiling(failures, first, cap) == min(cap, first * 2 ** (failures - 1))
    assert ceiling(failures + 1, first, cap) >= ceiling(failures, first, cap)


def test_the_jitter_spans_the_whole_window() -> None:
    """Full jitter: draws fill [0, ceiling], not only its upper half."""
    rng = random.Random(7)
    draws = [delay(4, 0.5, 30.0, rng) for _ in range(2000)]  # ceiling 4 s
    assert min(draws) < 0.4
    assert max(draws) > 3.6
    assert all(0.0 <= d <= 4.0 for d in draws)


@given(first=firsts, cap=caps, seed=seeds, failures=st.integers(min_value=1, max_value=80))
def test_a_loop_waits_under_the_cap_and_starts_over_after_reset(
    first: float, cap: float, seed: int, failures: int
) -> None:
    """Each failure's delay respects the ceiling; after reset the first ceiling applies again."""
    backoff = Backoff(first, cap, rng=random.Random(seed))
    for n in range(1, failures + 1):
        assert 0.0 <= backoff.next_delay() <= ceiling(n, first, cap) <= cap
    assert backoff.failures == failures
    assert backoff.reset() is True
    assert backoff.failures == 0
    assert not backoff.failing
    assert 0.0 <= backoff.next_delay() <= min(first, cap)


@given(first=firsts, cap=caps, seed=seeds, failures=st.integers(min_value=1, max_value=30))
def test_retry_at_is_the_failure_time_plus_the_delay(
    first: float, cap: float, seed: int, failures: int
) -> None:
    """After a failure the loop is not ready before retry_at and ready from then on."""
    clock = Clock()
    backoff = Backoff(first, cap, rng=random.Random(seed), clock=clock)
    for _ in range(failures):
        started = clock.now
        clock.now += 0.25  # the failed attempt took a while: that time counts towards the wait
        wait = backoff.fail(started)
        assert backoff.retry_at == started + wait
        assert backoff.remaining() == max(0.0, started + wait - clock.now)
        assert backoff.ready() is (clock.now >= started + wait)
        clock.now = backoff.retry_at
        assert backoff.ready()
        assert backoff.remaining() == 0.0


def test_a_new_or_reset_backoff_is_ready_at_once() -> None:
    """Nothing failed yet (or since the last success): the loop may try now."""
    clock = Clock()
    backoff = Backoff(1.0, 30.0, rng=random.Random(1), clock=clock)
    assert backoff.ready()
    assert backoff.reset() is False
    wait = backoff.fail()
    assert backoff.retry_at == clock.now + wait
    assert backoff.failing
    assert backoff.reset() is True
    assert backoff.ready()
    assert backoff.remaining() == 0.0


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_a_backoff_without_positive_bounds_is_refused(first: float, cap: float) -> None:
    """A zero or negative first delay or cap would make a busy loop: refused."""
    with pytest.raises(ValueError, match="first > 0 and cap > 0"):
        Backoff(first, cap)


@given(
    failures=st.integers(min_value=1, max_value=200),
    first=firsts,
    cap=caps,
    floor=st.floats(min_value=0.0, max_value=5000.0),
    seed=seeds,
)
def test_a_floor_raises_the_window_start_but_never_past_the_ceiling(
    failures: int, first: float, cap: float, floor: float, seed: int
) -> None:
    """With a floor, delays lie in [min(floor, ceiling), ceiling]: still within the cap."""
    top = ceiling(failures, first, cap)
    drawn = delay(failures, first, cap, random.Random(seed), floor=floor)
    assert min(floor, top) <= drawn <= top <= cap


def test_a_floor_equal_to_first_makes_the_first_wait_exact() -> None:
    """A tick-driven loop with floor == first waits exactly first after its first failure."""
    backoff = Backoff(1.0, 30.0, floor=1.0, rng=random.Random(3))
    assert backoff.next_delay() == 1.0
    assert 1.0 <= backoff.next_delay() <= 2.0
