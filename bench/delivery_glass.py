"""Glass to glass: how far behind live a viewer's player is, in Chromium with hls.js.

Debian's Chromium (headless, driven by Playwright as the browser tests are) opens one page per
latency, side by side in the same run: a page the bench serves (a Playwright route on
Stagecast's own origin, so no cross-origin request is involved) that loads Stagecast's vendored
hls.js and its viewer player script (``/static/vendor/hls.min.js``, ``/static/js/player.js``)
and plays the channel's master playlist with ``attachPlayer``, as the viewer page does:
``lowLatencyMode: true`` with a 1.1x catch-up for ``low``, ``false`` and two segments behind for
``standard``. Every second it samples ``Date.now() - hls.playingDate`` (the wall clock minus the
PROGRAM-DATE-TIME of the frame being shown, which is the wall clock at ingest) and hls.js's own
``hls.latency``; the first ``WARMUP`` seconds of playback are left out. Stalls are ``waiting``
events after playback started and hls.js ``BUFFER_STALLED_ERROR`` errors, counted apart.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bench.delivery_servers import CHROMIUM
from bench.ingest import _percentile

WARMUP = 10.0  # seconds of playback left out of the samples (the player settles)
# As the browser tests launch it (tests/e2e/conftest.py).
_LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
_PAGE = "/bench/glass.html"
_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>glass to glass</title></head>
<body><video id="player" muted autoplay playsinline width="640" height="360"></video>
<script src="/static/vendor/hls.min.js"></script>
<script src="/static/js/player.js"></script>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const video = document.getElementById("player");
const bench = { samples: [], hlsLatency: [], waiting: 0, stalled: 0, fatal: [], playingAt: null };
window.bench = bench;
const latency = params.get("latency");
const player = attachPlayer(video, params.get("src"), { live: true, latency });
const hls = player.hls;
bench.config = { lowLatencyMode: hls.config.lowLatencyMode,
                 maxLiveSyncPlaybackRate: hls.config.maxLiveSyncPlaybackRate };
video.addEventListener("playing", () => {
  if (bench.playingAt === null) bench.playingAt = Date.now();
});
video.addEventListener("waiting", () => { if (bench.playingAt !== null) bench.waiting += 1; });
hls.on(Hls.Events.ERROR, (_event, data) => {
  if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) bench.stalled += 1;
  else if (data.fatal) bench.fatal.push(data.details);
});
const warmup = Number(params.get("warmup")) * 1000;
setInterval(() => {
  const shown = hls.playingDate;
  if (bench.playingAt === null || !shown || Date.now() - bench.playingAt < warmup) return;
  bench.samples.push((Date.now() - shown.getTime()) / 1000);
  if (Number.isFinite(hls.latency)) bench.hlsLatency.push(hls.latency);
}, 1000);
</script></body></html>
"""


@dataclass(frozen=True)
class Glass:
    """One player's figures: latency samples (s), stalls, and how hls.js was configured."""

    latency: str
    samples: list[float]
    hls_latency: list[float]
    waiting: int
    stalled: int
    fatal: list[str]
    config: dict[str, Any]
    played: bool

    def p(self, q: float) -> float:
        """Return the ``q`` quantile of ``Date.now() - hls.playingDate`` (s; nan: none)."""
        return _percentile(self.samples, q) if self.samples else math.nan


def skipped_reason() -> str | None:
    """Return why the glass-to-glass run cannot happen here, or None."""
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM}"
    try:
        import playwright.async_api  # noqa: F401  (a dev dependency, as for the browser tests)
    except ImportError:
        return "playwright is not installed (make setup installs the dev dependencies)"
    return None


async def _watch(base_url: str, masters: dict[str, str], seconds: float) -> list[Glass]:
    from playwright.async_api import Route, async_playwright

    async def page_route(route: Route) -> None:
        await route.fulfill(body=_HTML, content_type="text/html; charset=utf-8")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=_LAUNCH_ARGS
        )
        try:
            pages = []
            for latency, master in masters.items():
                context = await browser.new_context(base_url=base_url)
                await context.route(f"**{_PAGE}*", page_route)
                page = await context.new_page()
                query = urlencode({"src": master, "latency": latency, "warmup": f"{WARMUP:g}"})
                await page.goto(f"{_PAGE}?{query}")
                pages.append((latency, page))
            started = time.monotonic()
            every = 60.0 if seconds > 120 else seconds
            while (left := seconds + WARMUP - (time.monotonic() - started)) > 0:
                # The wait is the measurement itself (the pages sample on their own).
                await asyncio.sleep(min(every, left))
                figures = [await _read(latency, page) for latency, page in pages]
                print("  glass to glass, " + "; ".join(
                    f"{g.latency}: {len(g.samples)} samples, p50 {g.p(0.5):.2f} s, "
                    f"stalls {g.waiting}" for g in figures), flush=True)  # fmt: skip
            return figures
        finally:
            await browser.close()


async def _read(latency: str, page: Any) -> Glass:
    state = await page.evaluate("() => window.bench")
    return Glass(
        latency=latency,
        samples=list(state["samples"]),
        hls_latency=list(state["hlsLatency"]),
        waiting=int(state["waiting"]),
        stalled=int(state["stalled"]),
        fatal=list(state["fatal"]),
        config=dict(state.get("config") or {}),
        played=state["playingAt"] is not None,
    )


def watch(base_url: str, masters: dict[str, str], seconds: float) -> list[Glass]:
    """Play each master (latency → URL) in its own page for ``seconds`` after the warm-up."""
    return asyncio.run(_watch(base_url, masters, seconds))
