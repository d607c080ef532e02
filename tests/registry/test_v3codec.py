"""Tests for twistednode.registry.v3codec: the etcd v3 gateway's encoding and events."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twistednode.registry.backend import Change, Entry
from twistednode.registry.v3codec import (
    LEAVING,
    NOT_UTF8,
    changes,
    decode,
    encode,
    entries,
    integer,
    prefix_end,
    prefix_range,
)

DIR = "/twistednode/c/members"


def kv(key: str, value: str = "", create: int = 2, mod: int = 2, lease: int = 0) -> Any:
    out: dict[str, Any] = {
        "key": encode(key),
        "create_revision": str(create),
        "mod_revision": str(mod),
        "version": "1",
    }
    if value:
        out["value"] = encode(value)
    if lease:
        out["lease"] = str(lease)
    return out


class CodecTests(SynchronousTestCase):
    def test_base64_round_trip(self) -> None:
        """Keys and values go out as base64 of UTF-8 and come back the same."""
        self.assertEqual(encode("foo"), "Zm9v")
        self.assertEqual(decode(encode("ünï/ç")).decode(), "ünï/ç")
        self.assertEqual(decode(None), b"")
        for bad in ("not base64!", 5):
            self.assertRaises(ValueError, decode, bad)

    def test_prefix_end(self) -> None:
        """range_end is the prefix with its last byte bumped, carrying past 0xff."""
        self.assertEqual(prefix_end(b"/a/"), b"/a0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")
        self.assertEqual(prefix_end(b"\xff\xff"), b"\x00")
        self.assertEqual(
            prefix_range("/d"), {"key": encode("/d/"), "range_end": encode("/d0")}
        )

    def test_integer_fields(self) -> None:
        """int64s are strings, absent means 0, anything else is a ValueError."""
        self.assertEqual(integer({"a": "12"}, "a"), 12)
        self.assertEqual(integer({"a": 12}, "a"), 12)
        self.assertEqual(integer({}, "a"), 0)
        for bad in ("x", True, 1.5, None):
            self.assertRaises(ValueError, integer, {"a": bad}, "a")

    def test_entries_skip_markers_and_strangers(self) -> None:
        """A listing keeps names below the directory, never leaving markers."""
        answer = {
            "kvs": [
                kv(DIR + "/a", "va", 3, 4),
                kv(DIR + "/a" + LEAVING, "", 5, 5),
                kv(DIR + "/b/x", "nested", 6, 6),
                kv(DIR + "/c", "\udcff".encode("utf-8", "surrogatepass").hex(), 7, 7),
            ]
        }
        answer["kvs"][3]["value"] = "/w=="  # the byte 0xff: not UTF-8
        self.assertEqual(
            entries(DIR, answer),
            (
                Entry("a", "va", 3, 4),
                Entry("b/x", "nested", 6, 6),
                Entry("c", NOT_UTF8, 7, 7),
            ),
        )

    def test_changes_put_and_expiry(self) -> None:
        """A PUT is "put"; a DELETE of a leased key without a marker is "expired"."""
        events = [
            {"kv": kv(DIR + "/a", "v", 3, 9, lease=77)},
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/b"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/b", "old", 4, 5, lease=78),
            },
        ]
        self.assertEqual(
            changes(DIR, events),
            [Change("put", "a", "v", 3, 9), Change("expired", "b", None, 4, 9)],
        )

    def test_changes_clean_leave(self) -> None:
        """A DELETE with a leaving marker in the same response is "deleted"."""
        events = [
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/a"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/a", "v", 3, 3, lease=77),
            },
            {"kv": kv(DIR + "/a" + LEAVING, "", 9, 9, lease=77)},
        ]
        self.assertEqual(changes(DIR, events), [Change("deleted", "a", None, 3, 9)])
        marker_gone = [
            {"type": "DELETE", "kv": {"key": encode(DIR + "/a" + LEAVING)}},
        ]
        self.assertEqual(changes(DIR, marker_gone), [])

    def test_changes_unleased_delete_is_deleted(self) -> None:
        """A key without a lease cannot expire: its DELETE is "deleted"."""
        events = [
            {
                "type": "DELETE",
                "kv": {"key": encode(DIR + "/a"), "mod_revision": "9"},
                "prev_kv": kv(DIR + "/a", "v", 3, 3),
            },
            {"type": "DELETE", "kv": {"key": encode(DIR + "/b"), "mod_revision": "9"}},
        ]
        self.assertEqual(
            changes(DIR, events),
            [Change("deleted", "a", None, 3, 9), Change("expired", "b", None, 0, 9)],
        )

    def test_malformed_events(self) -> None:
        """Events that are not etcd's shape are ValueErrors, not crashes."""
        for events in (["x"], [{"type": "BOOM", "kv": kv("k")}], [{"kv": 3}]):
            self.assertRaises(ValueError, changes, DIR, events)
