"""Chat benchmarks: fan-out against a bare ``websockets`` broadcast server, three processes with
Redis, and the history page at 3,000,000 messages (``python -m bench chat [--quick]``).

Fan-out: the same load generator (``bench/chat_load.py``, in its own process) drives the
baseline (``bench/chat_baseline.py``) and Stagecast's full chat path (a ``stagecast serve``
subprocess on SQLite: bearer auth, policy, insert, publish, deliver). Reported for each: p50/p99
delivery latency and deliveries/s at 2,000 clients x 20 msg/s, the largest client count with
p99 <= 250 ms, and the server's RSS and CPU sampled over the measured window (ten minutes at
the reference load in full mode). Then three ``stagecast serve`` processes on PostgreSQL +
Redis with the clients spread across them, the history page at several depths against
COUNT(*) OVER() + OFFSET on the same data, and the chat replay page of a VOD with 1,000,000
messages at the start, middle and end against the same query without its index
(``bench/chat_replay.py``). Everything stays on 127.0.0.1 and is bounded in
count and time; the PostgreSQL/Redis parts are skipped when those are not reachable.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.chat_history import history_suite
from bench.chat_measure import LOADGEN_CPU, Result, join_row, load, row
from bench.chat_replay import replay_suite, rows_for
from bench.chat_servers import baseline_server, stagecast_servers
from bench.chat_setup import BenchChannel, prepare

P99_LIMIT_MS = 250.0
PG_ADMIN = os.environ.get(
    "STAGECAST_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("STAGECAST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Plan:
    """Sizes and durations of one run (quick or full)."""

    clients: int
    rate: float
    duration: float
    warmup: float
    sweep: list[int]
    sweep_duration: float
    soak: float
    senders: int = 10
    history_rows: int = 3_000_000
    depths: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, quick: bool) -> Plan:
        """Return the quick (CI) or full plan."""
        if quick:
            return cls(
                clients=1000,
                rate=20,
                duration=8,
                warmup=2,
                sweep=[500, 1500],
                sweep_duration=5,
                soak=0,
                history_rows=300_000,
                depths=[0, 1_000, 100_000, 290_000],
            )
        return cls(
            clients=2000,
            rate=20,
            duration=30,
            warmup=3,
            sweep=[1000, 2000, 3000, 4000, 5000],
            sweep_duration=15,
            soak=600,
            depths=[0, 1_000, 100_000, 1_000_000, 2_990_000],
        )


def _run(
    mode: str,
    urls: list[str],
    clients: int,
    plan: Plan,
    channel: BenchChannel,
    duration: float,
    pids: list[int],
) -> Result:
    tokens = channel.tokens if mode == "stagecast" else [""] * plan.senders
    return load(
        mode, urls, clients, rate=plan.rate, duration=duration, warmup=plan.warmup,
        tokens=tokens, sender_urls=urls, watch=pids,
    )  # fmt: skip


def _report(label: str, result: Result) -> None:
    print(row(label, result), flush=True)
    print(join_row(result), flush=True)
    for number, server in enumerate(result.servers, 1):
        name = "server" if len(result.servers) == 1 else f"server {number}"
        print(f"    {name}: {server.summary()}", flush=True)
    print(f"    load generator CPU {LOADGEN_CPU[-1]:.0%}", flush=True)


def fanout(plan: Plan, channel: BenchChannel) -> None:
    """Baseline vs Stagecast at the reference load, side by side."""
    print(f"-- fan-out, one process: {plan.clients} clients x {plan.rate:g} msg/s", flush=True)
    with baseline_server() as (url, pid):
        base = _run("baseline", [url], plan.clients, plan, channel, plan.duration, [pid])
    _report("baseline (bare websockets)", base)
    with stagecast_servers(channel) as [(url, pid)]:
        full = _run("stagecast", [url], plan.clients, plan, channel, plan.duration, [pid])
    _report("stagecast (full chat path)", full)
    print(
        f"  stagecast / baseline: p50 {full.p50 / base.p50:.2f}x, p99 {full.p99 / base.p99:.2f}x "
        f"(target p99 <= 1.5x); deliveries/s {full.rate / base.rate:.2f}x",
        flush=True,
    )


def sweep(plan: Plan, channel: BenchChannel) -> None:
    """Find the largest client count each server sustains with p99 <= 250 ms."""
    print(f"-- capacity at {plan.rate:g} msg/s (p99 <= {P99_LIMIT_MS:.0f} ms)", flush=True)
    best: dict[str, int] = {}
    for mode in ("baseline", "stagecast"):
        for clients in plan.sweep:
            if mode == "baseline":
                with baseline_server() as (url, pid):
                    result = _run(mode, [url], clients, plan, channel, plan.sweep_duration, [pid])
            else:
                with stagecast_servers(channel) as [(url, pid)]:
                    result = _run(mode, [url], clients, plan, channel, plan.sweep_duration, [pid])
            ok = result.p99 <= P99_LIMIT_MS and result.complete >= 0.999
            print(row(f"{mode} {clients} clients", result) + ("" if ok else "  over"), flush=True)
            print(join_row(result), flush=True)
            if not ok:
                break
            best[mode] = clients
    print(
        f"  sustained: baseline {best.get('baseline', 0)} clients, stagecast "
        f"{best.get('stagecast', 0)} clients (steps {', '.join(map(str, plan.sweep))})",
        flush=True,
    )


def soak(plan: Plan, channel: BenchChannel) -> None:
    """Run Stagecast at the reference load for ``plan.soak`` seconds, sampling its memory."""
    minutes = plan.soak / 60
    print(f"-- memory over {minutes:.0f} minutes at {plan.clients} x {plan.rate:g}", flush=True)
    with stagecast_servers(channel) as [(url, pid)]:
        result = _run("stagecast", [url], plan.clients, plan, channel, plan.soak, [pid])
    _report("stagecast soak", result)


def multiprocess(plan: Plan) -> None:
    """Three ``stagecast serve`` processes on PostgreSQL + Redis, clients spread across them."""
    print("-- three processes + Redis (PostgreSQL)", flush=True)
    try:
        channel = asyncio.run(prepare(Path(tempfile.mkdtemp()), PG_ADMIN, senders=plan.senders))
    except OSError as exc:
        print(f"  skipped: PostgreSQL not reachable ({exc})", flush=True)
        return
    try:
        with stagecast_servers(channel, 3, REDIS) as servers:
            urls, pids = [u for u, _ in servers], [p for _, p in servers]
            result = _run("stagecast", urls, plan.clients, plan, channel, plan.duration, pids)
        _report(f"3 processes, {plan.clients} clients", result)
        exact = result.duplicates == 0 and result.out_of_order == 0 and result.complete >= 0.999
        print(f"  every message once, in order, on every process: {'yes' if exact else 'NO'}")
    finally:
        asyncio.run(channel.drop())


def run(quick: bool) -> None:
    """Run every chat benchmark and print figures next to their baselines."""
    plan = Plan.of(quick)
    with tempfile.TemporaryDirectory(prefix="stagecast-bench-") as tmp:
        channel = asyncio.run(prepare(Path(tmp), None, senders=plan.senders))
        fanout(plan, channel)
        sweep(plan, channel)
        if plan.soak:
            soak(plan, channel)
    multiprocess(plan)
    asyncio.run(history_suite(PG_ADMIN, plan.history_rows, plan.depths))
    asyncio.run(replay_suite(PG_ADMIN, rows_for(quick)))
