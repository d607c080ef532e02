"""Tests for twistednode.cli.render: what the command prints."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from tests.cli.helpers import IDS, NOW, directory_listing, members_listing, record
from twistednode.cli.follow import Joined, Left, MasterChanged, Watching
from twistednode.cli.render import (
    age,
    event_line,
    members_json,
    members_text,
    status_text,
    timestamp,
)
from twistednode.cli.snapshot import snapshot_of
from twistednode.election.lease import Holder

URL = "http://127.0.0.1:2379"


def snapshot(master: str | None = IDS[0]):  # type: ignore[no-untyped-def]
    found, _ = snapshot_of(
        "demo",
        members_listing((record(0), 5), (record(1, client=True), 6), index=40),
        directory_listing(master, 30, 41),
    )
    return found


class FormatTests(SynchronousTestCase):
    def test_age(self) -> None:
        """Ages read as seconds, minutes, hours or days with the next unit."""
        self.assertEqual(
            [age(s) for s in (0, 42.9, 303, 7440, 266400, -1)],
            ["0s", "42s", "5m03s", "2h04m", "3d02h", "-"],
        )

    def test_timestamp_is_utc_to_the_millisecond(self) -> None:
        """Timestamps are ISO 8601 in UTC with milliseconds."""
        self.assertEqual(timestamp(NOW + 0.25), "2025-11-26T13:50:00.250Z")


class MembersTests(SynchronousTestCase):
    def test_table(self) -> None:
        """A heading with the master, then one aligned row per member."""
        text = members_text(snapshot(), NOW, URL, "v2")
        self.assertEqual(
            text.splitlines(),
            [
                f"cluster demo on {URL} (etcd v2), index 40: 2 members, "
                f"master {IDS[0]} (epoch 30)",
                "ID                                    ADDRESS   PORT   WEIGHT  AGE    "
                "ROLE      MASTER",
                f"{IDS[0]}  10.0.0.1  41000  10      1m00s  eligible  *",
                f"{IDS[1]}  10.0.0.2  41001  9       2m00s  client",
            ],
        )

    def test_master_without_record(self) -> None:
        """A master key whose holder has no record says so."""
        text = members_text(snapshot(IDS[2]), NOW, URL, "v3")
        self.assertIn(f"master {IDS[2]} (epoch 30, no member record)", text)

    def test_no_master(self) -> None:
        """Without a master key the heading says no master."""
        self.assertIn("no master", members_text(snapshot(None), NOW, URL, "v2"))

    def test_json(self) -> None:
        """--json has every field of a record, its age and role, and the master."""
        document = members_json(snapshot(), NOW, URL, "v3")
        json.dumps(document)
        self.assertEqual(document["master"], {"id": IDS[0], "epoch": 30})
        first, second = document["members"]
        self.assertEqual(
            (first["id"], first["master"], first["eligible"], first["age"]),
            (IDS[0], True, True, 60.0),
        )
        self.assertEqual((second["client"], second["createdIndex"]), (True, 6))
        self.assertEqual((document["api"], document["index"]), ("v3", 40))


class WatchLineTests(SynchronousTestCase):
    def test_lines(self) -> None:
        """Each event is one timestamped line naming what happened."""
        lines = [
            event_line(event, NOW)
            for event in (
                Watching(snapshot()),
                Joined(record(2)),
                Left(IDS[1], "expired", record(1)),
                MasterChanged(None),
                MasterChanged(Holder(IDS[2], 77)),
            )
        ]
        stamp = "2025-11-26T13:50:00.000Z  "
        self.assertEqual(
            lines,
            [
                stamp + "watching  cluster demo from index 40: 2 members, "
                f"master {IDS[0]} (epoch 30)",
                stamp + f"joined    {IDS[2]} 10.0.0.3:41002 weight 8 eligible",
                stamp + f"left      {IDS[1]} 10.0.0.2:41001 (expired)",
                stamp + "master    none",
                stamp + f"master    {IDS[2]} (epoch 77)",
            ],
        )


class StatusTextTests(SynchronousTestCase):
    def test_readable_status(self) -> None:
        """The node, its election, registry, members and drops, one per line."""
        document = {
            "cluster": "demo",
            "now": NOW,
            "self": {
                "id": IDS[0],
                "address": "10.0.0.1",
                "port": 41000,
                "isMaster": True,
                "isMasterEligible": True,
                "hostName": "host0",
                "startedAt": NOW - 75,
            },
            "master": IDS[0],
            "members": [
                {
                    "id": IDS[1],
                    "address": "10.0.0.2",
                    "port": 41001,
                    "isMaster": False,
                    "weight": 9,
                    "lastSeen": 0.4,
                    "source": "registry",
                }
            ],
            "registry": {"state": "watching", "api": "v2", "url": URL},
            "election": {
                "mode": "lease",
                "epoch": 30,
                "validFor": 1.5,
                "masterEpoch": 30,
                "terms": 1,
                "stepDowns": 0,
            },
            "dropped": {"bad-json": 2},
        }
        self.assertEqual(
            status_text(document).splitlines(),
            [
                f"node      {IDS[0]} (host0) at 10.0.0.1:41000, up 1m15s",
                "cluster   demo",
                f"master    {IDS[0]} (this node)",
                "election  lease, epoch 30, term valid 1.5 s, terms won 1, "
                "step-downs 0, eligible yes",
                f"registry  watching on {URL} (etcd v2)",
                "members   1",
                "  ID                                    ADDRESS         SOURCE    "
                "WEIGHT  LAST HELLO  MASTER",
                f"  {IDS[1]}  10.0.0.2:41001  registry  9       0.4s",
                "dropped   bad-json 2",
            ],
        )

    def test_static_node(self) -> None:
        """A node without a registry says so; a sparse document does not raise."""
        text = status_text(
            {"self": {"id": "x"}, "registry": {"state": "disabled"}, "members": []}
        )
        self.assertIn("registry  none (static peers)", text)
