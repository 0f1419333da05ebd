"""Database access: the engine, the retry layer every call goes through, tables, migrations."""

from stagecast.db.database import Database, Limits, create_engine, open_database
from stagecast.db.retry import Kind

__all__ = ["Database", "Kind", "Limits", "create_engine", "open_database"]
