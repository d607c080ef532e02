"""The registry as the membership authority: whose hellos and goodbyes count."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.discovery.test_membership import hello
from twistednode.discovery.authority import ListedPeer, RegistryAuthority
from twistednode.discovery.membership import (
    BYE_EVENT,
    EXTENSION_KEY,
    Membership,
    Removed,
)
from twistednode.discovery.settings import make_settings
from twistednode.discovery.wire import Envelope

SETTINGS = make_settings(epoch_ms=1732629600000, weight=0.0)
ME = "m0000000-0000-4000-8000-000000000000"
A = "a0000000-0000-4000-8000-000000000000"
HOME = ("10.0.0.5", 12345)
PEER = ListedPeer("10.0.0.5", 12345, (4, 1.0))
NOW = 101.0


def bye(iid: str, seq: int) -> Envelope:
    data = {EXTENSION_KEY: {"v": 1, "seq": seq}}
    return Envelope(BYE_EVENT, "pid-" + iid, iid, "host-" + iid, data)


def node(trust_hello_address: bool = False) -> Membership:
    return Membership(
        ME,
        SETTINGS,
        started_at=100.0,
        authority=RegistryAuthority(trust_hello_address=trust_hello_address),
    )


def listed(m: Membership, now: float = NOW, peer: ListedPeer | None = None) -> None:
    """A registry view listing us and, if given, C{peer} as member A."""
    peers = {} if peer is None else {A: peer}
    members = {ME: 5, **{i: p.revision[0] for i, p in peers.items()}}
    m.registry_view(now, members, 9, 5, peers=peers)


def ids(m: Membership) -> list[str]:
    return [member.id for member in m.members]


class AcceptanceTests(SynchronousTestCase):
    """Hellos count only from listed ids, from where their record says."""

    def test_unlisted_id_is_refused_and_counted(self) -> None:
        """An id the registry does not list is not a member (dropped.unlisted)."""
        m = node()
        listed(m)
        self.assertEqual(m.hello_received(NOW, hello(A, master=True), HOME), [])
        self.assertEqual(ids(m), [])
        self.assertEqual(m.dropped["unlisted"], 1)

    def test_before_the_first_view_nobody_is_listed(self) -> None:
        """A hello before any registry view waits for the listing (the join race)."""
        m = node()
        m.hello_received(NOW, hello(A), HOME)
        self.assertEqual(ids(m), [])
        listed(m, peer=PEER)
        m.hello_received(NOW + 0.1, hello(A), HOME)
        self.assertEqual(ids(m), [A])

    def test_listed_id_from_its_address_is_accepted(self) -> None:
        """A listed id from its record's address and port is a member."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A), HOME)
        self.assertEqual(ids(m), [A])

    def test_other_address_or_port_is_refused(self) -> None:
        """The right id from another address or port is refused (dropped.address)."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, master=True), ("10.0.0.66", 12345))
        m.hello_received(NOW, hello(A, master=True), ("10.0.0.5", 4444))
        self.assertEqual(ids(m), [])
        self.assertEqual(m.dropped["address"], 2)

    def test_trusted_address_still_needs_the_port(self) -> None:
        """trust_hello_address accepts any address, never another port."""
        m = node(trust_hello_address=True)
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A), ("10.0.0.5", 4444))
        self.assertEqual(ids(m), [])
        m.hello_received(NOW, hello(A), ("192.0.2.7", 12345))
        self.assertEqual([m.address for m in m.members], ["192.0.2.7"])

    def test_static_peers_keep_node_discovers_acceptance(self) -> None:
        """With static peers (a mixed cluster) any id is accepted, as node-discover
        does."""
        m = node()
        m.static_peers = True
        listed(m)
        m.hello_received(NOW, hello(A), HOME)
        self.assertEqual(ids(m), [A])

    def test_member_whose_record_vanishes_is_kept_while_it_says_hello(self) -> None:
        """A registry restarted empty: members stay, from their last address."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A), HOME)
        listed(m)
        m.hello_received(NOW + 0.5, hello(A), HOME)
        m.tick(NOW + 1.0)
        self.assertEqual(ids(m), [A])
        m.hello_received(NOW + 1.0, hello(A), ("10.0.0.66", 12345))
        self.assertEqual(m.dropped["address"], 1)


class GoodbyeTests(SynchronousTestCase):
    """A goodbye never removes a member whose record lives."""

    def test_goodbye_of_a_listed_member_is_refused(self) -> None:
        """A (forged) goodbye in a live member's name removes nothing."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=1), HOME)
        self.assertEqual(m.goodbye_received(NOW, bye(A, 10**9), HOME), [])
        self.assertEqual(ids(m), [A])
        self.assertEqual(m.dropped["live-goodbye"], 1)

    def test_deletion_after_leave_removes(self) -> None:
        """A clean stop: leave hellos, then the deleted record removes it."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=1), HOME)
        m.hello_received(NOW, hello(A, seq=2, eligible=False), HOME)
        listed(m)
        events = m.peer_left(NOW, A)
        self.assertEqual([type(e) for e in events[:1]], [Removed])
        self.assertEqual(ids(m), [])

    def test_goodbye_after_the_record_is_gone_removes(self) -> None:
        """A goodbye from the retained address once the record is gone counts."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=1), HOME)
        listed(m)
        m.goodbye_received(NOW, bye(A, 2), ("10.0.0.66", 12345))
        self.assertEqual(ids(m), [A])
        m.goodbye_received(NOW, bye(A, 2), HOME)
        self.assertEqual(ids(m), [])


class RemovedStaysRemovedTests(SynchronousTestCase):
    """A removed member comes back only with a new record or a newer hello."""

    def timed_out(self) -> Membership:
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=7, master=True), HOME)
        m.tick(NOW + SETTINGS.master_timeout + 0.01)
        self.assertEqual(ids(m), [])
        return m

    def test_replayed_hello_long_after_death_is_refused(self) -> None:
        """Long past node-discover's tombstone horizon, a replay stays refused."""
        m = self.timed_out()
        later = NOW + 60.0
        m.tick(later)
        m.hello_received(later, hello(A, seq=7, master=True), HOME)
        m.hello_received(later, hello(A, seq=3, master=True), HOME)
        self.assertEqual(ids(m), [])
        self.assertEqual(m.dropped["stale-seq"], 2)

    def test_unmarked_hello_of_a_removed_member_is_refused(self) -> None:
        """A hello without a sequence number cannot prove it is newer."""
        m = self.timed_out()
        m.hello_received(NOW + 60.0, hello(A, ours=False), HOME)
        self.assertEqual(ids(m), [])
        self.assertEqual(m.dropped["removed"], 1)

    def test_live_member_back_from_a_pause_is_accepted(self) -> None:
        """A newer sequence number (a paused, live node) is accepted again."""
        m = self.timed_out()
        m.hello_received(NOW + 60.0, hello(A, seq=8), HOME)
        self.assertEqual(ids(m), [A])

    def test_record_written_anew_starts_afresh(self) -> None:
        """A restarted node (a new record revision) is accepted from seq 1."""
        m = self.timed_out()
        listed(m, NOW + 5.0, peer=ListedPeer("10.0.0.5", 12345, (11, 2.0)))
        m.hello_received(NOW + 5.0, hello(A, seq=1), HOME)
        self.assertEqual(ids(m), [A])

    def test_restart_under_the_same_record_key_resets_the_sequence(self) -> None:
        """A member whose record changes revision while listed counts anew."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=50), HOME)
        listed(m, NOW + 0.1, peer=ListedPeer("10.0.0.5", 12345, (4, 2.0)))
        m.hello_received(NOW + 0.2, hello(A, seq=1, weight=5.0), HOME)
        self.assertEqual([x.weight for x in m.members], [5.0])

    def test_restart_seen_as_gone_then_back_resets_the_sequence(self) -> None:
        """A restart that a re-listing saw as "record gone, then a new one" (the
        deletion itself missed while the watch was down) counts anew: its hellos
        from seq 1 are heard, and a timeout of the old process's entry cannot
        leave a tombstone that refuses the new one."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=50), HOME)
        listed(m, NOW + 0.5)  # the listing after the outage: A's record is gone
        self.assertEqual(ids(m), [A])  # retained while its hellos may go on
        restarted = ListedPeer("10.0.0.5", 12345, (17, 2.0))
        listed(m, NOW + 1.0, peer=restarted)  # its new record
        m.hello_received(NOW + 1.1, hello(A, seq=1, weight=5.0), HOME)
        self.assertEqual([x.weight for x in m.members], [5.0])
        self.assertEqual(m.dropped["stale-seq"], 0)

    def test_restart_back_after_its_entry_timed_out_is_heard(self) -> None:
        """The same, when the old entry times out before the new process's first
        hello: the new record frees the id."""
        m = node()
        listed(m, peer=PEER)
        m.hello_received(NOW, hello(A, seq=50, master=True), HOME)
        listed(m, NOW + 0.5)
        listed(m, NOW + 1.0, peer=ListedPeer("10.0.0.5", 12345, (17, 2.0)))
        later = NOW + SETTINGS.master_timeout + 0.01
        m.tick(later)
        self.assertEqual(ids(m), [])
        m.hello_received(later, hello(A, seq=1), HOME)
        self.assertEqual(ids(m), [A])


class SealedBootTests(SynchronousTestCase):
    """With sealed hellos, a removed member's boot id keeps replays out for the
    seal's window, in any cluster, and a new boot (a restart) is let in."""

    def timed_out(self) -> Membership:
        m = Membership(ME, SETTINGS, started_at=100.0, replay_window=60.0)
        m.static_peers = True
        m.hello_received(NOW, hello(A, seq=7, master=True), HOME, boot=b"1" * 16)
        m.tick(NOW + SETTINGS.master_timeout + 0.01)
        self.assertEqual(ids(m), [])
        return m

    def test_replay_of_the_same_boot_within_the_window_is_refused(self) -> None:
        """Past node-discover's horizon but within the window: stale."""
        m = self.timed_out()
        m.tick(NOW + 30.0)
        m.hello_received(NOW + 30.0, hello(A, seq=6, master=True), HOME, b"1" * 16)
        self.assertEqual(ids(m), [])
        self.assertEqual(m.dropped["stale-seq"], 1)

    def test_new_boot_is_a_restart(self) -> None:
        """The same id from a new boot starts its sequence numbers again."""
        m = self.timed_out()
        m.hello_received(NOW + 3.0, hello(A, seq=1), HOME, b"2" * 16)
        self.assertEqual(ids(m), [A])

    def test_new_boot_of_a_live_member_resets_its_sequence(self) -> None:
        """A member restarted before it timed out is heard from its first hello."""
        m = Membership(ME, SETTINGS, started_at=100.0, replay_window=60.0)
        m.hello_received(NOW, hello(A, seq=50), HOME, boot=b"1" * 16)
        m.hello_received(NOW + 0.1, hello(A, seq=1, weight=5.0), HOME, b"2" * 16)
        self.assertEqual([x.weight for x in m.members], [5.0])

    def test_window_ends(self) -> None:
        """After the window the tombstone goes, as node-discover's does."""
        m = self.timed_out()
        m.tick(NOW + 70.0)
        m.hello_received(NOW + 70.0, hello(A, seq=6), HOME, b"1" * 16)
        self.assertEqual(ids(m), [A])
