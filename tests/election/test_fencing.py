"""Fencing: the epoch fence, the etcd v3 transaction guard, and the README example."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.servers import shared_minietcd, shared_real_etcd
from tests.registry.test_etcd_auth import post_v3
from twistednode import EpochFence, StaleEpoch, v3_master_guard

ROOT = Path(__file__).resolve().parent.parent.parent


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EpochFenceTests(SynchronousTestCase):
    """A resource keeps the highest epoch and refuses anything lower."""

    def test_higher_and_equal_epochs_pass(self) -> None:
        """The same term may write again; a later term may write."""
        fence = EpochFence()
        fence.admit(3)
        fence.admit(3)
        fence.admit(5)
        self.assertEqual(fence.highest, 5)

    def test_lower_epoch_refused(self) -> None:
        """A write of an older term raises StaleEpoch and changes nothing."""
        fence = EpochFence(highest=9)
        error = self.assertRaises(StaleEpoch, fence.admit, 4)
        self.assertEqual((error.epoch, error.highest, fence.highest), (4, 9, 9))
        self.assertFalse(fence.allows(4))

    def test_not_an_epoch_refused(self) -> None:
        """Zero, negative, boolean or non-integer epochs are a ValueError."""
        fence = EpochFence()
        for bad in (0, -1, True, 2.5):
            self.assertRaises(ValueError, fence.admit, bad)


class V3GuardTests(SynchronousTestCase):
    """The v3 guard lets a transaction write only during its term (real etcd)."""

    def test_guard_holds_only_for_the_current_term(self) -> None:
        """A txn guarded by the term's create revision succeeds, then fails once
        the master key has been re-created by a later term."""
        url = shared_real_etcd().url
        cluster = "fence-" + uuid.uuid4().hex[:8]
        key = f"/twistednode/{cluster}/master"
        first = post_v3(url, "/v3/kv/put", {"key": b64(key), "value": b64("a")})
        epoch = int(first["header"]["revision"])
        write = [{"requestPut": {"key": b64(f"/{cluster}/data"), "value": b64("x")}}]
        guard = v3_master_guard(cluster, epoch)
        ok = post_v3(url, "/v3/kv/txn", {"compare": [guard], "success": write})
        self.assertTrue(ok.get("succeeded"))
        post_v3(url, "/v3/kv/deleterange", {"key": b64(key)})
        post_v3(url, "/v3/kv/put", {"key": b64(key), "value": b64("b")})
        late = post_v3(url, "/v3/kv/txn", {"compare": [guard], "success": write})
        self.assertFalse(late.get("succeeded", False))


class ExampleTests(SynchronousTestCase):
    """docs/fenced_writes.py runs as the README says and refuses the late write."""

    def test_example_refuses_the_old_masters_write(self) -> None:
        """Two masters in turn write; the first one's late write is refused."""
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "docs" / "fenced_writes.py"),
                shared_minietcd().url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 3, result.stdout)
        self.assertIn("a late write of the old master was refused", lines[2])
