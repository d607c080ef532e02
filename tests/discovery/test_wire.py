"""The node-discover envelope codec (node-discover-wire.md §1-§3, §9)."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.discovery.test_legacykey import V1_PLAIN, V1_WIRE, V3_PLAIN, V3_WIRE
from twistednode.discovery import wire
from twistednode.discovery.legacykey import LegacyKey
from twistednode.discovery.wire import Envelope

CAPTURED = V1_PLAIN

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def dropped(datagram: bytes, key: str | None = None) -> str:
    """Decode a datagram that must be dropped; return the reason."""
    try:
        envelope = wire.decode(datagram, key)
    except wire.Dropped as e:
        return e.reason
    raise AssertionError(f"accepted {envelope!r}")


class JsTruthyTests(SynchronousTestCase):
    """JavaScript truthiness of JSON values."""

    def test_falsy(self) -> None:
        """null, false, 0, -0, NaN and "" are falsy."""
        for value in (None, False, 0, 0.0, -0.0, math.nan, ""):
            with self.subTest(value=value):
                self.assertFalse(wire.js_truthy(value))

    def test_truthy(self) -> None:
        """{}, [], "0", "false", true and nonzero numbers are truthy."""
        for value in ({}, [], "0", "false", True, 1, -0.5, " ", [0], {"a": None}):
            with self.subTest(value=value):
                self.assertTrue(wire.js_truthy(value))


class JsToNumberTests(SynchronousTestCase):
    """JavaScript ToNumber of JSON values, as used for weights."""

    def check(self, value: object, expected: float) -> None:
        got = wire.js_to_number(value)
        if math.isnan(expected):
            self.assertTrue(math.isnan(got), f"{value!r} -> {got!r}, expected NaN")
        else:
            self.assertEqual(got, expected, f"{value!r}")

    def test_primitives(self) -> None:
        """null is 0, booleans 0/1, numbers themselves."""
        self.check(None, 0.0)
        self.check(False, 0.0)
        self.check(True, 1.0)
        self.check(-0.17326296, -0.17326296)
        self.check(7, 7.0)
        self.check(10**400, math.inf)
        self.check(-(10**400), -math.inf)

    def test_strings(self) -> None:
        """Numeric strings follow JS syntax; anything else is NaN."""
        cases: list[tuple[str, float]] = [
            ("", 0.0),
            ("   ", 0.0),
            (" \u00a0\ufeff\u2028 12 \n", 12.0),
            ("-0.5", -0.5),
            ("+3", 3.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E-2", 0.01),
            ("1e400", math.inf),
            ("Infinity", math.inf),
            ("-Infinity", -math.inf),
            ("0x1f", 31.0),
            ("0o17", 15.0),
            ("0b101", 5.0),
            ("-0x1f", math.nan),
            ("inf", math.nan),
            ("nan", math.nan),
            ("infinity", math.nan),
            ("1_000", math.nan),
            ("\uff11", math.nan),
            ("12px", math.nan),
            ("0x", math.nan),
            (".", math.nan),
            ("1e", math.nan),
            ("abc", math.nan),
        ]
        for text, expected in cases:
            with self.subTest(text=text):
                self.check(text, expected)

    def test_containers(self) -> None:
        """Objects are NaN; arrays go through their string form ([] is 0)."""
        self.check({}, math.nan)
        self.check({"a": 1}, math.nan)
        self.check([], 0.0)
        self.check([None], 0.0)
        self.check([5], 5.0)
        self.check(["7"], 7.0)
        self.check([[" 3 "]], 3.0)
        self.check([1, 2], math.nan)
        self.check([True], math.nan)
        self.check([{}], math.nan)
        self.check([[]], 0.0)

    def test_absent_field(self) -> None:
        """An absent field is undefined, i.e. NaN; null is 0."""
        self.assertTrue(math.isnan(wire.number_field({}, "weight")))
        self.assertEqual(wire.number_field({"weight": None}, "weight"), 0.0)


class DecodeTests(SynchronousTestCase):
    """Accepting and dropping received datagrams."""

    def test_captured_hello(self) -> None:
        """The hello captured from node-discover decodes to its fields."""
        envelope = wire.decode(CAPTURED)
        self.assertEqual(envelope.event, "hello")
        self.assertEqual(envelope.pid, "8893444d-80e2-4550-9677-f59708e67608")
        self.assertEqual(envelope.iid, "e91fa857-abf7-4f58-a7bb-ded22f2766d9")
        self.assertEqual(envelope.host_name, "vm")
        self.assertEqual(
            envelope.data,
            {
                "isMaster": False,
                "isMasterEligible": True,
                "weight": -0.1795700674136,
                "address": "127.0.0.1",
            },
        )

    def test_minimal_hello(self) -> None:
        """The minimal hello node-discover accepts is accepted (no pid/hostName)."""
        envelope = wire.decode(V3_PLAIN)
        self.assertEqual((envelope.pid, envelope.host_name), (None, None))
        self.assertEqual(envelope.iid, "X")

    def test_keyed(self) -> None:
        """Encrypted datagrams decode with the key, and are dropped without it."""
        self.assertEqual(wire.decode(V1_WIRE, "secret"), wire.decode(CAPTURED))
        self.assertEqual(
            wire.decode(V3_WIRE, LegacyKey.from_password("secret")).iid, "X"
        )
        self.assertEqual(dropped(V1_WIRE), "bad-json")
        self.assertEqual(dropped(CAPTURED, "secret"), "bad-cipher")
        self.assertEqual(dropped(V1_WIRE, "other"), "bad-cipher")

    def test_r2_bad_json(self) -> None:
        """Bad UTF-8, bad or truncated JSON, NaN and Infinity are dropped."""
        self.assertEqual(dropped(b"\xff\xfe{}"), "bad-utf8")
        self.assertEqual(dropped(CAPTURED[:-1]), "bad-json")
        self.assertEqual(dropped(b""), "bad-json")
        for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
            with self.subTest(constant=constant):
                datagram = b'{"event":"hello","iid":"a","data":{"weight":%s}}' % (
                    constant
                )
                self.assertEqual(dropped(datagram), "bad-json")
        self.assertEqual(dropped(b"[" * 60000), "bad-json")
        self.assertEqual(dropped(b"\xef\xbb\xbf" + V3_PLAIN), "bad-json")

    def test_r3_not_object(self) -> None:
        """A top level that is not an object is dropped (null crashes Node)."""
        for text in (b"null", b"[]", b"1", b'"hello"', b"true"):
            with self.subTest(text=text):
                self.assertEqual(dropped(text), "not-object")

    def test_r6_falsy(self) -> None:
        """A falsy or absent event or data is dropped."""
        for event in ('""', "0", "false", "null"):
            with self.subTest(event=event):
                datagram = f'{{"event":{event},"iid":"a","data":1}}'
                self.assertEqual(dropped(datagram.encode()), "falsy-event")
        self.assertEqual(dropped(b'{"iid":"a","data":1}'), "falsy-event")
        for data in ('""', "0", "-0", "false", "null"):
            with self.subTest(data=data):
                datagram = f'{{"event":"jobs","iid":"a","data":{data}}}'
                self.assertEqual(dropped(datagram.encode()), "falsy-data")
        self.assertEqual(dropped(b'{"event":"jobs","iid":"a"}'), "falsy-data")

    def test_truthy_containers_accepted(self) -> None:
        """Channel payloads {} and [] are truthy and accepted."""
        for data in ("{}", "[]", '"0"'):
            with self.subTest(data=data):
                datagram = f'{{"event":"jobs","iid":"a","data":{data}}}'
                self.assertEqual(wire.decode(datagram.encode()).data, json.loads(data))

    def test_stricter_acceptance(self) -> None:
        """A non-string event, a bad iid and non-object hello data are dropped."""
        self.assertEqual(dropped(b'{"event":1,"iid":"a","data":{}}'), "bad-event")
        for iid in ("", "1", "null", "{}"):
            with self.subTest(iid=iid):
                datagram = '{"event":"hello","iid":%s,"data":{}}' % (
                    '""' if iid == "" else iid
                )
                self.assertEqual(dropped(datagram.encode()), "bad-iid")
        self.assertEqual(dropped(b'{"event":"hello","data":{}}'), "bad-iid")
        for data in ('"ghost"', "5", "[1]", "true"):
            with self.subTest(data=data):
                datagram = f'{{"event":"hello","iid":"a","data":{data}}}'
                self.assertEqual(dropped(datagram.encode()), "bad-hello-data")

    def test_odd_pid_and_hostname(self) -> None:
        """A non-string pid or hostName is treated as absent, not dropped."""
        envelope = wire.decode(
            b'{"event":"hello","pid":5,"iid":"a","hostName":[1],"data":{}}'
        )
        self.assertEqual((envelope.pid, envelope.host_name), (None, None))

    def test_extra_keys_and_escapes(self) -> None:
        """Extra top-level keys, whitespace and \\u escapes do not matter."""
        envelope = wire.decode(
            b' {"x":1, "data" : {"a":"\\u00fc"}, "iid":"a", "event":"hell\\u006f"} '
        )
        self.assertEqual((envelope.event, envelope.data), ("hello", {"a": "\u00fc"}))

    def test_too_large(self) -> None:
        """A datagram above 65,507 bytes is dropped."""
        self.assertEqual(dropped(b" " * 65_508), "too-large")

    @given(st.binary(max_size=300))
    @settings(max_examples=200, deadline=None)
    def test_arbitrary_bytes(self, datagram: bytes) -> None:
        """Any bytes either decode or raise Dropped; nothing else escapes."""
        for key in (None, "secret"):
            try:
                wire.decode(datagram, key)
            except wire.Dropped as e:
                self.assertTrue(e.reason)


class EncodeTests(SynchronousTestCase):
    """Serialising envelopes."""

    def test_captured_bytes(self) -> None:
        """Re-encoding the captured hello reproduces its 221 bytes exactly."""
        self.assertEqual(wire.encode(wire.decode(CAPTURED)), CAPTURED)
        self.assertEqual(len(CAPTURED), 221)

    def test_keyed_bytes(self) -> None:
        """With the key, the captured hello encodes to vector V1."""
        self.assertEqual(wire.encode(wire.decode(CAPTURED), "secret"), V1_WIRE)

    def test_minimal_bytes(self) -> None:
        """Absent pid and hostName are left out, giving vector V3's plaintext."""
        envelope = Envelope(
            event="hello", pid=None, iid="X", host_name=None, data={"isMaster": False}
        )
        self.assertEqual(wire.encode(envelope), V3_PLAIN)
        self.assertEqual(wire.encode(envelope, "secret"), V3_WIRE)

    def test_non_ascii_unescaped(self) -> None:
        """Non-ASCII text is sent as UTF-8, not \\u escapes."""
        envelope = Envelope("jobs", "p", "i", "h\u00f6st", {"z": "z\u00fcrich"})
        datagram = wire.encode(envelope)
        self.assertIn("z\u00fcrich".encode(), datagram)
        self.assertIn("h\u00f6st".encode(), datagram)

    def test_refusals(self) -> None:
        """error, empty events, falsy payloads and non-JSON values are refused."""
        refused: list[Envelope] = [
            Envelope("error", "p", "i", "h", {"message": "x"}),
            Envelope("", "p", "i", "h", {}),
            Envelope("jobs", "p", "", "h", {}),
            Envelope("jobs", "p", "i", "h", {"w": math.nan}),
            Envelope("jobs", "p", "i", "h", {"w": math.inf}),
            Envelope("jobs", "p", "i", "h", {"s": {1, 2}}),
            Envelope("jobs", "p", "i", "h", {"s": "\ud800"}),
        ]
        for payload in (None, False, 0, 0.0, ""):
            refused.append(Envelope("jobs", "p", "i", "h", payload))
        for envelope in refused:
            with self.subTest(envelope=envelope):
                self.assertRaises(wire.EncodeError, wire.encode, envelope)

    def test_too_large(self) -> None:
        """Above 65,507 bytes encode raises MessageTooLarge; at the limit it works."""

        def sized(n: int) -> Envelope:
            return Envelope("jobs", "p", "i", "h", "x" * n)

        overhead = len(wire.encode(sized(1))) - 1
        self.assertEqual(len(wire.encode(sized(wire.MAX_DATAGRAM - overhead))), 65_507)
        error = self.assertRaises(
            wire.MessageTooLarge, wire.encode, sized(wire.MAX_DATAGRAM - overhead + 1)
        )
        self.assertEqual(error.size, 65_508)
        self.assertIsInstance(error, ValueError)

    def test_too_large_after_encryption(self) -> None:
        """The limit applies to the encrypted, expanded datagram."""
        envelope = Envelope("jobs", "p", "i", "h", "x" * 50_000)
        self.assertLess(len(wire.encode(envelope)), wire.MAX_DATAGRAM)
        self.assertRaises(wire.MessageTooLarge, wire.encode, envelope, "secret")

    @given(
        event=st.text(min_size=1).filter(lambda e: e != "error"),
        iid=st.text(min_size=1),
        pid=st.none() | st.text(),
        host=st.none() | st.text(),
        data=json_values.filter(wire.js_truthy),
        keyed=st.booleans(),
    )
    @settings(max_examples=200, deadline=None)
    def test_round_trip(
        self,
        event: str,
        iid: str,
        pid: str | None,
        host: str | None,
        data: object,
        keyed: bool,
    ) -> None:
        """Whatever encodes decodes back to the same envelope."""
        envelope = Envelope(event, pid, iid, host, data)
        key = "secret" if keyed else None
        try:
            datagram = wire.encode(envelope, key)
        except wire.EncodeError:
            return  # lone surrogates cannot be sent
        if event == "hello" and not isinstance(data, dict):
            self.assertEqual(dropped(datagram, key), "bad-hello-data")
            return
        self.assertEqual(wire.decode(datagram, key), envelope)
