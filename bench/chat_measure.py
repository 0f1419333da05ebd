"""Run the chat load generator (``bench/chat_load.py``) in its own processes and merge what
they measured into latency percentiles and delivery rates."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from bench.chat_servers import PYTHON, ROOT, RssSampler, readline

LOADGEN_CPU: list[float] = []  # CPU share of the (first) load generator, per run


@dataclass
class Result:
    """Merged figures of one load run."""

    p50: float
    p99: float
    rate: float
    received: int
    expected: int
    duplicates: int
    out_of_order: int
    closed: int
    servers: list[RssSampler] = field(default_factory=list)
    worst_ms: list[int] = field(default_factory=list)  # worst latency per second of the run
    # One join (connect to "hello"), ms: the worst p50/p99/max of the load generators; and
    # the seconds until every receiver had joined.
    join_p50: float = 0.0
    join_p99: float = 0.0
    join_max: float = 0.0
    join_wall: float = 0.0

    @property
    def complete(self) -> float:
        """Return the share of expected deliveries that arrived (1.0 = all)."""
        return self.received / self.expected if self.expected else 0.0


def percentile(histogram: dict[int, int], share: float) -> float:
    """Return the latency (ms) below which ``share`` of the deliveries fell."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    threshold = share * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= threshold:
            return (bucket + 0.5) * 0.1
    return max(histogram) * 0.1


def load(
    mode: str,
    urls: list[str],
    clients: int,
    *,
    rate: float,
    duration: float,
    warmup: float,
    tokens: list[str],
    sender_urls: list[str],
    processes: int = 1,
    watch: list[int] | None = None,
) -> Result:
    """Run the load generator in ``processes`` processes and merge what they measured."""
    configs = []
    for i in range(processes):
        share = clients // processes + (1 if i < clients % processes else 0)
        configs.append(
            {
                "mode": mode,
                "urls": urls,
                "clients": share,
                "tokens": tokens if i == 0 else [],
                "sender_urls": sender_urls,
                "rate": rate,
                "warmup": warmup,
                "duration": duration,
                "drain": 2.0,
            }
        )
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "bench.chat_load", json.dumps(c)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for c in configs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = readline(proc, timeout=120)
            if line.strip() != "ready":
                raise RuntimeError(f"load generator did not start: {line!r}")
        t0 = time.monotonic_ns() + 300_000_000
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"go {t0}\n")
            proc.stdin.flush()
        samplers = [RssSampler(pid) for pid in [procs[0].pid, *(watch or [])]]
        for sampler in samplers:
            sampler.__enter__()
        try:
            outputs = [json.loads(readline(p, timeout=warmup + duration + 60)) for p in procs]
        finally:
            for sampler in samplers:
                sampler.__exit__()
        LOADGEN_CPU.append(samplers[0].cpu_share())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    result = _merge(outputs, duration)
    result.servers = samplers[1:]
    result.worst_ms = outputs[0].get("worst_ms", [])
    return result


def _merge(outputs: list[dict[str, Any]], duration: float) -> Result:
    histogram: dict[int, int] = {}
    for out in outputs:
        for bucket, count in out["histogram"].items():
            histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
    sent = sum(o["sent_in_window"] for o in outputs)
    receivers = sum(o["receivers"] for o in outputs)
    received = sum(o["received"] for o in outputs)
    return Result(
        p50=percentile(histogram, 0.50),
        p99=percentile(histogram, 0.99),
        rate=received / duration,
        received=received,
        expected=sent * receivers,
        duplicates=sum(o["duplicates"] for o in outputs),
        out_of_order=sum(o["out_of_order"] for o in outputs),
        closed=sum(o["closed"] for o in outputs),
        join_p50=max(o["joins"]["p50"] for o in outputs),
        join_p99=max(o["joins"]["p99"] for o in outputs),
        join_max=max(o["joins"]["max"] for o in outputs),
        join_wall=max(o["joins"]["wall"] for o in outputs),
    )


def row(label: str, result: Result) -> str:
    """Format one result line."""
    flags = ""
    if result.duplicates or result.out_of_order:
        flags = f"  dup {result.duplicates} disorder {result.out_of_order}"
    if result.closed:
        flags += f"  closed {result.closed}"
    return (
        f"  {label:<28} p50 {result.p50:7.1f} ms  p99 {result.p99:7.1f} ms  "
        f"{result.rate:9.0f} deliveries/s  delivered {result.complete:6.1%}{flags}"
    )


def join_row(result: Result) -> str:
    """Format the join figures of one result."""
    return (
        f"    joins: p50 {result.join_p50:.0f} ms  p99 {result.join_p99:.0f} ms  "
        f"max {result.join_max:.0f} ms  all joined in {result.join_wall:.2f} s"
    )
