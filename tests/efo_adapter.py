"""A test-only adapter for npm ``kinesis-local`` 0.6.2's SubscribeToShard (shared/EMULATORS.md).

AWS starts every SubscribeToShard event stream with an ``initial-response`` event; botocore
insists on it (``ResponseParserError: First event was not of type initial-response``), and
kinesis-local omits it. ``insert_initial_response(client)`` registers a botocore
``before-parse`` hook on the client that looks at the first message of the stream and, when it
is not an ``initial-response``, puts an empty one in front of it. Nothing else is changed: the
emulator's own events, and its error events, reach botocore's parser byte for byte.

This is a gap of the emulator, not of the kit: production code never registers this hook.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Iterator
from typing import Any

from botocore.eventstream import EventStreamBuffer

HOOK = "before-parse.kinesis.SubscribeToShard"
_STRING_HEADER = 7
_PRELUDE_BYTES = 12
_CRC_BYTES = 4


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + struct.pack("!BH", _STRING_HEADER, len(raw_value))
        + raw_value
    )


def event_message(event_type: str, payload: bytes = b"{}") -> bytes:
    """One event-stream message (AWS's binary framing) of ``:message-type`` event."""
    headers = _header(":message-type", "event") + _header(":event-type", event_type)
    total = _PRELUDE_BYTES + len(headers) + len(payload) + _CRC_BYTES
    prelude = struct.pack("!II", total, len(headers))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack("!I", binascii.crc32(body))


INITIAL_RESPONSE = event_message("initial-response")


class _WithInitialResponse:
    """The raw HTTP body, with an ``initial-response`` message first when the server sent
    none. botocore reads it through ``stream()`` and ``close()`` only."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        chunks = self._raw.stream(*args, **kwargs)
        head = b""
        probe = EventStreamBuffer()
        for chunk in chunks:  # read until the first whole message is in
            head += chunk
            probe.add_data(chunk)
            first: Any = next(iter(probe), None)
            if first is not None:
                if first.headers.get(":event-type") != "initial-response":
                    yield INITIAL_RESPONSE
                break
        if head:
            yield head
        yield from chunks

    def close(self) -> None:
        self._raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _insert(response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") == 200:
        response_dict["body"] = _WithInitialResponse(response_dict["body"])


def insert_initial_response(kinesis_client: Any) -> Any:
    """Register the hook on ``kinesis_client`` (and return the client)."""
    kinesis_client.meta.events.register(HOOK, _insert)
    return kinesis_client
