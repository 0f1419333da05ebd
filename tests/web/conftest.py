"""Fixtures of the web tests: /metrics is read off the studio's running server."""

from tests.studio.conftest import db_server

__all__ = ["db_server"]
