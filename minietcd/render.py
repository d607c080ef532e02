# -*- test-case-name: tests.minietcd.test_render -*-
"""JSON exactly as etcd's Go encoder writes it.

Go's C{encoding/json} differs from Python's C{json} in a few visible ways, all
reproduced here: C{&}, C{<}, C{>}, U+2028 and U+2029 are escaped (C{\\u0026} ...);
backspace and form feed are C{\\u0008}/C{\\u000c} (Go 1.19 has no short forms);
bytes that are not valid UTF-8 become C{\\ufffd}, one per byte; other non-ASCII text
is raw UTF-8. Strings that came from percent-decoding carry invalid bytes as
surrogate escapes (C{errors="surrogateescape"}), which is how they are recognised.
Fields follow Go's struct order and C{omitempty} rules.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from minietcd.errors import EtcdError
from minietcd.events import Event, NodeView
from minietcd.store import NS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHORT_ESCAPE = re.compile(r"\\([\\bf])")
_SHORT_REPLACEMENT = {"\\": "\\\\", "b": "\\u0008", "f": "\\u000c"}
_SURROGATE = re.compile("[\udc80-\udcff]")
_NO_VALUE_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _short(match: re.Match[str]) -> str:
    return _SHORT_REPLACEMENT[match.group(1)]


def go_json(value: object) -> bytes:
    """Encode C{value} (dicts, lists, str, int, bool, None) as Go would."""
    try:
        text = _dumps(value)
    except RecursionError:
        text = _dumps_deep(value)
    if "\\b" in text or "\\f" in text:
        text = _SHORT_ESCAPE.sub(_short, text)
    if "&" in text:
        text = text.replace("&", "\\u0026")
    if "<" in text:
        text = text.replace("<", "\\u003c")
    if ">" in text:
        text = text.replace(">", "\\u003e")
    if "\u2028" in text:
        text = text.replace("\u2028", "\\u2028")
    if "\u2029" in text:
        text = text.replace("\u2029", "\\u2029")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\\\\ufffd", text).encode("utf-8", "replace")


def _dumps_deep(value: object) -> str:
    """Encode arbitrarily deep structures without recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, dict):
            parts: list[Any] = [_Raw("{")]
            for i, (key, child) in enumerate(item.items()):
                parts.append(_Raw(("," if i else "") + _dumps(key) + ":"))
                parts.append(child)
            parts.append(_Raw("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list):
            parts = [_Raw("[")]
            for i, child in enumerate(item):
                if i:
                    parts.append(_Raw(","))
                parts.append(child)
            parts.append(_Raw("]"))
            stack.extend(reversed(parts))
        else:
            out.append(_dumps(item))
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with up to nine fractional digits, trailing zeros trimmed
    (Go's C{time.RFC3339Nano})."""
    seconds, fraction = divmod(ns, NS)
    moment = _EPOCH + timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.year < 1000:
        text = f"{moment.year:04d}" + text[text.index("-") :]
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def _flat(node: NodeView) -> tuple[dict[str, object], list[dict[str, object]] | None]:
    out: dict[str, object] = {}
    if node.key:
        out["key"] = node.key
    if node.value is not None:
        out["value"] = node.value
    if node.dir:
        out["dir"] = True
    if node.expiration is not None:
        out["expiration"] = format_time(node.expiration)
    if node.ttl:
        out["ttl"] = node.ttl
    kids: list[dict[str, object]] | None = None
    if node.nodes:
        kids = out["nodes"] = []
    if node.modified_index:
        out["modifiedIndex"] = node.modified_index
    if node.created_index:
        out["createdIndex"] = node.created_index
    return out, kids


def node_dict(node: NodeView) -> dict[str, object]:
    """The JSON object of a node and its listed children (built without recursion)."""
    top, kids = _flat(node)
    if kids is None:
        return top
    pending = [(node, kids)]
    while pending:
        parent, siblings = pending.pop()
        assert parent.nodes is not None
        for child in parent.nodes:
            child_dict, grandchildren = _flat(child)
            siblings.append(child_dict)
            if grandchildren is not None:
                pending.append((child, grandchildren))
    return top


def event_dict(event: Event, no_value: bool = False) -> dict[str, object]:
    """The JSON object of an event; C{no_value} (C{noValueOnSuccess=true}) leaves
    out the nodes of set, create, update and compareAndSwap answers."""
    out: dict[str, object] = {"action": event.action}
    if not (no_value and event.action in _NO_VALUE_ACTIONS):
        out["node"] = node_dict(event.node)
        if event.prev_node is not None:
            out["prevNode"] = node_dict(event.prev_node)
    return out


def event_json(event: Event, no_value: bool = False) -> bytes:
    """An event as etcd writes it: JSON plus a newline."""
    return go_json(event_dict(event, no_value)) + b"\n"


def error_json(error: EtcdError) -> bytes:
    """An etcd error body: C{errorCode}, C{message}, C{cause} if any, C{index}."""
    out: dict[str, object] = {"errorCode": error.code, "message": error.message}
    if error.cause:
        out["cause"] = error.cause
    out["index"] = error.index
    return go_json(out) + b"\n"
