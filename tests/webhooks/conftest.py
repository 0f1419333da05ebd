"""Fixtures of the webhook tests: the studio's running servers (webhooks live beside them)."""

from tests.studio.conftest import bus_kind, db_server, server

__all__ = ["bus_kind", "db_server", "server"]
