"""The broadcaster's studio: ingest telemetry, health, viewer presence, history and event feeds."""
