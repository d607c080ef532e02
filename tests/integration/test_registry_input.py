"""Hostile registry records against three real nodes: refused, once, no harm.

Three C{twistd -n clusternode} processes on minietcd. The test writes records into
their members directory by hand: one over the 64 KiB limit, one with an IPv6
address, ones with an unspecified and a broadcast address, and a record of a real
node rewritten with another port and C{client: true}. No node lists the hostile
records as peers or sends them hellos, each warns once per record (never a
"registry listener failed" traceback), the cluster keeps its members and master,
and the overwritten node writes its own record back.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import (
    FAST_TIMERS,
    start_nodes,
    stop_nodes,
    wait_for_agreed_master,
)
from tests.harness.servers import shared_minietcd
from twistednode.registry.record import MemberRecord

SETTLE = 20.0


class HostileRecordTests(SynchronousTestCase):
    """Records nobody should have written are refused where they are read."""

    def setUp(self) -> None:
        self.registry = shared_minietcd()
        self.cluster = f"records-{uuid.uuid4().hex[:10]}"
        self.nodes = start_nodes(
            3, etcd=self.registry.url, cluster=self.cluster, timers=FAST_TIMERS
        )
        self.addCleanup(stop_nodes, self.nodes)
        self.master = wait_for_agreed_master(self.nodes, SETTLE)

    def key(self, member_id: str) -> str:
        return (
            f"{self.registry.url}/v2/keys/twistednode/{self.cluster}/members/"
            f"{member_id}"
        )

    def put(self, member_id: str, value: str, ttl: int = 60) -> None:
        body = urllib.parse.urlencode({"value": value, "ttl": ttl}).encode()
        request = urllib.request.Request(self.key(member_id), data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stored(self, member_id: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.key(member_id), timeout=5) as response:
            record: dict[str, Any] = json.loads(json.load(response)["node"]["value"])
        return record

    def test_hostile_records_are_refused_once_and_harm_nothing(self) -> None:
        """Oversized, IPv6, unspecified and broadcast records: no peer, one warning
        each on every node, no traceback, members and master unchanged."""
        hostile = {
            "over the record size limit": {"advertisement": "x" * 70_000},
            "is IPv6": {"address": "::1"},
            "is unspecified": {"address": "0.0.0.0"},
            "broadcast or multicast": {"address": "255.255.255.255"},
        }
        ids = {}
        for why, changes in hostile.items():
            member_id = str(uuid.uuid4())
            ids[why] = member_id
            record = MemberRecord(
                id=member_id, address="127.0.0.1", port=9, started_at=time.time()
            )
            value = json.loads(record.to_json())
            value.update(changes)
            for _ in range(3):  # rewritten: still one warning
                self.put(member_id, json.dumps(value))
        time.sleep(FAST_TIMERS.master_timeout * 2)
        master = wait_for_agreed_master(self.nodes, SETTLE)
        self.assertEqual(master, self.master)
        for node in self.nodes:
            status = node.status()
            self.assertEqual(
                set(status["registry"]["peers"]) & set(ids.values()), set(), node.id
            )
            output = node.output()
            self.assertNotIn("registry listener failed", output)
            self.assertNotIn("Traceback", output)
            for why, member_id in ids.items():
                warned = [
                    line
                    for line in output.splitlines()
                    if member_id in line and why in line
                ]
                self.assertEqual(len(warned), 1, f"{node.id} on {why}: {warned}")

    def test_overwritten_own_record_is_written_back(self) -> None:
        """A node whose record someone rewrites (port 9, client) writes it back."""
        victim = next(n for n in self.nodes if n.id != self.master)
        original = self.stored(victim.id)
        forged = dict(original, port=9, client=True)
        self.put(victim.id, json.dumps(forged), ttl=10)
        deadline = time.monotonic() + SETTLE
        while self.stored(victim.id) != original:
            self.assertLess(time.monotonic(), deadline, self.stored(victim.id))
            time.sleep(0.05)
        self.assertIn("changed by someone else", victim.output())
        self.assertEqual(wait_for_agreed_master(self.nodes, SETTLE), self.master)
