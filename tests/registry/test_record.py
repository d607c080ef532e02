"""Tests for twistednode.registry.record."""

from __future__ import annotations

import json
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twistednode.registry.record import MemberRecord

IID = "e91fa857-abf7-4f58-a7bb-ded22f2766d9"


def record(**changes: Any) -> MemberRecord:
    base = MemberRecord(
        id=IID,
        address="10.0.0.5",
        port=41234,
        host_name="web-1",
        weight=-0.17957,
        advertisement={"svc": "api", "zone": "zürich"},
        started_at=1764165000.5,
    )
    return attrs.evolve(base, **changes)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
    ),
    max_leaves=10,
)


class MemberRecordTests(SynchronousTestCase):
    def test_json_keys(self) -> None:
        """to_json writes the eight documented keys, compact, non-ASCII unescaped."""
        text = record().to_json()
        self.assertEqual(
            json.loads(text),
            {
                "id": IID,
                "address": "10.0.0.5",
                "port": 41234,
                "hostName": "web-1",
                "weight": -0.17957,
                "advertisement": {"svc": "api", "zone": "zürich"},
                "startedAt": 1764165000.5,
                "client": False,
            },
        )
        self.assertNotIn(" ", text.replace("web-1", ""))
        self.assertIn("zürich", text)

    def test_client_flag_round_trips_and_defaults_to_false(self) -> None:
        """A client-only record says so; an older record without the key is not."""
        client = attrs.evolve(record(), client=True)
        self.assertTrue(MemberRecord.from_json(client.to_json(), IID).client)
        older = json.loads(record().to_json())
        del older["client"]
        self.assertFalse(MemberRecord.from_json(json.dumps(older), IID).client)
        older["client"] = "yes"
        self.assertRaises(ValueError, MemberRecord.from_json, json.dumps(older), IID)

    def test_transport_and_capacity_round_trip_and_default(self) -> None:
        """The node-to-node URL and the capacity are stored only when set; a
        record without them reads as no transport and capacity 1; bad ones are
        refused."""
        plain = json.loads(record().to_json())
        self.assertNotIn("transport", plain)
        self.assertNotIn("capacity", plain)
        self.assertIsNone(MemberRecord.from_json(record().to_json(), IID).transport)
        full = attrs.evolve(record(), transport="http://10.0.0.5:4000", capacity=2.5)
        back = MemberRecord.from_json(full.to_json(), IID)
        self.assertEqual((back.transport, back.capacity), ("http://10.0.0.5:4000", 2.5))
        for key, bad in [
            ("transport", "ftp://x"),
            ("transport", 7),
            ("capacity", 0),
            ("capacity", "2"),
            ("capacity", 1e7),
        ]:
            data = dict(plain, **{key: bad})
            self.assertRaises(ValueError, MemberRecord.from_json, json.dumps(data), IID)

    def test_round_trip(self) -> None:
        """from_json(to_json()) gives the same record."""
        self.assertEqual(MemberRecord.from_json(record().to_json(), IID), record())

    @given(
        advertisement=json_values,
        weight=st.floats(allow_nan=False, allow_infinity=False),
        port=st.integers(min_value=1, max_value=65535),
        host=st.text(),
    )
    def test_round_trip_any_json(
        self, advertisement: object, weight: float, port: int, host: str
    ) -> None:
        """Any JSON advertisement, finite weight, valid port and host name survive."""
        r = record(
            advertisement=advertisement, weight=weight, port=port, host_name=host
        )
        self.assertEqual(MemberRecord.from_json(r.to_json(), IID), r)

    def test_optional_keys(self) -> None:
        """hostName defaults to "" and advertisement to None; extra keys are ignored."""
        text = json.dumps(
            {
                "id": IID,
                "address": "::1",
                "port": 1,
                "weight": 0,
                "startedAt": 0,
                "future": [1, 2],
            }
        )
        r = MemberRecord.from_json(text)
        self.assertEqual((r.host_name, r.advertisement, r.address), ("", None, "::1"))

    def test_bad_values(self) -> None:
        """Each kind of bad value raises ValueError saying what is wrong."""
        good = json.loads(record().to_json())
        cases: list[tuple[str, str]] = [
            ("{not json", "not JSON"),
            ("[1, 2]", "JSON object"),
            ('"text"', "JSON object"),
            (json.dumps({**good, "port": 0}), "out of range"),
            (json.dumps({**good, "port": 65536}), "out of range"),
            (json.dumps({**good, "port": "80"}), "port must be an integer"),
            (json.dumps({**good, "port": True}), "port must be an integer"),
            (json.dumps({**good, "port": 80.0}), "port must be an integer"),
            (json.dumps({**good, "weight": "1"}), "weight must be a number"),
            (json.dumps({**good, "weight": None}), "weight must be a number"),
            (json.dumps(good).replace("-0.17957", "NaN"), "not JSON"),
            (json.dumps(good).replace("-0.17957", "Infinity"), "not JSON"),
            (json.dumps(good).replace("-0.17957", "1e999"), "finite"),
            (json.dumps({**good, "startedAt": -1}), "startedAt"),
            (json.dumps({**good, "address": "web-1.example"}), "not an IP address"),
            (json.dumps({**good, "address": 5}), "address must be a string"),
            (json.dumps({**good, "hostName": 5}), "hostName must be a string"),
            (json.dumps({**good, "id": "node-1"}), "not a UUID"),
            (json.dumps({**good, "id": IID.upper()}), "lowercase"),
            (json.dumps({k: v for k, v in good.items() if k != "port"}), "'port'"),
            ("[" * 100_000, "not JSON"),
        ]
        for text, message in cases:
            with self.assertRaises(ValueError, msg=text[:80]) as caught:
                MemberRecord.from_json(text, IID)
            self.assertIn(message, str(caught.exception), text[:80])

    def test_id_must_match_key(self) -> None:
        """A record whose id differs from its key's name is rejected."""
        other = "5b0e7d0a-6a1f-4c2b-8f3e-9d4c2a1b0e77"
        with self.assertRaises(ValueError) as caught:
            MemberRecord.from_json(record().to_json(), other)
        self.assertIn("does not match its key", str(caught.exception))

    def test_construction_validates(self) -> None:
        """A record cannot be built with an unserialisable advertisement or NaN."""
        with self.assertRaises(ValueError):
            record(advertisement={"x": float("nan")})
        with self.assertRaises(ValueError):
            record(advertisement={1, 2})
        with self.assertRaises(ValueError):
            record(weight=float("inf"))
        with self.assertRaises(ValueError):
            record(port=0)

    def test_not_text(self) -> None:
        """from_json of bytes is a ValueError, not a TypeError."""
        with self.assertRaises(ValueError):
            MemberRecord.from_json(b"{}")  # type: ignore[arg-type]
