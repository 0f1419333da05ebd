"""The public listings read the indexes made for them: no scan of channels, sessions or VODs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import create_engine

import stagecast.chat.models
import stagecast.live.models
import stagecast.vod.models  # noqa: F401  (their tables join the metadata)
from stagecast.db.schema import metadata
from stagecast.vod.library import _everywhere_statement
from stagecast.web.directory import _off_air_query, _on_air_query


def _plan(statement: Any, **values: Any) -> list[str]:
    """Return SQLite's query plan of ``statement`` (bound parameters from ``values``)."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    compiled = statement.compile(engine, compile_kwargs={"render_postcompile": True})
    params = [values.get(k, compiled.binds[k].value) for k in compiled.positiontup or ()]
    params = [p.isoformat() if isinstance(p, datetime) else p for p in params]
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        rows = raw.execute("EXPLAIN QUERY PLAN " + str(compiled), params).fetchall()
    engine.dispose()
    return [str(r[3]) for r in rows]


def test_directory_pages_read_their_indexes() -> None:
    """On air: only the open sessions (their partial index); off air: ix_channel_public."""
    on_air = _plan(_on_air_query(None, 25))
    assert on_air[0].startswith("SEARCH live_session USING INDEX ix_live_session_state")
    off_air = _plan(_off_air_query(0, 25))
    assert off_air[0] == "SEARCH channel USING INDEX ix_channel_public (id>?)"
    assert not any(line.startswith("SCAN") for line in on_air + off_air)


def test_public_vods_read_the_status_index_newest_first() -> None:
    """Every channel's public VODs: one range of ix_vod_status_created, no sort."""
    plan = _plan(_everywhere_statement(True), limit=21, after_at=datetime(2020, 1, 1), after_id=1)
    assert plan[0].startswith("SEARCH vod USING INDEX ix_vod_status_created")
    assert not any(line.startswith(("SCAN", "USE TEMP B-TREE")) for line in plan)
