"""AMF0, the value encoding of RTMP commands and metadata: encode and decode.

Decoding works on one complete message, already capped in size by the chunk layer. Every step
consumes at least one byte, nesting depth and the number of values are capped, and no count read
from the wire sizes an allocation, so garbage fails fast with ``AmfError`` instead of looping or
eating memory.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from stagecast.ingest.rtmp.errors import AmfError

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10

MAX_DEPTH: Final = 32
"""Deepest nesting of objects and arrays accepted (real commands nest two levels)."""

MAX_VALUES: Final = 10_000
"""Most values one decode call produces (onMetaData has a few dozen)."""

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class Undefined:
    """The AMF0 ``undefined`` value (distinct from ``null``, which is ``None``)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()


@dataclass(frozen=True)
class AmfDate:
    """An AMF0 date: milliseconds since the Unix epoch (UTC) and a timezone the spec ignores."""

    milliseconds: float
    timezone: int = 0


class EcmaArray(dict[str, "AmfValue"]):
    """An associative array (marker 0x08), which onMetaData uses; a plain dict is an object."""


AmfValue: TypeAlias = (
    "float | bool | str | Undefined | AmfDate | dict[str, AmfValue] | list[AmfValue] | None"
)


def decode_values(data: bytes) -> list[AmfValue]:
    """Decode every value in ``data`` (a command or data message body), in order.

    Raises ``AmfError`` on truncated or malformed input, an unsupported type (references,
    AMF3), nesting deeper than ``MAX_DEPTH`` or more than ``MAX_VALUES`` values.
    """
    decoder = _Decoder(data)
    values: list[AmfValue] = []
    while decoder.pos < len(data):
        values.append(decoder.value(0))
    return values


def decode(data: bytes) -> AmfValue:
    """Decode exactly one value that fills ``data``; raises ``AmfError`` otherwise."""
    decoder = _Decoder(data)
    value = decoder.value(0)
    if decoder.pos != len(data):
        raise AmfError(f"{len(data) - decoder.pos} bytes after the value")
    return value


def encode_values(*values: object) -> bytes:
    """Encode ``values`` one after another (a command: name, transaction id, arguments)."""
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)


def encode(value: object) -> bytes:
    """Encode one value.

    ``None`` is null, ``UNDEFINED`` undefined, ``int`` and ``float`` a number, ``str`` a string
    (a long string past 65535 bytes), ``EcmaArray`` an ECMA array, any other mapping an object,
    a list or tuple a strict array, ``AmfDate`` a date. Raises ``TypeError`` for anything else
    and ``ValueError`` for values AMF0 cannot hold (keys over 65535 bytes, nesting too deep).
    """
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def encode_ecma_array(mapping: Mapping[str, object]) -> bytes:
    """Encode ``mapping`` as an ECMA array (how onMetaData is written); errors as ``encode``."""
    out = bytearray((ECMA_ARRAY,))
    out += _U32.pack(len(mapping))
    _encode_properties(out, mapping, 0)
    return bytes(out)


class _Decoder:
    __slots__ = ("budget", "data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.budget = MAX_VALUES

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise AmfError(f"truncated: needed {size} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise AmfError(f"truncated: needed 1 byte at offset {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def text(self, size: int) -> str:
        try:
            return self.take(size).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AmfError(f"string is not UTF-8 at offset {self.pos - size}") from exc

    def short_text(self) -> str:
        return self.text(_U16.unpack(self.take(2))[0])

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def value(self, depth: int) -> AmfValue:
        if depth > MAX_DEPTH:
            raise AmfError(f"nested deeper than {MAX_DEPTH} levels")
        self.budget -= 1
        if self.budget < 0:
            raise AmfError(f"more than {MAX_VALUES} values")
        marker = self.byte()
        if marker == NUMBER:
            number: float = _DOUBLE.unpack(self.take(8))[0]
            return number
        if marker == BOOLEAN:
            return self.byte() != 0
        if marker == STRING:
            return self.short_text()
        if marker in (LONG_STRING, XML_DOCUMENT):
            return self.text(self.u32())
        if marker == NULL:
            return None
        if marker in (UNDEFINED_MARKER, UNSUPPORTED):
            return UNDEFINED
        if marker == OBJECT:
            return self.properties({}, depth, 0)
        if marker == TYPED_OBJECT:
            self.short_text()  # the class name means nothing outside Flash
            return self.properties({}, depth, 0)
        if marker == ECMA_ARRAY:
            declared = self.u32()
            return self.properties(EcmaArray(), depth, declared)
        if marker == STRICT_ARRAY:
            return self.strict_array(depth)
        if marker == DATE:
            milliseconds, timezone = _DATE.unpack(self.take(10))
            return AmfDate(milliseconds, timezone)
        raise AmfError(f"unsupported AMF0 marker 0x{marker:02x} at offset {self.pos - 1}")

    def properties(
        self, target: dict[str, AmfValue], depth: int, declared: int
    ) -> dict[str, AmfValue]:
        while True:
            if self.pos == len(self.data) and declared and len(target) >= declared:
                # Some encoders end an ECMA array by its count alone, without the end marker.
                return target
            key = self.short_text()
            if not key and self.pos < len(self.data) and self.data[self.pos] == OBJECT_END:
                self.pos += 1
                return target
            target[key] = self.value(depth + 1)

    def strict_array(self, depth: int) -> list[AmfValue]:
        count = self.u32()
        items: list[AmfValue] = []
        # The count is only trusted as far as the bytes go: each item takes at least one byte.
        if count > len(self.data) - self.pos:
            raise AmfError(f"strict array of {count} items in {len(self.data) - self.pos} bytes")
        for _ in range(count):
            items.append(self.value(depth + 1))
        return items


def _encode_into(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append(NULL)
    elif isinstance(value, Undefined):
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        try:
            out.append(NUMBER)
            out += _DOUBLE.pack(float(value))
        except OverflowError as exc:
            raise ValueError(f"{value} does not fit a double") from exc
    elif isinstance(value, str):
        _encode_string(out, value)
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.milliseconds, value.timezone)
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, Mapping):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_string(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) <= 0xFFFF:
        out.append(STRING)
        out += _U16.pack(len(raw))
    elif len(raw) <= 0xFFFFFFFF:
        out.append(LONG_STRING)
        out += _U32.pack(len(raw))
    else:
        raise ValueError("string longer than 4 GiB")
    out += raw


def _encode_properties(out: bytearray, mapping: Mapping[str, object], depth: int) -> None:
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 property names are strings, not {type(key).__name__}")
        raw = key.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError("property name longer than 65535 bytes")
        out += _U16.pack(len(raw))
        out += raw
        _encode_into(out, item, depth + 1)
    out += b"\x00\x00\x09"
