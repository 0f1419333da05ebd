"""``GET /metrics``: valid exposition text with the database, HTTP, ingest and chat counters."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer
from tests.studio.conftest import owned_channel, serve, studio_settings


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Return every sample by metric name, parsed by prometheus_client's own parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


async def test_metrics_parse_and_carry_the_process_counters(db_server: RunningServer) -> None:
    """The text parses; db counters by kind, HTTP by route template, ingest and chat are there."""
    _, channel = await owned_channel(db_server.core.db)
    async with httpx.AsyncClient(base_url=db_server.url) as http:
        assert (await http.get(f"/api/v1/channels/{channel.slug}/live")).status_code == 200
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = parse(response.text)
    for name in (
        "stagecast_db_attempts_total",
        "stagecast_db_retries_total",
        "stagecast_db_timeouts_total",
        "stagecast_db_deadline_stops_total",
        "stagecast_db_slow_queries_total",
    ):
        kinds = {labels["kind"] for labels, _ in metrics[name]}
        assert kinds == {"read", "idempotent_write", "write"}, name
    reads = {labels["kind"]: value for labels, value in metrics["stagecast_db_attempts_total"]}
    assert reads["read"] > 0
    requests = metrics["stagecast_http_requests_total"]
    assert any(
        labels == {"method": "GET", "route": "/api/v1/channels/{slug}/live", "status": "200"}
        for labels, _ in requests
    )
    for name in (
        "stagecast_ingest_segments_total",
        "stagecast_ingest_segment_work_seconds_bucket",
        "stagecast_live_publishers",
        "stagecast_live_viewers",
        "stagecast_feeds_studio_open",
        "stagecast_webhooks_attempts_total",
        "stagecast_chat_connected",
        "stagecast_chat_posted_total",
        "stagecast_vod_jobs_built_total",
        "stagecast_vod_jobs_failed_total",
        "stagecast_vod_jobs_running",
    ):
        assert name in metrics, name


async def test_a_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    """With STAGECAST_METRICS_TOKEN, scrapes without the bearer token get 401."""
    settings = studio_settings(tmp_path / "data", metrics_token="scrape-secret")
    async with serve(settings) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200
        assert "stagecast_db_attempts_total" in ok.text
