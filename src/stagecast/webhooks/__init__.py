"""Outbound webhooks: per-channel URLs told of stream and VOD events, a durable delivery queue."""
