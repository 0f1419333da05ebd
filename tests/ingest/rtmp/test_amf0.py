"""AMF0: round trips of every supported type, and a decoder that fails fast on garbage."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagecast.ingest.rtmp import amf0
from stagecast.ingest.rtmp.amf0 import UNDEFINED, AmfDate, AmfValue, EcmaArray
from stagecast.ingest.rtmp.errors import AmfError

floats = st.floats(allow_nan=False)
scalars: st.SearchStrategy[AmfValue] = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    floats,
    st.text(max_size=40),
    st.builds(AmfDate, floats, st.integers(-(2**15), 2**15 - 1)),
)
values: st.SearchStrategy[AmfValue] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=10), inner, max_size=5),
        st.dictionaries(st.text(max_size=10), inner, max_size=5).map(EcmaArray),
    ),
    max_leaves=25,
)


@given(values)
def test_every_value_round_trips(value: AmfValue) -> None:
    """decode(encode(v)) equals v, and re-encodes to the same bytes (so types survive too)."""
    encoded = amf0.encode(value)
    decoded = amf0.decode(encoded)
    assert decoded == value
    assert amf0.encode(decoded) == encoded
    assert isinstance(decoded, EcmaArray) == isinstance(value, EcmaArray)


@given(st.lists(values, max_size=6))
def test_value_sequences_round_trip(sequence: list[AmfValue]) -> None:
    """A command body (values back to back) decodes to the same sequence."""
    assert amf0.decode_values(amf0.encode_values(*sequence)) == sequence


@given(values)
def test_every_truncation_fails_cleanly(value: AmfValue) -> None:
    """Each strict prefix of an encoding raises AmfError or decodes; nothing else escapes."""
    encoded = amf0.encode(value)
    for end in range(len(encoded)):
        with contextlib.suppress(AmfError):
            amf0.decode(encoded[:end])


@given(st.binary(max_size=512))
def test_garbage_raises_only_amf_errors(data: bytes) -> None:
    """Arbitrary bytes either decode or raise AmfError, never another exception."""
    with contextlib.suppress(AmfError):
        amf0.decode_values(data)


def test_prefixes_of_an_object_all_raise() -> None:
    """An object cut anywhere (without an ECMA count to lean on) is an error."""
    encoded = amf0.encode({"app": "live", "tcUrl": "rtmp://host/live", "n": 1.0})
    for end in range(len(encoded)):
        with pytest.raises(AmfError):
            amf0.decode(encoded[:end])


def test_long_strings_use_the_long_marker() -> None:
    """Strings past 65535 bytes are encoded as long strings and come back intact."""
    text = "é" * 40000  # 80000 bytes of UTF-8
    encoded = amf0.encode(text)
    assert encoded[0] == amf0.LONG_STRING
    assert amf0.decode(encoded) == text


def test_ints_encode_as_numbers() -> None:
    """Python ints are AMF0 numbers (doubles)."""
    assert amf0.decode(amf0.encode(1935)) == 1935.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\x00\x00\x00\x01" * 40 + b"\x05", "nested deeper"),
        (b"\x0a\xff\xff\xff\xff\x05", "strict array of 4294967295 items"),
        (b"\x0a\x00\x00\x4e\x20" + b"\x05" * 20000, "more than 10000 values"),
        (b"\x02\x00\x02\xff\xfe", "not UTF-8"),
        (b"\x07\x00\x01", "unsupported AMF0 marker 0x07"),
        (b"\x11\x01", "unsupported AMF0 marker 0x11"),
        (b"\x03\x00\x01a", "truncated"),
        (b"\x0c\xff\xff\xff\xffabc", "truncated"),
        (b"", "truncated"),
    ],
)
def test_malformed_input_raises_amf_error(data: bytes, message: str) -> None:
    """Depth bombs, lying counts, bad UTF-8, AMF3 and references are typed errors."""
    with pytest.raises(AmfError, match=message):
        amf0.decode_values(data) if data else amf0.decode(data)


def test_huge_garbage_is_rejected_quickly() -> None:
    """8 MiB of nested-array openers fails at the depth cap, without walking the input."""
    started = time.monotonic()
    with pytest.raises(AmfError):
        amf0.decode_values(b"\x0a\x00\x00\x00\x01" * (8 * 1024 * 1024 // 5))
    assert time.monotonic() - started < 0.5


def test_trailing_bytes_after_one_value_are_an_error() -> None:
    """decode() insists on exactly one value."""
    with pytest.raises(AmfError, match="after the value"):
        amf0.decode(amf0.encode_values(1.0, 2.0))


def test_lenient_ecma_arrays_and_typed_objects() -> None:
    """An ECMA array ended by its count, and a typed object, decode like their siblings."""
    ecma = b"\x08\x00\x00\x00\x01" + b"\x00\x01w" + amf0.encode(640.0)
    assert amf0.decode(ecma) == {"w": 640.0}
    typed = b"\x10\x00\x03Foo" + b"\x00\x01a" + amf0.encode(True) + b"\x00\x00\x09"
    assert amf0.decode(typed) == {"a": True}


def test_unencodable_values_are_refused() -> None:
    """Types AMF0 has no marker for raise TypeError; over-deep nesting raises ValueError."""
    with pytest.raises(TypeError):
        amf0.encode(object())
    with pytest.raises(TypeError):
        amf0.encode({1: "x"})
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        amf0.encode(deep)
