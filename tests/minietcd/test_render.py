"""minietcd's JSON: Go's encoder output for nodes, events and errors."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from minietcd.errors import EtcdError
from minietcd.render import error_json, event_json, format_time, go_json, node_dict
from minietcd.store import NS, Event, NodeView


class GoJsonTests(SynchronousTestCase):
    """String escaping as Go 1.19's encoding/json does it."""

    def test_html_and_separators_escaped(self) -> None:
        """& < > U+2028 U+2029 are escaped; other non-ASCII stays raw UTF-8."""
        self.assertEqual(
            go_json({"v": "<a&b>\u2028\u2029é☃"}),
            '{"v":"\\u003ca\\u0026b\\u003e\\u2028\\u2029é☃"}'.encode(),
        )

    def test_control_characters(self) -> None:
        """\\b and \\f use \\u00XX (Go 1.19), \\n \\r \\t short forms; DEL is raw."""
        self.assertEqual(
            go_json("a\bb\fc\nd\re\tf\x01g\x7f"),
            b'"a\\u0008b\\u000cc\\nd\\re\\tf\\u0001g\x7f"',
        )

    def test_backslashes_are_not_confused_with_escapes(self) -> None:
        """A literal backslash followed by b or f stays a backslash and a letter."""
        self.assertEqual(go_json("\\b\\f\b"), b'"\\\\b\\\\f\\u0008"')
        self.assertEqual(json.loads(go_json("\\\\b\\\b")), "\\\\b\\\b")

    def test_invalid_utf8_becomes_one_replacement_per_byte(self) -> None:
        """Each byte that is not UTF-8 becomes \\ufffd, as Go replaces them."""
        value = b"\xe2\x82x\xff".decode("utf-8", "surrogateescape")
        self.assertEqual(go_json(value), b'"\\ufffd\\ufffdx\\ufffd"')

    def test_deep_structures(self) -> None:
        """Nesting deeper than the recursion limit still encodes, identically."""
        deep: dict[str, object] = {"k": "v"}
        for _ in range(5000):
            deep = {"a": [deep, 1], "b": True}
        text = go_json(deep)
        self.assertTrue(text.startswith(b'{"a":[{"a":[{"a":'))
        self.assertTrue(text.endswith(b',1],"b":true}'))
        self.assertEqual(text.count(b'"k":"v"'), 1)


class TimeTests(SynchronousTestCase):
    """RFC 3339 with nanoseconds, as Go's time.Time marshals."""

    def test_format_time(self) -> None:
        """UTC, up to nine fraction digits, trailing zeros (and a bare dot) dropped."""
        self.assertEqual(
            format_time(1_795_701_256 * NS + 895_447_814),
            "2026-11-26T13:54:16.895447814Z",
        )
        self.assertEqual(
            format_time(1_795_701_256 * NS + 500_000_000), "2026-11-26T13:54:16.5Z"
        )
        self.assertEqual(format_time(1_795_701_256 * NS), "2026-11-26T13:54:16Z")
        self.assertEqual(format_time(-NS), "1969-12-31T23:59:59Z")


class NodeTests(SynchronousTestCase):
    """Struct order and omitempty of nodes, events and errors."""

    def test_file_node(self) -> None:
        """A file always has a value (even ""); zero ttl and absent fields go."""
        node = NodeView("/k", "", modified_index=4, created_index=4)
        self.assertEqual(
            json.dumps(node_dict(node), separators=(",", ":")),
            '{"key":"/k","value":"","modifiedIndex":4,"createdIndex":4}',
        )

    def test_field_order(self) -> None:
        """Fields follow Go's struct order: key value dir expiration ttl nodes."""
        child = NodeView(
            "/d/f", "x", expiration=NS, ttl=3, modified_index=6, created_index=5
        )
        node = NodeView("/d", None, True, 2 * NS, 9, [child], 7, 5)
        self.assertEqual(
            list(node_dict(node)),
            [
                "key",
                "dir",
                "expiration",
                "ttl",
                "nodes",
                "modifiedIndex",
                "createdIndex",
            ],
        )
        self.assertEqual(
            list(node_dict(child)),
            ["key", "value", "expiration", "ttl", "modifiedIndex", "createdIndex"],
        )

    def test_root_and_empty_dir(self) -> None:
        """The root has no key or indices; an empty dir has no nodes."""
        self.assertEqual(node_dict(NodeView("", None, True, nodes=[])), {"dir": True})

    def test_event_json(self) -> None:
        """An event ends with a newline; noValueOnSuccess drops nodes of writes only."""
        node = NodeView("/k", "v", modified_index=5, created_index=4)
        prev = NodeView("/k", "u", modified_index=4, created_index=4)
        event = Event("set", node, prev, 5)
        self.assertEqual(
            event_json(event),
            b'{"action":"set","node":{"key":"/k","value":"v","modifiedIndex":5,'
            b'"createdIndex":4},"prevNode":{"key":"/k","value":"u","modifiedIndex":4,'
            b'"createdIndex":4}}\n',
        )
        self.assertEqual(event_json(event, True), b'{"action":"set"}\n')
        deleted = Event(
            "delete", NodeView("/k", modified_index=6, created_index=4), prev, 6
        )
        self.assertIn(b'"node"', event_json(deleted, True))

    def test_error_json(self) -> None:
        """Errors: errorCode, message, cause only when non-empty, index; newline."""
        self.assertEqual(
            error_json(EtcdError(100, "/a&b", 7)),
            b'{"errorCode":100,"message":"Key not found","cause":"/a\\u0026b",'
            b'"index":7}\n',
        )
        self.assertEqual(
            error_json(EtcdError(102, "", 3)),
            b'{"errorCode":102,"message":"Not a file","index":3}\n',
        )
