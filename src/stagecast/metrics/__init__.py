"""The studio's live metrics: ingest windows, health, viewers, feeds, Prometheus, webhooks."""
