# -*- test-case-name: tests.registry.test_v3codec -*-
"""
The etcd v3 JSON gateway's encoding, as pure functions (no I/O).

The gateway speaks protobuf rendered as JSON: keys and values are base64, int64s are
strings, fields at their default value (0, false, "", PUT) are left out. This module
turns our keys and values into request bodies and the gateway's answers (range
results, watch events) into the registry's L{Entry} and L{Change} values.

A clean leave in v3 is a delete in a transaction that also writes a I{leaving
marker} (C{<key>/.leaving}, attached to the record's lease, gone when the lease is
revoked) in the same revision. A watcher sees both events in one response, which is
how it tells a clean leave ("deleted") from a lease running out ("expired"): in v3
both are plain DELETE events. Markers never show up in listings or changes.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from twistednode.registry.backend import Change, ChangeKind, Entry

#: Suffix of the marker key written with a clean delete (see the module docstring).
LEAVING = "/.leaving"

#: What a value that is not UTF-8 reads as: text that is not a valid record.
NOT_UTF8 = "\ufffd(value is not UTF-8)"


def encode(text: str | bytes) -> str:
    """A key or value as the gateway wants it: base64 of its UTF-8 bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def decode(value: object) -> bytes:
    """Bytes from a base64 field (ValueError if it is not base64)."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ValueError(f"expected base64 text, not {value!r:.80}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64: {value!r:.80}") from None


def text(value: object) -> str:
    """A base64 value as text; a value that is not UTF-8 becomes L{NOT_UTF8}."""
    try:
        return decode(value).decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8


def integer(data: Mapping[str, Any], name: str) -> int:
    """An int64 field (a JSON string, or a number); absent means 0 (ValueError)."""
    value = data.get(name, 0)
    if isinstance(value, bool):
        raise ValueError(f"{name!r} is not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 10)
        except ValueError:
            pass
    raise ValueError(f"{name!r} is not an integer: {value!r:.80}")


def prefix_end(prefix: bytes) -> bytes:
    """The C{range_end} that makes a range cover every key starting with C{prefix}."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def prefix_range(directory: str) -> dict[str, str]:
    """C{key}/C{range_end} for every key below C{directory}."""
    prefix = (directory.rstrip("/") + "/").encode("utf-8")
    return {"key": encode(prefix), "range_end": encode(prefix_end(prefix))}


def header_revision(answer: Mapping[str, Any]) -> int:
    """The store revision in an answer's header (ValueError if there is none)."""
    header = answer.get("header")
    if not isinstance(header, dict):
        raise ValueError("answer has no header")
    revision = integer(header, "revision")
    if revision <= 0:
        raise ValueError(f"answer header has no revision: {header!r:.200}")
    return revision


@frozen
class KeyValue:
    """One C{mvccpb.KeyValue} as the gateway renders it."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def parse(cls, data: object) -> KeyValue:
        """Parse a C{kv} object (ValueError for anything malformed)."""
        if not isinstance(data, dict):
            raise ValueError(f"kv is not an object: {data!r:.80}")
        try:
            key = decode(data.get("key")).decode("utf-8")
        except UnicodeDecodeError:
            key = ""  # not one of ours: never below a members directory
        return cls(
            key=key,
            value=text(data.get("value")),
            create_revision=integer(data, "create_revision"),
            mod_revision=integer(data, "mod_revision"),
            lease=integer(data, "lease"),
        )


def kvs(answer: Mapping[str, Any]) -> list[KeyValue]:
    """The C{kvs} of a range answer (ValueError if malformed)."""
    items = answer.get("kvs", [])
    if not isinstance(items, list):
        raise ValueError("'kvs' is not a list")
    return [KeyValue.parse(item) for item in items]


def relative(directory: str, key: str) -> str | None:
    """C{key}'s name below C{directory}, or None (not below it, or a marker)."""
    prefix = directory.rstrip("/") + "/"
    if not key.startswith(prefix) or key.endswith(LEAVING):
        return None
    return key[len(prefix) :]


def entries(directory: str, answer: Mapping[str, Any]) -> tuple[Entry, ...]:
    """The listing entries of a prefix range answer (markers left out)."""
    found = []
    for kv in kvs(answer):
        name = relative(directory, kv.key)
        if name:
            found.append(Entry(name, kv.value, kv.create_revision, kv.mod_revision))
    return tuple(found)


def changes(directory: str, events: Sequence[object]) -> list[Change]:
    """
    The registry changes in one watch response's C{events} (ValueError if malformed).

    A DELETE is "deleted" when a leaving marker for the same key was written in the
    same response (a clean leave) or the key had no lease (someone deleted a key
    that could not have expired); otherwise "expired". Its C{created_index} comes
    from C{prev_kv} (the watch asks for it), 0 without one.
    """
    parsed: list[tuple[bool, KeyValue, KeyValue | None]] = []
    leaving: set[str] = set()
    for event in events:
        if not isinstance(event, dict):
            raise ValueError(f"event is not an object: {event!r:.80}")
        kind = event.get("type", "PUT")
        if kind not in ("PUT", "DELETE"):
            raise ValueError(f"unknown event type {kind!r:.40}")
        kv = KeyValue.parse(event.get("kv"))
        prev_data = event.get("prev_kv")
        prev = None if prev_data is None else KeyValue.parse(prev_data)
        put = kind == "PUT"
        if put and kv.key.endswith(LEAVING):
            leaving.add(kv.key[: -len(LEAVING)])
        parsed.append((put, kv, prev))
    found = []
    for put, kv, prev in parsed:
        name = relative(directory, kv.key)
        if not name:
            continue
        if put:
            found.append(
                Change("put", name, kv.value, kv.create_revision, kv.mod_revision)
            )
            continue
        clean = kv.key in leaving or (prev is not None and prev.lease == 0)
        created = 0 if prev is None else prev.create_revision
        kind_of: ChangeKind = "deleted" if clean else "expired"
        found.append(Change(kind_of, name, None, created, kv.mod_revision))
    return found


# -- request bodies ----------------------------------------------------------------


def put_op(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    """A transaction's put of C{key} (attached to C{lease} unless 0)."""
    request: dict[str, Any] = {"key": encode(key), "value": encode(value)}
    if lease:
        request["lease"] = str(lease)
    return {"requestPut": request}


def range_op(key: str) -> dict[str, Any]:
    """A transaction's read of one key."""
    return {"requestRange": {"key": encode(key)}}


def delete_op(key: str) -> dict[str, Any]:
    """A transaction's delete of one key."""
    return {"requestDeleteRange": {"key": encode(key)}}


def created_is(key: str, result: str, revision: int = 0) -> dict[str, Any]:
    """A compare on C{key}'s create revision: C{result} is EQUAL or GREATER."""
    return {
        "target": "CREATE",
        "key": encode(key),
        "result": result,
        "createRevision": str(revision),
    }


def value_is(key: str, value: str) -> dict[str, Any]:
    """A compare that holds while C{key} exists with C{value}."""
    return {
        "target": "VALUE",
        "key": encode(key),
        "result": "EQUAL",
        "value": encode(value),
    }
