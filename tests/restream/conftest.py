"""Fixtures of the restream tests: the studio's running servers (restreaming lives beside them)."""

from tests.studio.conftest import bus_kind, db_server, server

__all__ = ["bus_kind", "db_server", "server"]
