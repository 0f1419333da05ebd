"""Wire models read straight off domain records (dataclasses, named tuples, rows)."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict


class FromRecord(BaseModel):
    """A response model whose every field is the same-named attribute of a domain record."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: object) -> Self:
        """Shape ``record`` for the wire."""
        return cls.model_validate(record)
