"""ISO BMFF (ISO/IEC 14496-12) boxes, read without trusting a single size.

Every box must fit inside its parent and the buffer, and every read is checked against the
box's end; malformed input raises ``MediaError`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


class MediaError(ValueError):
    """The bytes are not a usable fMP4 init or media segment; the message says why."""


@dataclass(frozen=True, slots=True)
class Box:
    """A box's payload, ``data[start:end]``; every read is checked against ``end``."""

    kind: bytes
    data: bytes
    start: int
    end: int

    def _at(self, offset: int, size: int) -> int:
        pos = self.start + offset
        if offset < 0 or pos + size > self.end:
            raise MediaError(f"{self.kind!r} box is too short")
        return pos

    def raw(self, offset: int, size: int) -> bytes:
        pos = self._at(offset, size)
        return self.data[pos : pos + size]

    def u8(self, offset: int) -> int:
        return self.data[self._at(offset, 1)]

    def u16(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 2))

    def u32(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 4))

    def u64(self, offset: int) -> int:
        return int.from_bytes(self.raw(offset, 8))

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def version(self) -> int:
        return self.u8(0)

    @property
    def flags(self) -> int:
        return self.u32(0) & 0xFFFFFF

    def children(self, skip: int = 0) -> Iterator[Box]:
        """Iterate the boxes that follow ``skip`` payload bytes (sample entries have a prefix)."""
        self._at(skip, 0)
        return iter_boxes(self.data, self.start + skip, self.end)

    def child(self, kind: bytes, skip: int = 0) -> Box | None:
        return next((box for box in self.children(skip) if box.kind == kind), None)

    def need(self, kind: bytes) -> Box:
        box = self.child(kind)
        if box is None:
            raise MediaError(f"{self.kind!r} box has no {kind!r} box")
        return box


def iter_boxes(data: bytes, pos: int, end: int) -> Iterator[Box]:
    """Iterate the boxes in ``data[pos:end]``; refuse any box that does not fit."""
    while pos < end:
        if end - pos < 8:
            raise MediaError("truncated box header")
        size = int.from_bytes(data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if end - pos < 16:
                raise MediaError(f"truncated 64-bit size of {kind!r} box")
            size = int.from_bytes(data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos  # "extends to the end of the file" (14496-12 4.2)
        if kind == b"uuid":
            header += 16
        if size < header:
            raise MediaError(f"{kind!r} box size {size} is smaller than its header")
        if size > end - pos:
            raise MediaError(f"{kind!r} box size {size} runs past the end of its container")
        yield Box(kind, data, pos + header, pos + size)
        pos += size


def first_box(data: bytes) -> Box | None:
    try:
        return next(iter_boxes(data, 0, len(data)), None)
    except MediaError:
        return None
