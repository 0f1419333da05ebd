"""Several nodes: what a viewer on a node without the encoder gets, against the owner's.

Two ``stagecast serve`` nodes on this machine, each with its own data directory, share only
PostgreSQL, Redis and a bucket on moto's S3 server (an emulator of the S3 API)
(``bench.nodes_cluster``). A real ffmpeg publishes the delivery bench's 720p source (about
3 Mbit/s, 2 s GOP) over RTMP to node 1 on a low-latency channel. In one run
(``bench.nodes_measure`` for 1 to 3):

1. Listing delay: for each of N new segments (30, ``--quick`` 8), a blocking reload for it is
   held on both nodes at once; how long after the owner's answer node 2 answered, and how long
   until node 2 had also served the segment's bytes (p50/p99).
2. Storage writes: how long after the owner listed a segment its object existed in the bucket
   (HEAD every 10 ms, p50/p99), and the PUTs per segment (the owner's
   ``stagecast_storage_uploads_total`` over the same segments).
3. Spool drain: the S3 server stopped (SIGSTOP) for 20 s (``--quick`` 8 s) mid-stream, then
   resumed: what waited in the owner's spool (peak files, bytes, age), how long after the resume
   the spool was empty, the drain rate, and whether every segment reached the bucket.
4. Delivery from the non-owner vs the owner: ``bench.delivery_load.measure`` on each node in
   turn for a live-window segment at 50 connections, the live media playlist at 200, the newest
   part at 200 and blocking reloads at 200; req/s of each and node 2 / node 1 (median of three
   interleaved rounds of 8 s; one round of 3 s with ``--quick``).

Then the targets: node 2 lists a segment <= 0.5 s after its owner (p99); node 2 serves
>= 0.8x the owner's req/s in every cell.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.delivery import _make_source, _median, _ms
from bench.delivery_load import Figures, measure
from bench.delivery_servers import Target, _apt, _mirror_reachable, _newest, _newest_part, tool
from bench.ingest import _percentile
from bench.nodes_cluster import Cluster, Node, cluster, reachable
from bench.nodes_measure import Drain, Listing, listing, outage, session_folder

CELLS = (("segment", 50), ("playlist", 200), ("part", 200), ("blocking", 200))
LABELS = {
    "segment": "live-window segment",
    "playlist": "live media playlist",
    "part": "newest listed part",
    "blocking": "blocking reload (next part)",
}
LISTING_P99, DELIVERY_RATIO = 0.5, 0.8
Results = dict[tuple[str, int], dict[str, list[Figures]]]


def _wrk() -> str:
    """Install wrk when missing and allowed; say which load generator the table uses."""
    if tool("wrk") is None and os.geteuid() == 0 and _mirror_reachable():
        print("  installing wrk with apt-get", flush=True)
        if not _apt("install", "-y", "-q", "wrk"):
            _apt("update", "-q")
            _apt("install", "-y", "-q", "wrk")
    if tool("wrk") is None:
        return "this bench's asyncio client (wrk could not be installed), in this process"
    return "wrk, one thread"


def _target(node: Node, client: httpx.Client) -> Target:
    url = node.playlist
    urls: dict[str, Callable[[], str]] = {
        "segment": lambda: _newest(client, url),
        "playlist": lambda: url,
        "part": lambda: _newest_part(client, url),
        "blocking": lambda: url,
    }
    return Target(node.name, urls, [node.process.pid])


def _delivery(stage: Cluster, seconds: float, rounds: int) -> Results:
    """Measure every cell on both nodes, interleaved, ``rounds`` times (see the module)."""
    results: Results = {cell: {"node1": [], "node2": []} for cell in CELLS}
    with httpx.Client(timeout=10.0) as client:
        targets = [_target(stage.owner, client), _target(stage.other, client)]
        for round_number in range(rounds):
            for kind, connections in CELLS:
                for target in targets:
                    if round_number == 0:
                        measure(target, kind, connections, 1.0)  # warm-up
                    figures = measure(target, kind, connections, seconds)
                    results[kind, connections][target.name].append(figures)
                    print(f"  round {round_number + 1}, {kind} x {connections}, "
                          f"{target.name}: {figures.requests_per_s:,.0f} req/s",
                          flush=True)  # fmt: skip
    return results


def _ratio(by_name: dict[str, list[Figures]]) -> tuple[float, list[float]]:
    """Return the median round's node2/node1 req/s ratio and every round's, smallest first."""
    pairs = zip(by_name["node2"], by_name["node1"], strict=True)
    ratios = sorted(other.requests_per_s / owner.requests_per_s for other, owner in pairs)
    return ratios[(len(ratios) - 1) // 2], ratios


def _p(values: list[float]) -> str:
    return (
        f"p50 {_ms(_percentile(values, 0.5))} ms, p99 {_ms(_percentile(values, 0.99))} ms, "
        f"max {_ms(max(values))} ms"
    )


def _listing_lines(found: Listing) -> list[str]:
    n = found.segments
    size = sum(found.segment_bytes) / max(1, len(found.segment_bytes))
    return [
        f"1. listing delay, {n} segments of {size / 1000:,.0f} KB (blocking reloads "
        "_HLS_msn=<next> held on both nodes at once; times after the owner's answer):",
        f"   listed on node 2:                         {_p(found.listed)}",
        f"   listed and its bytes served by node 2:    {_p(found.fetched)}",
        f"   (the same segment's GET on node 1 alone, just after: {_p(found.owner_fetch)})",
        f"   bytes identical to the owner's: {found.same_bytes} of {n}",
        "2. storage writes (the bucket polled with signed HEADs every 10 ms from the owner's "
        "answer on):",
        f"   object in the bucket after the owner listed it: {_p(found.stored)}",
        f"   PUTs per segment: {found.uploads:.0f} uploads / {n} segments = "
        f"{found.uploads / max(1, n):.2f} (stagecast_storage_uploads_total on node 1; "
        f"upload failures meanwhile: {found.upload_failures:.0f})",
        f"   new objects in the bucket meanwhile: {_kinds(found.new_objects)}; the other "
        f"{max(0, found.uploads - sum(found.new_objects.values())):.0f} uploads replaced "
        "objects already there (playlists)",
    ]


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} .{kind}" for kind, n in sorted(counts.items())) or "none"


def _drain_lines(drain: Drain) -> list[str]:
    lines = [
        f"3. spool drain: the S3 server stopped (SIGSTOP) for {drain.paused:g} s mid-stream "
        "(storage timeout: the default 10 s), then resumed; node 1's /metrics every 50 ms:",
        f"   waited: peak {drain.peak_files:.0f} files, {drain.peak_bytes / 1e6:,.1f} MB, "
        f"oldest {drain.peak_oldest:.1f} s; at the resume {drain.files_at_resume:.0f} files, "
        f"{drain.bytes_at_resume / 1e6:,.1f} MB; failed upload attempts (retried): "
        f"{drain.failures:.0f}",
        f"   node 2 listed {drain.listed_meanwhile} new segments while the bucket was away",
    ]
    if drain.drained is None:
        lines.append("   the spool did NOT drain within 300 s of the resume")
    else:
        first = f"{drain.first_upload:.2f} s" if drain.first_upload is not None else "-"
        took = max(drain.drained, 1e-3)
        lines.append(
            f"   first upload {first} after the resume, spool empty after {drain.drained:.2f} s"
            f": {drain.uploads_in_drain:.0f} uploads, {drain.uploads_in_drain / took:,.1f} "
            f"files/s, {drain.bytes_at_resume / 1e6 / took:,.1f} MB/s (what waited at the "
            "resume over the time to empty)"
        )
    lost = f"missing {drain.missing}" if drain.missing else "none missing"
    lines.append(f"   segments in the bucket afterwards: {drain.in_bucket}, {lost}")
    return lines


def _row(label: str, cells: list[str]) -> str:
    return f"{label:34}" + "".join(f"{cell:>22}" for cell in cells)


def _delivery_lines(results: Results, seconds: float, rounds: int, generator: str) -> list[str]:
    round_text = f"median of {rounds} interleaved rounds" if rounds > 1 else "one round"
    lines = [
        f"4. delivery, node 1 (owner) vs node 2: load {generator} (blocking reloads: the "
        f"asyncio client), {seconds:g} s per cell after a 1 s warm-up, {round_text}",
        _row("", ["node1 (owner)", "node2", "node2 / node1"]),
    ]
    for (kind, connections), by_name in results.items():
        got = {name: _median(runs) for name, runs in by_name.items()}
        ratio, ratios = _ratio(by_name)
        spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
        lines.append(f"{LABELS[kind]}, {connections} connections")
        shown: list[tuple[str, Callable[[Figures], str], str]] = [
            ("  req/s", lambda f: f"{f.requests_per_s:,.0f}", f"{ratio:.2f}x{spread}"),
            ("  MB/s", lambda f: f"{f.mb_per_s:,.1f}", ""),
            ("  latency p50 / p99 (ms)", lambda f: f"{_ms(f.p50)} / {_ms(f.p99)}", ""),
            ("  server CPU (cores)", lambda f: f"{f.server_cpu:.2f}", ""),
            ("  failed requests", lambda f: f"{f.errors:,}", ""),
        ]
        for label, text, last in shown:
            lines.append(_row(label, [text(got["node1"]), text(got["node2"]), last]))
    return lines


def _verdicts(found: Listing, results: Results) -> list[str]:
    p99 = _percentile(found.listed, 0.99)
    verdicts = [
        f"node 2 lists a segment <= {LISTING_P99} s after its owner, p99 (got {p99:.3f} s): "
        + ("met" if p99 <= LISTING_P99 else "MISSED")
    ]
    for (kind, connections), by_name in results.items():
        ratio, _ = _ratio(by_name)
        verdicts.append(
            f"{kind} x {connections} node2 >= {DELIVERY_RATIO}x node1 (got {ratio:.2f}x): "
            + ("met" if ratio >= DELIVERY_RATIO else "MISSED")
        )
    return verdicts


def run(quick: bool) -> None:
    """Run the nodes benchmark and print it (``quick``: 8 segments, an 8 s outage, one round
    of 3 s per delivery cell)."""
    count, pause = (8, 8.0) if quick else (30, 20.0)
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    why = reachable()
    if why is not None:
        print(f"skipped: {why}")
        return
    busy = os.getloadavg()[0]
    generator = _wrk()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = _make_source(folder, 20)
        with cluster(folder, source) as stage:
            bucket_folder = session_folder(stage)
            found = listing(stage, count, bucket_folder)
            p99 = _percentile(found.listed, 0.99)
            print(f"  listing: {found.segments} segments, p99 {p99:.3f} s", flush=True)
            drain = outage(stage, pause, bucket_folder)
            print(f"  outage: spool empty {drain.drained} s after the resume", flush=True)
            results = _delivery(stage, seconds, rounds)
    print(
        "source: 1280x720 30 fps, about 3 Mbit/s, 2 s GOP, published over RTMP to node 1 on a "
        f"low-latency channel; 2 nodes + moto S3 + PostgreSQL + Redis on {os.cpu_count()} "
        f"cores, load average {busy:.2f} before the run"
    )
    print("\n".join(_listing_lines(found)))
    print("\n".join(_drain_lines(drain)))
    print("\n".join(_delivery_lines(results, seconds, rounds, generator)))
    print("targets: " + "; ".join(_verdicts(found, results)))
