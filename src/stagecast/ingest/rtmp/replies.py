"""The command messages the server sends: ``_result``, ``_error``, ``onStatus``, ``onFCPublish``.

Replies to ``connect`` and ``createStream`` travel on chunk stream 3 and message stream 0;
status events on chunk stream 5 and the publishing message stream, where clients look for them.
"""

from __future__ import annotations

from typing import Final

from stagecast.ingest.rtmp import amf0
from stagecast.ingest.rtmp.chunks import COMMAND_AMF0, Message

COMMAND_CHUNK_STREAM: Final = 3
STATUS_CHUNK_STREAM: Final = 5

PUBLISH_START: Final = "NetStream.Publish.Start"
CONNECT_SUCCESS: Final = "NetConnection.Connect.Success"
CALL_FAILED: Final = "NetConnection.Call.Failed"
PLAY_FAILED: Final = "NetStream.Play.Failed"

# What Flash Media Server 3 announced; some clients parse fmsVer, none need more than this.
_SERVER_PROPERTIES: Final = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}


def command(name: str, transaction: float, *args: object, stream_id: int = 0) -> Message:
    """Build an AMF0 command message: name, transaction id, then ``args``."""
    return Message(COMMAND_AMF0, stream_id, 0, amf0.encode_values(name, transaction, *args))


def connect_result(transaction: float, object_encoding: float, four_cc: list[str]) -> Message:
    """Build the ``_result`` that accepts a ``connect``.

    ``four_cc`` echoes the Enhanced RTMP codecs the client offered (media passes through
    untouched, so the server takes whatever the client can send); empty leaves it out.
    """
    properties: dict[str, object] = dict(_SERVER_PROPERTIES)
    if four_cc:
        properties["fourCcList"] = four_cc
    information = {
        "level": "status",
        "code": CONNECT_SUCCESS,
        "description": "Connection succeeded.",
        "objectEncoding": object_encoding,
    }
    return command("_result", transaction, properties, information)


def call_error(transaction: float, description: str) -> Message:
    """Build the ``_error`` that answers a call the server does not offer."""
    information = {"level": "error", "code": CALL_FAILED, "description": description}
    return command("_error", transaction, None, information)


def status(stream_id: int, level: str, code: str, description: str) -> Message:
    """Build an ``onStatus`` event on message stream ``stream_id``."""
    information = {"level": level, "code": code, "description": description}
    return command("onStatus", 0.0, None, information, stream_id=stream_id)


def fc_publish() -> Message:
    """Build ``onFCPublish``, which FMLE-style encoders wait for after ``FCPublish``."""
    information = {"code": PUBLISH_START, "description": "FCPublish received."}
    return command("onFCPublish", 0.0, None, information)
