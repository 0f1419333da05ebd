"""Viewer delivery: one Stagecast process against nginx and a bare ASGI app, same files.

A real ffmpeg publishes a 720p stream (about 3 Mbit/s: 2.85 Mbit/s video, 128 kbit/s audio,
2 s GOP) over RTMP into one ``stagecast serve`` on SQLite, on two channels: ``low`` latency
(LL-HLS) and ``standard`` (``bench.delivery_servers``). The newest segment, the newest part
and the live media playlist are copied out of Stagecast and served as the same bytes by
Debian's nginx (one worker, ``sendfile on``) and a bare ASGI app on uvicorn (bytes in memory).

1. The table. In one run and while the streams stay live, each server takes the same load in
   turn: the newest listed segment at 50 and 200 connections, the live media playlist at 200
   (its URL as a player gets it from the master), the newest listed part at 200, blocking
   reloads at 200 (each connection asks for the part after the newest it saw; nginx and the
   bare app have no such thing) and a segment out of the live window at 50 (from storage).
   Prints req/s, MB/s, p50/p99, the CPU of the server and of the load generator (median round
   of three, one with ``--quick``) and the ratios to nginx (``bench.delivery_load``).
2. Viewers held: simulated hls.js-like players (standard, and LL-HLS) at rising counts, in
   their own processes; the largest count at which no player fell behind its media
   (``bench.delivery_players``).
3. Glass to glass: the channel played in Chromium with the vendored hls.js, ``standard`` and
   ``low`` side by side, ``Date.now() - hls.playingDate`` p50/p95 and stalls over 10 minutes
   (``--minutes``; one with ``--quick``) (``bench.delivery_glass``).

Then the targets: segments >= 0.7x nginx, playlists >= 0.3x; >= 1,000 standard and >= 500
LL-HLS viewers held; LL-HLS p50 <= 2.0 s, p95 <= 3.0 s, no stall; standard p50 <= 5 s.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench import delivery_glass, delivery_players
from bench.delivery_glass import Glass
from bench.delivery_load import Figures, measure
from bench.delivery_players import LATE, Step
from bench.delivery_servers import (
    PART,
    PLAYLIST,
    SEGMENT,
    Stage,
    Target,
    bare,
    install_missing,
    nginx,
    stagecast,
    tool,
)
from bench.ingest import FFMPEG

CELLS = (
    ("segment", 50),
    ("segment", 200),
    ("playlist", 200),
    ("part", 200),
    ("blocking", 200),
    ("old segment", 50),
)
LABELS = {
    "segment": "live-window segment",
    "playlist": "live media playlist",
    "part": "newest listed part",
    "blocking": "blocking reload (next part)",
    "old segment": "segment out of the live window",
}
TARGETS = {"segment": 0.7, "playlist": 0.3, "old segment": 0.7}  # Stagecast / nginx req/s
HELD_TARGETS = {"standard": 1000, "low": 500}
LL_P50, LL_P95, STANDARD_P50 = 2.0, 3.0, 5.0
NO_BLOCKING = "n/a (no blocking reload)"
Results = dict[tuple[str, int], dict[str, list[Figures]]]


def _make_source(folder: Path, seconds: int) -> Path:
    """Encode ``seconds`` of 720p30 test pattern at about 3 Mbit/s (2 s GOP) into an FLV."""
    path = folder / "source.flv"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2850k", "-maxrate", "3000k",
         "-bufsize", "3000k", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", "-y", str(path)],
        check=True, timeout=300,
    )  # fmt: skip
    return path


# -- the table --------------------------------------------------------------------------------


def _run_cells(targets: list[Target], seconds: float, rounds: int) -> Results:
    """Measure every cell on every target, interleaved, ``rounds`` times; keep every round.

    Within a round the servers run one after the other on the same cell, so a ratio of two
    figures of one round compares them under the same background load.
    """
    results: Results = {cell: {t.name: [] for t in targets if cell[0] in t.urls} for cell in CELLS}
    for round_number in range(rounds):
        for kind, connections in CELLS:
            for target in targets:
                if kind not in target.urls:
                    continue
                if round_number == 0:
                    measure(target, kind, connections, 1.0)  # warm-up: caches, accepted sockets
                figures = measure(target, kind, connections, seconds)
                results[kind, connections][target.name].append(figures)
                print(f"  round {round_number + 1}, {kind} x {connections}, {target.name}: "
                      f"{figures.requests_per_s:,.0f} req/s", flush=True)  # fmt: skip
    return results


def _median(runs: list[Figures]) -> Figures:
    """Return the round with the median req/s (the lower middle one of an even count)."""
    return sorted(runs, key=lambda figures: figures.requests_per_s)[(len(runs) - 1) // 2]


def _ratios(ours: list[Figures], nginx_runs: list[Figures]) -> list[float]:
    """Return the req/s ratios to nginx, round by round, smallest first."""
    pairs = zip(ours, nginx_runs, strict=True)
    return sorted(mine.requests_per_s / peer.requests_per_s for mine, peer in pairs)


def _row(label: str, cells: list[str]) -> str:
    return f"{label:30}" + "".join(f"{cell:>26}" for cell in cells)


def _ms(value: float) -> str:
    return f"{value * 1000:,.0f}" if value >= 0.01 else f"{value * 1000:.2f}"


def _ratio_text(ratios: list[float]) -> str:
    middle = ratios[(len(ratios) - 1) // 2]
    spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
    return f"{middle:.2f}x{spread}"


_ROWS: list[tuple[str, Callable[[Figures], str]]] = [
    ("  req/s", lambda f: f"{f.requests_per_s:,.0f}"),
    ("  MB/s", lambda f: f"{f.mb_per_s:,.1f}"),
    ("  latency p50 / p99 (ms)", lambda f: f"{_ms(f.p50)} / {_ms(f.p99)}"),
    ("  server CPU (cores)", lambda f: f"{f.server_cpu:.2f}"),
    ("  load generator CPU (cores)", lambda f: f"{f.generator_cpu:.2f}"),
]


def _table(results: Results, names: list[str]) -> list[str]:
    lines = [_row("", names)]
    for (kind, connections), by_name in results.items():
        lines.append(f"{LABELS[kind]}, {connections} connections")
        got = {name: _median(by_name[name]) for name in names if name in by_name}
        rows = list(_ROWS)
        if any(f.errors for f in got.values()):
            rows.append(("  failed requests", lambda f: f"{f.errors:,}"))
        if any(f.spread for f in got.values()):
            rows.append(("  after the first answer (ms)", _spread_text))
        for index, (label, shown) in enumerate(rows):
            blank = NO_BLOCKING if index == 0 else "-"
            lines.append(_row(label, [shown(got[n]) if n in got else blank for n in names]))
        if "nginx" in by_name:
            ratios = [
                "1.00x"
                if name == "nginx"
                else _ratio_text(_ratios(by_name[name], by_name["nginx"]))
                for name in names
            ]
            lines.append(_row("  req/s vs nginx (range)", ratios))
    return lines


def _spread_text(figures: Figures) -> str:
    if figures.spread is None:
        return "-"
    return f"p50 {_ms(figures.spread[0])} / p99 {_ms(figures.spread[1])}"


def _cell_verdicts(results: Results) -> list[str]:
    verdicts = []
    for (kind, connections), by_name in results.items():
        goal = TARGETS.get(kind)
        if goal is None:
            continue
        if "nginx" not in by_name:
            verdicts.append(f"{kind} x {connections} >= {goal}x nginx: not measured")
            continue
        ours = next(runs for name, runs in by_name.items() if name.startswith("Stagecast"))
        ratios = _ratios(ours, by_name["nginx"])
        ratio = ratios[(len(ratios) - 1) // 2]
        verdict = "met" if ratio >= goal else "MISSED"
        verdicts.append(f"{kind} x {connections} >= {goal}x nginx (got {ratio:.2f}x): {verdict}")
    return verdicts


def _generator_line(generator: str, seconds: float, rounds: int) -> str:
    if generator == "wrk":
        version = subprocess.run([tool("wrk") or "wrk", "-v"], capture_output=True, text=True)
        name = (version.stdout + version.stderr).split(" [", 1)[0].strip() or "wrk"
        what = f"{name}, one thread"
    else:
        what = "this bench's asyncio client (wrk is missing), in the bench's own process"
    round_text = f"median of {rounds} rounds" if rounds > 1 else "one round"
    return (
        f"load: {what} (blocking reloads: this bench's asyncio client, in this process, "
        f"one loopback address per connection), {seconds:g} s per cell after a 1 s warm-up, "
        f"{round_text}; its CPU is in the table (1.00 = a whole core: near it, the generator "
        "is the limit)"
    )


# -- viewers held and glass to glass ----------------------------------------------------------


def _largest(steps: list[Step]) -> int | None:
    held = [step.count for step in steps if step.held]
    return max(held) if held else None


def _held_lines(steps: dict[str, list[Step]], seconds: float) -> list[str]:
    lines = [
        f"viewers held: simulated hls.js-like players, {seconds:g} s per count (joining over "
        f"the first 5 s), at most {delivery_players.PER_PROCESS} per load-generator process; "
        "falls behind = buffer end more than 3 target durations (standard) or PART-HOLD-BACK "
        "+ 1 s (LL-HLS) behind the wall clock for 2 s",
        f"{'':22}{'count':>7}{'held':>6}{'fell':>6}{'failed req':>11}{'lag p50/p99 (s)':>17}"
        f"{'req/s':>8}{'MB/s':>8}{'players CPU':>13}{'server CPU':>12}{'sampler late':>14}"
        f"{'machine CPU':>13}{'CPU waits':>11}",
    ]
    for kind, kind_steps in steps.items():
        name = "standard HLS" if kind == "standard" else "LL-HLS"
        for step in kind_steps:
            verdict = ("yes" if step.held else "NO") + ("*" if step.late_p99 > LATE else "")
            lines.append(
                f"{name:22}{step.count:>7,}{verdict:>6}{step.fell:>6}"
                f"{step.errors.total():>11,}{f'{step.lag(0.5):.2f} / {step.lag(0.99):.2f}':>17}"
                f"{step.requests_per_s:>8,.0f}{step.mb_per_s:>8,.0f}"
                f"{f'{step.generator_cpu:.2f} ({step.processes}p)':>13}"
                f"{step.server_cpu:>12.2f}{f'{step.late_p99 * 1000:.0f} ms':>14}"
                f"{step.machine_cpu:>13.2f}{f'{step.pressure:.0%}':>11}"
            )
            if step.errors or step.reopened:
                lines.append(f"{'':22}  failed requests: {dict(step.errors.most_common(4))}; "
                             f"idle connections closed by the server and reopened: "
                             f"{step.reopened:,}")  # fmt: skip
            if step.failures or step.joining:
                stopped = dict(step.failures.most_common(3))
                lines.append(f"{'':22}  players that stopped: {stopped}; still joining at the "
                             f"end: {step.joining}")  # fmt: skip
    lines.append(
        "(players CPU: cores used by the load-generator processes, their count in brackets; "
        "sampler late: p99 of how late a generator process ran its 4 Hz sampler, over "
        f"{LATE * 1000:.0f} ms (*) its own delay, not the server's, adds to the lag; machine "
        "CPU: cores busy on the whole machine, everyone's work; CPU waits: share of the time "
        "a runnable task waited for a core, Linux PSI)"
    )
    return lines


def _glass_lines(figures: list[Glass], minutes: float) -> list[str]:
    lines = [
        f"glass to glass: Chromium + hls.js, {minutes:g} min per player, side by side, first "
        f"{delivery_glass.WARMUP:g} s of playback left out; Date.now() - hls.playingDate",
        f"{'':22}{'samples':>8}{'p50 (s)':>9}{'p95 (s)':>9}{'max (s)':>9}"
        f"{'hls.latency p50':>17}{'waiting':>9}{'buffer stalled':>16}  hls.js config",
    ]
    for glass in figures:
        name = "standard HLS" if glass.latency == "standard" else "LL-HLS"
        top = max(glass.samples) if glass.samples else math.nan
        hls_p50 = (
            sorted(glass.hls_latency)[len(glass.hls_latency) // 2]
            if glass.hls_latency
            else math.nan
        )
        lines.append(
            f"{name:22}{len(glass.samples):>8}{glass.p(0.5):>9.2f}{glass.p(0.95):>9.2f}"
            f"{top:>9.2f}{hls_p50:>17.2f}{glass.waiting:>9}{glass.stalled:>16}  {glass.config}"
        )
        if not glass.played or glass.fatal:
            lines.append(f"{'':22}  played: {glass.played}; fatal errors: {glass.fatal}")
    return lines


def _later_verdicts(steps: dict[str, list[Step]], glass: list[Glass] | str) -> list[str]:
    verdicts = []
    for kind, goal in HELD_TARGETS.items():
        largest = _largest(steps.get(kind, []))
        got = f"{largest:,}" if largest is not None else "none of the counts"
        ok = largest is not None and largest >= goal
        name = "LL-HLS" if kind == "low" else "standard"
        verdicts.append(f"{name} viewers held >= {goal:,} (got {got}): {'met' if ok else 'MISSED'}")
    if isinstance(glass, str):
        return [*verdicts, f"glass to glass: not measured ({glass})"]
    for figures in glass:
        if figures.latency == "low":
            ok = figures.p(0.5) <= LL_P50 and figures.p(0.95) <= LL_P95 and figures.waiting == 0
            verdicts.append(
                f"LL-HLS p50 <= {LL_P50} s, p95 <= {LL_P95} s, no stall (got {figures.p(0.5):.2f} "
                f"/ {figures.p(0.95):.2f} s, {figures.waiting} stalls): {'met' if ok else 'MISSED'}"
            )
        else:
            ok = figures.p(0.5) <= STANDARD_P50
            verdicts.append(
                f"standard p50 <= {STANDARD_P50} s (got {figures.p(0.5):.2f} s): "
                f"{'met' if ok else 'MISSED'}"
            )
    return verdicts


# -- the run ----------------------------------------------------------------------------------


def _servers(
    stack: ExitStack, folder: Path, skipped: dict[str, str], workers: int
) -> tuple[Stage, list[Target]]:
    docroot, nginx_dir = folder / "www", folder / "nginx"
    docroot.mkdir()
    nginx_dir.mkdir()
    source = _make_source(folder, 20)
    print(f"  publishing with {FFMPEG}; waiting for complete segments", flush=True)
    stage = stack.enter_context(stagecast(folder, source, docroot, workers))
    targets = [stage.target]
    if "nginx" not in skipped:
        try:
            targets.append(stack.enter_context(nginx(nginx_dir, docroot)))
        except (RuntimeError, TimeoutError, OSError) as exc:
            skipped["nginx"] = f"did not start ({exc})"
    targets.append(stack.enter_context(bare(docroot)))
    return stage, targets


def _source_line(folder: Path, stage: Stage, busy: float) -> str:
    docroot = folder / "www"
    size, part = (docroot / SEGMENT).stat().st_size, (docroot / PART).stat().st_size
    duration = stage.segment_seconds
    return (
        f"source: 1280x720 30 fps, 2 s GOP, published live over RTMP on a low and a standard "
        f"channel; segment {size / 1000:,.0f} KB ({duration:.2f} s, "
        f"{size * 8 / duration / 1e6:.2f} Mbit/s), part {part / 1000:,.0f} KB, media playlist "
        f"{(docroot / PLAYLIST).stat().st_size:,} B; {os.cpu_count()} cores, "
        f"load average {busy:.2f} before the run"
    )


def run(quick: bool, minutes: float | None = None, workers: int = 1) -> None:
    """Run the delivery benchmark and print it (``quick``: short cells, fewer counts, 1 min
    of glass to glass; ``minutes``: the glass-to-glass length, default 10; ``workers``: run
    ``stagecast serve --workers N`` on PostgreSQL and Redis instead of one process on SQLite)."""
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    held_seconds = 20.0 if quick else 60.0
    counts = {
        "standard": (500, 1000, 1500) if quick else (100, 250, 500, 1000, 1500, 2000),
        "low": (250, 500, 1000) if quick else (100, 250, 500, 1000, 1500),
    }
    minutes = minutes if minutes is not None else (1.0 if quick else 10.0)
    busy = os.getloadavg()[0]
    missing = install_missing()
    generator = "asyncio" if "wrk" in missing else "wrk"
    skipped = {name: reason for name, reason in missing.items() if name != "wrk"}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        stage, targets = _servers(stack, folder, skipped, workers)
        results = _run_cells(targets, seconds, rounds)
        pids = stage.target.pids
        steps = {
            kind: delivery_players.held(kind, stage.masters[kind], counts[kind], held_seconds, pids)
            for kind in counts
        }
        glass: list[Glass] | str
        reason = skipped.get("chromium") or delivery_glass.skipped_reason()
        if reason is None:
            try:
                glass = delivery_glass.watch(stage.base_url, stage.masters, minutes * 60)
            except Exception as exc:  # a browser that fails is reported, the table still prints
                glass = f"the browser run failed: {type(exc).__name__}: {exc}"
        else:
            glass = reason
        source_line = _source_line(folder, stage, busy)
    print(source_line)
    print(_generator_line(generator, seconds, rounds))
    for name, reason in missing.items():
        if name == "wrk":
            print(f"wrk: {reason}; measured with the asyncio client instead")
    for name, reason in skipped.items():
        print(f"{name} {'column' if name == 'nginx' else 'run'} skipped: {reason}")
    print("\n".join(_table(results, [target.name for target in targets])))
    print("\n".join(_held_lines(steps, held_seconds)))
    if isinstance(glass, str):
        print(f"glass to glass: skipped ({glass})")
    else:
        print("\n".join(_glass_lines(glass, minutes)))
    print(
        "targets (median round): "
        + "; ".join(_cell_verdicts(results) + _later_verdicts(steps, glass))
    )
