"""Health verdicts: each rule, its threshold, its wording, and the worst rule winning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagecast.studio.health import (
    KEYFRAME_INTERVAL_BAD,
    KEYFRAME_INTERVAL_DEGRADED,
    MIN_MEASURED,
    Reading,
    Thresholds,
    Verdict,
    _delivery,
    _media,
    _silence,
    all_clear,
    assess,
)

HEALTHY = {
    "state": "live",
    "since_media": 0.1,
    "measured": 30.0,
    "keyframe_interval": 2.0,
    "frame_rate": 30.0,
    "jitter": 0.01,
}


def reading(**changes: object) -> Reading:
    """Return a healthy reading with ``changes`` applied."""
    return Reading(**{**HEALTHY, **changes})  # type: ignore[arg-type]


def test_a_steady_stream_is_good() -> None:
    """Nothing fires for a stream that sends media, keyframes every 2 s, 30 fps."""
    health = assess(reading())
    assert health.verdict is Verdict.GOOD
    assert health.as_json() == {"verdict": "good", "reasons": []}


@pytest.mark.parametrize("state", ["ended", "offline", ""])
def test_a_session_that_is_not_active_is_offline(state: str) -> None:
    """Ended (or no) sessions are offline whatever the numbers say."""
    assert assess(reading(state=state)).verdict is Verdict.OFFLINE


@pytest.mark.parametrize(
    ("changes", "verdict", "reason"),
    [
        ({"keyframe_interval": 8.0}, Verdict.DEGRADED, "keyframe interval 8.0 s > 4 s"),
        ({"keyframe_interval": 12.0}, Verdict.BAD, "keyframe interval 12.0 s > 10 s"),
        ({"since_media": 6.0}, Verdict.DEGRADED, "no media for 6 s"),
        ({"since_media": 9.0}, Verdict.BAD, "no media for 9 s"),
        ({"frame_rate": 5.0}, Verdict.DEGRADED, "frame rate 5.0 fps < 10 fps"),
        ({"jitter": 0.8}, Verdict.DEGRADED, "segment durations vary by 0.80 s > 0.5 s"),
        ({"dropped": 1}, Verdict.DEGRADED, "1 segment(s) dropped recently"),
        ({"dropped": 3}, Verdict.BAD, "3 segments dropped recently"),
        ({"late": 2}, Verdict.DEGRADED, "2 segments arrived late recently"),
        ({"unarchived": 2}, Verdict.DEGRADED, "2 segment(s) waiting for the database"),
        ({"unarchived": 10}, Verdict.BAD, "10 segments waiting for the database"),
        ({"unstored": 3}, Verdict.DEGRADED, "3 file(s) waiting for the media storage"),
        ({"unstored": 30}, Verdict.BAD, "30 files waiting for the media storage"),
        ({"reconnects": 1}, Verdict.DEGRADED, "encoder reconnected 1 time(s) recently"),
        ({"state": "idle"}, Verdict.DEGRADED, "waiting for the first segment"),
        (
            {"state": "reconnecting", "since_media": 20.0},
            Verdict.BAD,
            "encoder disconnected; waiting for it to reconnect",
        ),
    ],
)
def test_each_rule_gives_its_verdict_and_reason(
    changes: dict[str, object], verdict: Verdict, reason: str
) -> None:
    """One bad number: that rule's verdict, and exactly its reason."""
    health = assess(reading(**changes))
    assert health.verdict is verdict
    assert health.reasons == (reason,)


def test_thresholds_are_exclusive_limits() -> None:
    """Exactly at a limit is still fine; just past it fires."""
    assert assess(reading(keyframe_interval=KEYFRAME_INTERVAL_DEGRADED)).verdict is Verdict.GOOD
    assert assess(reading(keyframe_interval=KEYFRAME_INTERVAL_BAD)).verdict is Verdict.DEGRADED
    assert assess(reading(keyframe_interval=4.01)).verdict is Verdict.DEGRADED


def test_rates_are_not_judged_on_too_little_media() -> None:
    """The first second of a stream has a noisy frame rate: not judged before MIN_MEASURED."""
    assert assess(reading(frame_rate=3.0, measured=MIN_MEASURED / 2)).verdict is Verdict.GOOD


def test_the_worst_rule_wins_and_reasons_come_worst_first() -> None:
    """Degraded and bad together: bad, with the bad reason first."""
    health = assess(reading(keyframe_interval=6.0, since_media=12.0))
    assert health.verdict is Verdict.BAD
    assert health.reasons == ("no media for 12 s", "keyframe interval 6.0 s > 4 s")


def test_silence_limits_scale_with_long_segments() -> None:
    """HTTP push of 6 s segments is silent for 6 s between them: not degraded at 7 s."""
    limits = Thresholds.for_segments(6.0)
    assert assess(reading(since_media=7.0), limits).verdict is Verdict.GOOD
    assert assess(reading(since_media=13.0), limits).verdict is Verdict.DEGRADED
    assert assess(reading(since_media=25.0), limits).verdict is Verdict.BAD
    assert Thresholds.for_segments(2.0) == Thresholds()


maybe = st.none() | st.floats(min_value=0, max_value=30)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["idle", "live", "reconnecting"]),
    maybe,
    st.floats(min_value=0, max_value=30),
    maybe,
    maybe,
    maybe,
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 12),
    st.integers(0, 3),
    st.integers(0, 40),
)
def test_the_fast_all_clear_agrees_with_the_rules(
    state: str,
    since: float | None,
    measured: float,
    gop: float | None,
    fps: float | None,
    jitter: float | None,
    dropped: int,
    late: int,
    unarchived: int,
    reconnects: int,
    unstored: int,
) -> None:
    """The every-tick shortcut says "good" exactly when no rule would give a reason."""
    r = Reading(
        state, since, measured, gop, fps, jitter, dropped, late, unarchived, reconnects, unstored
    )
    for limits in (Thresholds(), Thresholds.for_segments(6.0)):
        found: list[tuple[Verdict, str]] = []
        if state != "live":
            found.append((Verdict.DEGRADED, state))
        _silence(r, limits, found)
        _media(r, limits, found)
        _delivery(r, found)
        assert all_clear(r, limits) == (not found)
        assert (assess(r, limits).verdict is Verdict.GOOD) == (not found)
