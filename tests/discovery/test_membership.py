"""The membership state machine, rule by rule (node-discover-wire.md §2, §6, §7)."""

from __future__ import annotations

import math
from itertools import count

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from twistednode.discovery.membership import (
    EXTENSION_KEY,
    Added,
    Demotion,
    Event,
    HelloReceived,
    MastersConflict,
    MasterSeen,
    Membership,
    Promotion,
    Removed,
    SendHello,
)
from twistednode.discovery.settings import Settings, make_settings
from twistednode.discovery.wire import Envelope

SETTINGS = make_settings(epoch_ms=1732629600000, weight=0.0)
ME = "m0000000-0000-4000-8000-000000000000"
SRC = ("10.0.0.5", 12345)
_seq = count(1)


def hello(
    iid: str,
    *,
    master: bool = False,
    eligible: bool = True,
    weight: object = -1.0,
    ours: bool = True,
    seq: int | None = None,
    hw: int | None = None,
    idx: int | None = None,
    **extra: object,
) -> Envelope:
    """A hello from C{iid}; ours (with our marker and a fresh seq) by default."""
    data: dict[str, object] = {
        "isMaster": master,
        "isMasterEligible": eligible,
        "weight": weight,
        "address": "127.0.0.1",
    }
    if ours:
        data[EXTENSION_KEY] = {
            "v": 1,
            "seq": next(_seq) if seq is None else seq,
            "idx": idx,
            "view": hw,
            "hw": hw,
        }
    data.update(extra)
    return Envelope("hello", "pid-" + iid, iid, "host-" + iid, data)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def promotions(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, Promotion)]


def node(settings: Settings = SETTINGS, iid: str = ME) -> Membership:
    return Membership(iid, settings, started_at=100.0)


AFTER = 100.0 + SETTINGS.check_interval  # the first node-discover election


class HelloReceivedTests(SynchronousTestCase):
    """Receiver processing of accepted hellos (spec §2) and its events (§7)."""

    def test_event_order_for_new_master(self) -> None:
        """A new master gives added, master, helloReceived, then a hello back."""
        m = node()
        events = m.hello_received(100.1, hello("a", master=True), SRC)
        self.assertEqual(
            kinds(events), ["Added", "MasterSeen", "HelloReceived", "SendHello"]
        )
        self.assertEqual(events[-1], SendHello(SRC))
        received = events[2]
        assert isinstance(received, HelloReceived)
        self.assertTrue(received.is_new)
        self.assertIsNone(received.was_master)

    def test_own_iid_ignored(self) -> None:
        """A hello carrying our own iid is ignored and counted."""
        m = node()
        self.assertEqual(m.hello_received(100.1, hello(ME), SRC), [])
        self.assertEqual(m.members, ())
        self.assertEqual(m.dropped["own-instance"], 1)

    def test_receiver_overwrites_keys(self) -> None:
        """address, port, hostName, id and lastSeen come from the receiver."""
        m = node()
        m.hello_received(
            100.2, hello("a", address="9.9.9.9", port=1, id="evil", lastSeen=5), SRC
        )
        (member,) = m.members
        self.assertEqual((member.id, member.address, member.port), ("a", *SRC))
        self.assertEqual((member.host_name, member.last_seen), ("host-a", 100.2))
        for key in ("address", "port", "id", "lastSeen", "hostName"):
            self.assertNotIn(key, member.data)

    def test_merge_keeps_missing_keys(self) -> None:
        """Keys missing from a later hello keep their values; null clears them."""
        m = node()
        m.hello_received(100.1, hello("a", advertisement={"svc": "api"}), SRC)
        m.hello_received(100.2, hello("a"), SRC)
        self.assertEqual(m.members[0].advertisement, {"svc": "api"})
        m.hello_received(100.3, hello("a", advertisement=None), SRC)
        self.assertIsNone(m.members[0].advertisement)
        self.assertIn("advertisement", m.members[0].data)

    def test_master_event_on_transitions_only(self) -> None:
        """master is emitted when a node becomes master, not on every hello."""
        m = node()
        m.hello_received(100.1, hello("a"), SRC)
        events = m.hello_received(100.2, hello("a", master=True), SRC)
        self.assertEqual(kinds(events)[:2], ["MasterSeen", "HelloReceived"])
        events = m.hello_received(100.3, hello("a", master=True), SRC)
        self.assertEqual(kinds(events), ["HelloReceived"])

    def test_remote_demotion(self) -> None:
        """A remote demotion yields only helloReceived with wasMaster true."""
        m = node()
        m.hello_received(100.1, hello("a", master=True), SRC)
        events = m.hello_received(100.2, hello("a", master=False), SRC)
        received = [e for e in events if isinstance(e, HelloReceived)]
        self.assertEqual(len(received), 1)
        self.assertTrue(received[0].was_master)
        self.assertFalse(received[0].member.is_master)
        self.assertNotIn("Demotion", kinds(events))

    def test_js_truthiness_of_flags(self) -> None:
        """isMaster and isMasterEligible are tested as JavaScript does."""
        m = node()
        m.hello_received(100.1, hello("a", master={}, eligible="0"), SRC)  # type: ignore[arg-type]
        self.assertTrue(m.members[0].is_master)
        self.assertTrue(m.members[0].is_master_eligible)
        m.hello_received(100.2, hello("b", master=0, eligible=""), SRC)  # type: ignore[arg-type]
        self.assertFalse(m.members[1].is_master)
        self.assertFalse(m.members[1].is_master_eligible)

    def test_weight_is_js_number(self) -> None:
        """A member's weight is JS ToNumber of the field (absent is NaN)."""
        m = node()
        m.hello_received(100.1, hello("a", weight="0x10"), SRC)
        self.assertEqual(m.members[0].weight, 16.0)
        m.hello_received(100.1, hello("b", weight=[]), SRC)
        self.assertEqual(m.members[1].weight, 0.0)
        envelope = hello("c")
        assert isinstance(envelope.data, dict)
        del envelope.data["weight"]
        m.hello_received(100.1, envelope, SRC)
        self.assertTrue(math.isnan(m.members[2].weight))

    def test_stale_sequence_dropped(self) -> None:
        """A hello of ours with a seq not above the last one is dropped."""
        m = node()
        m.hello_received(100.1, hello("a", master=True, seq=5), SRC)
        for seq in (5, 4):
            self.assertEqual(
                m.hello_received(100.2, hello("a", master=False, seq=seq), SRC), []
            )
        self.assertTrue(m.members[0].is_master)
        self.assertEqual(m.dropped["stale-seq"], 2)

    def test_node_discover_hellos_have_no_sequence(self) -> None:
        """Hellos without our marker are never dropped as stale."""
        m = node()
        m.hello_received(100.1, hello("a", ours=False, master=True), SRC)
        m.hello_received(100.2, hello("a", ours=False, master=False), SRC)
        self.assertFalse(m.members[0].is_master)
        self.assertFalse(m.members[0].is_ours)

    def test_hello_data_must_be_object(self) -> None:
        """Hello data that is not an object is dropped, never a ghost record."""
        m = node()
        self.assertEqual(
            m.hello_received(100.1, Envelope("hello", None, "a", None, "x"), SRC), []
        )
        self.assertEqual(m.members, ())

    def test_source_port_updates(self) -> None:
        """A member's address follows the source of its latest hello."""
        m = node()
        m.hello_received(100.1, hello("a"), SRC)
        m.hello_received(100.2, hello("a"), ("10.0.0.6", 5))
        self.assertEqual((m.members[0].address, m.members[0].port), ("10.0.0.6", 5))


class CheckTests(SynchronousTestCase):
    """The check loop, steps 1-5 (spec §6), in node-discover mode (static peers)."""

    def setUp(self) -> None:
        self.m = node()
        self.m.static_peers = True

    def test_first_election_after_check_interval(self) -> None:
        """No election before checkInterval after the bind; then at once."""
        self.assertEqual(self.m.tick(100.0), [])
        self.assertEqual(self.m.tick(AFTER - 0.001), [])
        events = self.m.tick(AFTER)
        self.assertEqual(kinds(events), ["Promotion", "SendHello"])
        self.assertEqual(promotions(events), ["check"])
        self.assertTrue(self.m.is_master)
        self.assertEqual(self.m.master, ME)

    def test_bound_restarts_the_clock(self) -> None:
        """A re-bind starts afresh: not master, eligible, checkInterval to wait."""
        # The first election is checkInterval after the re-bind.
        self.m.promote()
        self.m.demote(permanent=True)
        self.m.bound(200.0)
        self.assertFalse(self.m.is_master)
        self.assertTrue(self.m.is_master_eligible)
        self.assertEqual(self.m.tick(201.9), [])
        self.assertEqual(promotions(self.m.tick(202.0)), ["check"])

    def test_removal_is_strict(self) -> None:
        """A non-master is removed only when now - lastSeen > nodeTimeout."""
        self.m.hello_received(101.0, hello("a"), SRC)
        self.assertNotIn("Removed", kinds(self.m.tick(103.0)))
        events = self.m.tick(103.0001)
        self.assertEqual(kinds(events)[0], "Removed")
        removed = events[0]
        assert isinstance(removed, Removed)
        self.assertEqual((removed.member.id, removed.reason), ("a", "timeout"))

    def test_master_uses_master_timeout(self) -> None:
        """A master record expires after masterTimeout, not nodeTimeout."""
        m = node(evolve(SETTINGS, master_timeout=5.0))
        m.static_peers = True
        m.hello_received(101.0, hello("a", master=True), SRC)
        self.assertEqual(m.tick(105.0), [])
        self.assertEqual(kinds(m.tick(106.01))[:2], ["Removed", "Promotion"])

    def test_master_count_is_strict(self) -> None:
        """At exactly masterTimeout a master is kept but no longer counted."""
        self.m.hello_received(101.0, hello("a", master=True, weight=5.0), SRC)
        events = self.m.tick(103.0)
        self.assertEqual(kinds(events), ["Promotion", "SendHello"])
        self.assertEqual(len(self.m.members), 1)

    def test_failover_order(self) -> None:
        """The run that removes the old master promotes: removed, promotion, hello."""
        self.m.hello_received(100.5, hello("a", master=True, weight=5.0), SRC)
        self.m.hello_received(100.5, hello("b", weight=-5.0), SRC)
        self.assertEqual(self.m.tick(102.4), [])
        self.m.hello_received(102.4, hello("b", weight=-5.0), SRC)
        events = self.m.tick(102.6)
        self.assertEqual(kinds(events), ["Removed", "Promotion", "SendHello"])

    def test_heavier_candidate_blocks(self) -> None:
        """An eligible non-master that beats us blocks our promotion."""
        self.m.hello_received(101.0, hello("a", weight=1.0), SRC)
        self.assertEqual(self.m.tick(AFTER), [])
        self.assertFalse(self.m.is_master)

    def test_ineligible_or_lighter_do_not_block(self) -> None:
        """Heavier non-eligible nodes and lighter nodes do not block us."""
        self.m.hello_received(101.0, hello("a", weight=1.0, eligible=False), SRC)
        self.m.hello_received(101.0, hello("b", weight=-1.0), SRC)
        self.assertEqual(promotions(self.m.tick(AFTER)), ["check"])

    def test_no_preemption(self) -> None:
        """A lighter live master keeps us (heavier) from promoting."""
        self.m.hello_received(101.0, hello("a", master=True, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(AFTER), [])

    def test_demotion_on_heavier_master(self) -> None:
        """A master demotes on seeing a heavier live master, and says so at once."""
        self.m.tick(AFTER)
        self.m.hello_received(102.1, hello("a", master=True, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(102.2), [])
        events = self.m.hello_received(102.3, hello("b", master=True, weight=1.0), SRC)
        self.assertIn("Demotion", kinds(events))
        self.assertEqual(kinds(events)[-1], "SendHello")
        self.assertFalse(self.m.is_master)
        self.assertTrue(self.m.is_master_eligible)
        self.assertEqual(self.m.tick(102.4), [])  # no promotion right after

    def test_masters_required_two(self) -> None:
        """With mastersRequired 2, the two heaviest eligible nodes are masters."""
        m = node(evolve(SETTINGS, masters_required=2))
        m.static_peers = True
        m.hello_received(101.0, hello("a", master=True, weight=1.0), SRC)
        m.hello_received(101.0, hello("b", weight=-1.0), SRC)
        self.assertEqual(promotions(m.tick(AFTER)), ["check"])
        events = m.hello_received(102.1, hello("c", master=True, weight=2.0), SRC)
        self.assertIn("Demotion", kinds(events))
        self.assertEqual(m.tick(102.2), [])

    def test_nan_weight_never_beats(self) -> None:
        """A peer whose weight is NaN after ToNumber never counts as heavier."""
        self.m.hello_received(101.0, hello("a", weight="heavy"), SRC)
        self.m.hello_received(101.0, hello("b", weight={"w": 9}), SRC)
        self.assertEqual(promotions(self.m.tick(AFTER)), ["check"])

    def test_tie_yields_to_node_discover(self) -> None:
        """On equal weights we always yield to a node-discover peer."""
        self.m.hello_received(101.0, hello("z", weight=0.0, ours=False), SRC)
        self.assertEqual(self.m.tick(AFTER), [])
        self.m.promote()
        events = self.m.hello_received(
            102.1, hello("z", weight=0.0, ours=False, master=True), SRC
        )
        self.assertIn("Demotion", kinds(events))

    def test_tie_among_ours_by_iid(self) -> None:
        """On equal weights among our nodes, the smaller iid wins."""
        self.m.hello_received(101.0, hello("z-bigger", weight=0.0), SRC)
        self.assertEqual(promotions(self.m.tick(AFTER)), ["check"])
        other = node(iid="z-bigger")
        other.static_peers = True
        other.hello_received(101.0, hello(ME, weight=0.0), SRC)
        self.assertEqual(other.tick(AFTER), [])

    def test_removed_node_comes_back(self) -> None:
        """A node removed earlier is added again by its next hello."""
        self.m.hello_received(100.5, hello("a"), SRC)
        self.m.tick(103.0)
        self.assertEqual(self.m.members, ())
        events = self.m.hello_received(103.1, hello("a"), SRC)
        self.assertEqual(kinds(events)[0], "Added")

    def test_client_never_promotes(self) -> None:
        """A client-only node is never eligible and never promotes."""
        m = node(evolve(SETTINGS, client=True))
        self.assertFalse(m.is_master_eligible)
        self.assertEqual(m.tick(AFTER + 10), [])
        self.assertFalse(m.hello_data()["isMasterEligible"])
        self.assertRaises(ValueError, m.promote)


class ListingWaitTests(SynchronousTestCase):
    """With a registry, no promotion before its first view (a start in an outage)."""

    def setUp(self) -> None:
        self.m = Membership(ME, SETTINGS, started_at=100.0, listing_wait=30.0)

    def test_no_promotion_before_the_first_listing(self) -> None:
        self.assertFalse(self.m.listed)
        self.assertEqual(promotions(self.m.tick(AFTER)), [])
        self.assertEqual(promotions(self.m.tick(129.9)), [])
        self.assertTrue(self.m.waiting_for_listing(129.9))
        self.assertFalse(self.m.is_master)

    def test_wait_is_bounded_and_the_promotion_says_unlisted(self) -> None:
        self.assertEqual(self.m.next_deadline(AFTER + 0.001), 130.0)
        self.assertEqual(promotions(self.m.tick(130.0)), ["unlisted"])
        self.assertTrue(self.m.is_master)

    def test_a_listing_ends_the_wait(self) -> None:
        events = self.m.registry_view(101.0, {}, view_index=7, own_index=7)
        self.assertTrue(self.m.listed)
        self.assertFalse(self.m.waiting_for_listing(101.0))
        events += self.m.tick(AFTER)
        self.assertEqual(promotions(events), ["early"])

    def test_without_a_registry_nothing_waits(self) -> None:
        m = node()
        self.assertTrue(m.listed)
        self.assertEqual(promotions(m.tick(AFTER)), ["check"])


class ConflictTests(SynchronousTestCase):
    """The warning for more masters than required (spec §11)."""

    def test_reported_once_per_episode(self) -> None:
        """Two masters for over masterTimeout give one MastersConflict."""
        m = node()
        m.static_peers = True
        m.tick(AFTER)
        found: list[MastersConflict] = []
        for step in range(40):
            now = AFTER + 0.1 * step
            m.hello_received(now, hello("light", master=True, weight=-1.0), SRC)
            found += [e for e in m.tick(now) if isinstance(e, MastersConflict)]
        self.assertEqual(len(found), 1)
        self.assertEqual(found[0].masters, tuple(sorted((ME, "light"))))
        self.assertEqual(found[0].since, AFTER)
        m.demote()
        self.assertEqual(m.tick(AFTER + 4.1), [])
        m.promote()
        self.assertEqual(m.tick(AFTER + 4.2), [])  # a new episode starts

    def test_no_conflict_with_masters_required(self) -> None:
        """Up to mastersRequired masters is no conflict."""
        m = node(evolve(SETTINGS, masters_required=2))
        m.promote()
        for step in range(40):
            now = AFTER + 0.1 * step
            m.hello_received(now, hello("other", master=True, weight=-1.0), SRC)
            self.assertEqual(m.tick(now), [])


class ManualTests(SynchronousTestCase):
    """promote() and demote(permanent)."""

    def test_promote(self) -> None:
        """promote() makes us master unconditionally and sends a hello."""
        m = node()
        m.hello_received(100.1, hello("a", master=True, weight=9.0), SRC)
        events = m.promote()
        self.assertEqual(kinds(events), ["Promotion", "SendHello"])
        self.assertEqual(promotions(events), ["manual"])
        self.assertTrue(m.is_master)
        self.assertEqual(m.master, "a")  # the heavier of the two masters

    def test_demote_temporary_is_undone(self) -> None:
        """A non-permanent demotion of the heaviest node is undone at its next check."""
        m = node()
        m.static_peers = True
        m.tick(AFTER)
        events = m.demote()
        self.assertEqual(kinds(events), ["Demotion", "SendHello"])
        self.assertTrue(m.is_master_eligible)
        self.assertEqual(promotions(m.tick(AFTER + 0.1)), ["check"])

    def test_demote_permanent(self) -> None:
        """A permanent demotion makes us ineligible for good."""
        m = node()
        m.promote()
        m.demote(permanent=True)
        self.assertFalse(m.is_master)
        self.assertFalse(m.is_master_eligible)
        self.assertEqual(m.tick(AFTER + 10), [])
        demotion = m.demote(permanent=True)[0]
        assert isinstance(demotion, Demotion)
        self.assertFalse(demotion.me["isMasterEligible"])


class HelloDataTests(SynchronousTestCase):
    """What we send."""

    def test_fields(self) -> None:
        """Hellos carry the four node-discover fields and our marker."""
        m = node()
        data = m.hello_data()
        self.assertEqual(
            list(data),
            ["isMaster", "isMasterEligible", "weight", "address", EXTENSION_KEY],
        )
        self.assertEqual(data["address"], "127.0.0.1")
        self.assertEqual(data["weight"], 0.0)
        self.assertEqual(
            data[EXTENSION_KEY],
            {"v": 1, "seq": 1, "idx": None, "view": None, "hw": None},
        )

    def test_extension_fields_ride_in_the_marker(self) -> None:
        """Other parts' fields go into our extension key; None takes one out, and
        the election's own fields cannot be replaced."""
        m = node()
        m.set_extension("tx", "http://127.0.0.1:5000")
        marker = m.hello_data()[EXTENSION_KEY]
        self.assertEqual(marker["tx"], "http://127.0.0.1:5000")  # type: ignore[index]
        m.set_extension("tx", None)
        self.assertNotIn("tx", m.hello_data()[EXTENSION_KEY])  # type: ignore[operator]
        self.assertRaises(ValueError, m.set_extension, "seq", 7)

    def test_sequence_increases(self) -> None:
        """Every hello and goodbye takes the next seq; me() does not."""
        m = node()
        self.assertEqual(m.hello_data()[EXTENSION_KEY]["seq"], 1)  # type: ignore[index]
        self.assertEqual(m.bye_data()[EXTENSION_KEY]["seq"], 2)  # type: ignore[index]
        self.assertEqual(m.me()[EXTENSION_KEY]["seq"], 2)  # type: ignore[index]
        self.assertEqual(m.hello_data()[EXTENSION_KEY]["seq"], 3)  # type: ignore[index]

    def test_advertisement(self) -> None:
        """The advertisement is sent once set (even null); non-JSON is refused."""
        m = node()
        self.assertNotIn("advertisement", m.hello_data())
        m.set_advertisement(None)
        self.assertIsNone(m.hello_data()["advertisement"])
        m.set_advertisement({"svc": "api"})
        self.assertEqual(m.hello_data()["advertisement"], {"svc": "api"})
        self.assertRaises(ValueError, m.set_advertisement, {"x": math.nan})
        self.assertRaises(ValueError, m.set_advertisement, {1, 2})

    def test_heard_watermark(self) -> None:
        """hw is the highest index below the first registry member not yet heard."""
        m = node()
        m.registry_view(100.0, {ME: 7, "a": 3, "b": 5, "c": 9}, 10, 7)
        marker = m.hello_data()[EXTENSION_KEY]
        self.assertEqual(marker, {"v": 1, "seq": 1, "idx": 7, "view": 10, "hw": 2})  # type: ignore[comparison-overlap]
        m.hello_received(100.1, hello("a"), SRC)
        self.assertEqual(m.me()[EXTENSION_KEY]["hw"], 4)  # type: ignore[index]
        m.hello_received(100.1, hello("b"), SRC)
        m.hello_received(100.1, hello("c"), SRC)
        self.assertEqual(m.me()[EXTENSION_KEY]["hw"], 10)  # type: ignore[index]

    def test_acknowledgements(self) -> None:
        """When hw comes to cover members, each gets a hello at once."""
        m = node()
        m.hello_received(100.1, hello("b"), ("10.0.0.2", 2))
        events = m.registry_view(100.2, {ME: 7, "a": 3, "b": 5}, 7, 7)
        self.assertEqual(events, [])  # a (3) unheard: hw = 2
        events = m.hello_received(100.3, hello("a"), ("10.0.0.1", 1))
        sends = [e for e in events if isinstance(e, SendHello)]
        self.assertEqual(
            sends, [SendHello(("10.0.0.1", 1)), SendHello(("10.0.0.2", 2))]
        )


class PeerLeftTests(SynchronousTestCase):
    """Goodbyes and registry deletions (spec §6.2 item 2)."""

    def setUp(self) -> None:
        self.m = node()
        self.m.static_peers = True
        self.m.tick(AFTER)
        self.m.demote()  # run the rest with us lighter than "a"
        self.m.hello_received(102.0, hello("a", master=True, weight=1.0, seq=10), SRC)
        self.assertEqual(self.m.tick(102.1), [])

    def bye(self, iid: str, seq: int) -> Envelope:
        return Envelope(
            "twistednode.bye", None, iid, None, {EXTENSION_KEY: {"v": 1, "seq": seq}}
        )

    def test_goodbye_removes_and_elects_at_once(self) -> None:
        """A goodbye removes the master at once and we promote in the same call."""
        events = self.m.goodbye_received(102.2, self.bye("a", 11))
        self.assertEqual(kinds(events), ["Removed", "Promotion", "SendHello"])
        removed = events[0]
        assert isinstance(removed, Removed)
        self.assertEqual(removed.reason, "left")

    def test_leave_hello_then_check(self) -> None:
        """A leave hello (ineligible) re-runs the election at once."""
        events = self.m.hello_received(
            102.2, hello("a", weight=1.0, eligible=False, seq=11), SRC
        )
        self.assertEqual(promotions(events), ["check"])

    def test_stale_goodbye_ignored(self) -> None:
        """A goodbye older than the latest hello is ignored."""
        self.assertEqual(self.m.goodbye_received(102.2, self.bye("a", 10)), [])
        self.assertEqual(len(self.m.members), 1)

    def test_hellos_after_goodbye_dropped(self) -> None:
        """Delayed hellos that were sent before the goodbye do not re-add it."""
        self.m.goodbye_received(102.2, self.bye("a", 12))
        self.assertEqual(self.m.hello_received(102.3, hello("a", seq=11), SRC), [])
        self.assertEqual(self.m.members, ())

    def test_bad_goodbye(self) -> None:
        """A goodbye without our marker is dropped and counted."""
        bad = Envelope("twistednode.bye", None, "a", None, {"x": 1})
        self.assertEqual(self.m.goodbye_received(102.2, bad), [])
        self.assertEqual(self.m.dropped["bad-bye"], 1)

    def test_registry_deletion_of_eligible_is_ignored(self) -> None:
        """A deleted registry record may be a lease expiry: no removal if eligible."""
        self.assertEqual(self.m.peer_left(102.2, "a"), [])
        self.assertEqual(len(self.m.members), 1)
        self.assertFalse(self.m.is_master)

    def test_registry_deletion_after_leave(self) -> None:
        """A deleted record of a node that said it left is removed at once."""
        self.m.hello_received(102.2, hello("a", weight=1.0, eligible=False), SRC)
        events = self.m.peer_left(102.3, "a")
        self.assertEqual(kinds(events), ["Removed"])

    def test_unknown_member(self) -> None:
        """peer_left for an unknown id does nothing."""
        self.assertEqual(self.m.peer_left(102.2, "nobody"), [])


class EarlyElectionTests(SynchronousTestCase):
    """The registry-based early election (membership module docstring)."""

    def setUp(self) -> None:
        self.m = node()

    def test_alone_in_registry(self) -> None:
        """The only member of the registry promotes at early_delay after the bind."""
        self.assertEqual(self.m.registry_view(100.1, {ME: 5}, 5, 5), [])
        self.assertEqual(self.m.tick(100.49), [])
        self.assertEqual(promotions(self.m.tick(100.5)), ["early"])

    def test_not_registered(self) -> None:
        """Without our own record there is no early election."""
        self.m.registry_view(100.1, {"a": 4}, 4, None)
        self.m.hello_received(100.2, hello("a", hw=9, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(101.0), [])
        self.assertEqual(promotions(self.m.tick(AFTER)), ["check"])

    def test_waits_for_acknowledgement(self) -> None:
        """Every registry member must have heard us (hw >= own_index) first."""
        self.m.registry_view(100.1, {ME: 5, "a": 4}, 5, 5)
        self.m.hello_received(100.2, hello("a", hw=4, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(101.0), [])
        events = self.m.hello_received(100.2, hello("a", hw=5, weight=-1.0), SRC)
        self.assertEqual(promotions(events), [])  # before early_delay
        self.assertEqual(promotions(self.m.tick(101.0)), ["early"])

    def test_view_alone_is_not_enough(self) -> None:
        """Knowing us from the registry is not an acknowledgement."""
        # The hole in a view-based rule: "a" has us in its registry view but has not
        # heard us yet. Past its own checkInterval it may promote at any moment (we are
        # not in its table), so its non-master hello must not let us promote.
        self.m.registry_view(100.1, {ME: 5, "a": 4}, 5, 5)
        ack_by_view_only = hello("a", hw=3, weight=-1.0)
        assert isinstance(ack_by_view_only.data, dict)
        ack_by_view_only.data[EXTENSION_KEY]["view"] = 5  # type: ignore[index]
        self.m.hello_received(100.2, ack_by_view_only, SRC)
        self.assertEqual(self.m.tick(101.0), [])
        other = node(iid="a")
        other.bound(90.0)
        other.registry_view(100.1, {ME: 5, "a": 4}, 5, 4)
        self.assertEqual(promotions(other.tick(101.0)), ["check"])

    def test_dead_member_falls_back(self) -> None:
        """A registry member that never answers delays us to checkInterval only."""
        self.m.registry_view(100.1, {ME: 5, "dead": 2}, 5, 5)
        self.assertEqual(self.m.tick(AFTER - 0.01), [])
        self.assertEqual(promotions(self.m.tick(AFTER)), ["check"])

    def test_heavier_candidate_still_blocks(self) -> None:
        """Step 5 still applies: a heavier eligible member blocks us."""
        self.m.registry_view(100.1, {ME: 5, "a": 4}, 5, 5)
        self.m.hello_received(100.2, hello("a", hw=5, weight=1.0), SRC)
        self.assertEqual(self.m.tick(101.0), [])

    def test_live_master_blocks(self) -> None:
        """A live master blocks us, as in step 5."""
        self.m.registry_view(100.1, {ME: 5, "a": 4}, 5, 5)
        self.m.hello_received(100.2, hello("a", hw=5, weight=-1.0, master=True), SRC)
        self.assertEqual(self.m.tick(101.0), [])

    def test_static_peers_disable(self) -> None:
        """With static peers we run node-discover timing."""
        self.m.static_peers = True
        self.m.registry_view(100.1, {ME: 5}, 5, 5)
        self.assertEqual(self.m.tick(101.0), [])
        self.assertFalse(self.m.early_election_possible)

    def test_node_discover_peer_disables(self) -> None:
        """One hello without our marker disables the early election for good."""
        self.m.registry_view(100.1, {ME: 5}, 5, 5)
        self.m.hello_received(100.2, hello("z", ours=False, weight=-1.0), SRC)
        self.m.tick(103.0)  # z times out
        self.assertEqual(self.m.members, ())
        self.m.bound(103.0)
        self.assertEqual(self.m.tick(104.0), [])

    def test_unregistered_member_blocks(self) -> None:
        """An eligible member of our table that is not in the registry blocks us."""
        self.m.registry_view(100.1, {ME: 5}, 5, 5)
        self.m.hello_received(100.2, hello("late", hw=9, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(101.0), [])
        self.m.registry_view(100.3, {ME: 5, "late": 6}, 6, 5)
        self.assertEqual(promotions(self.m.tick(101.1)), ["early"])

    def test_registered_clients_do_not_block(self) -> None:
        """Client-only members, named as such by the registry, are not waited for."""
        self.m.registry_view(100.1, {ME: 5, "client": 2, "a": 4}, 5, 5)
        self.m.hello_received(100.2, hello("a", hw=5, weight=-1.0), SRC)
        self.assertEqual(self.m.tick(101.0), [])
        self.m.registry_view(100.3, {ME: 5, "client": 2, "a": 4}, 5, 5, {"client"})
        self.assertEqual(self.m.me()[EXTENSION_KEY]["hw"], 5)  # type: ignore[index]
        self.assertEqual(promotions(self.m.tick(101.0)), ["early"])

    def test_settings_can_disable(self) -> None:
        """early_election=False and mastersRequired > 1 disable the early rule."""
        for settings in (
            evolve(SETTINGS, early_election=False),
            evolve(SETTINGS, masters_required=2),
        ):
            m = node(settings)
            m.registry_view(100.1, {ME: 5}, 5, 5)
            self.assertEqual(m.tick(101.0), [])
            self.assertEqual(promotions(m.tick(AFTER)), ["check"])

    def test_immediate_on_acknowledgement(self) -> None:
        """After early_delay, the acknowledging hello itself triggers the promotion."""
        self.m.registry_view(100.1, {ME: 5, "a": 4}, 5, 5)
        self.m.hello_received(100.2, hello("a", hw=4, weight=-1.0), SRC)
        events = self.m.hello_received(100.6, hello("a", hw=5, weight=-1.0), SRC)
        self.assertEqual(promotions(events), ["early"])

    def test_registry_view_validation(self) -> None:
        """Bad indices in a registry view are refused."""
        self.assertRaises(ValueError, self.m.registry_view, 100.1, {"a": "4"}, 5, 5)
        self.assertRaises(ValueError, self.m.registry_view, 100.1, {}, None, 5)
        self.assertRaises(ValueError, self.m.registry_view, 100.1, {}, 5, 5.5)


class MasterPropertyTests(SynchronousTestCase):
    """Membership.master and members."""

    def test_heaviest_master(self) -> None:
        """With several masters, master is the heaviest; ties go to node-discover."""
        m = node()
        self.assertIsNone(m.master)
        m.hello_received(100.1, hello("a", master=True, weight=1.0), SRC)
        m.hello_received(100.1, hello("b", master=True, weight=2.0), SRC)
        self.assertEqual(m.master, "b")
        m.hello_received(100.1, hello("c", master=True, weight=2.0, ours=False), SRC)
        self.assertEqual(m.master, "c")
        m.hello_received(100.1, hello("d", master=True, weight="x"), SRC)
        self.assertEqual(m.master, "c")

    def test_members_are_values(self) -> None:
        """members returns frozen snapshots that later hellos do not change."""
        m = node()
        m.hello_received(100.1, hello("a", advertisement=1), SRC)
        before = m.members
        m.hello_received(100.2, hello("a", advertisement=2), SRC)
        self.assertEqual(before[0].advertisement, 1)
        self.assertEqual(m.member("a").advertisement, 2)  # type: ignore[union-attr]
        self.assertIsNone(m.member("zz"))
        self.assertIsInstance(before[0], type(m.members[0]))

    def test_event_values(self) -> None:
        """Event values expose the member, source and envelope."""
        m = node()
        envelope = hello("a", master=True)
        added, master, received, _send = m.hello_received(100.1, envelope, SRC)
        assert isinstance(added, Added) and isinstance(master, MasterSeen)
        assert isinstance(received, HelloReceived)
        self.assertEqual((added.source, added.envelope), (SRC, envelope))
        self.assertEqual(master.member.id, "a")


class NextDeadlineTests(SynchronousTestCase):
    """When the adapter must run the check: the times at which tick() can act."""

    def test_election_phases_then_member_timeouts(self) -> None:
        """First the early and normal election phases, then each member's timeout."""
        m = node()
        self.assertEqual(m.next_deadline(100.0), 100.0 + SETTINGS.early_delay)
        self.assertEqual(m.next_deadline(100.6), AFTER)
        self.assertIsNone(m.next_deadline(AFTER + 1))
        m.hello_received(103.0, hello("a"), SRC)
        self.assertEqual(m.next_deadline(103.0), 103.0 + SETTINGS.node_timeout)

    def test_a_tick_before_the_deadline_removes_nothing(self) -> None:
        """Between deadlines a tick finds nothing to do; just after one, it acts."""
        m = node()
        m.hello_received(103.0, hello("a"), SRC)
        deadline = m.next_deadline(103.0)
        assert deadline is not None
        self.assertNotIn("Removed", kinds(m.tick(deadline)))
        self.assertIn("Removed", kinds(m.tick(deadline + 0.001)))
        self.assertIsNone(m.next_deadline(deadline + 0.001))

    def test_master_uses_master_timeout(self) -> None:
        """A master member's deadline is its last hello plus masterTimeout."""
        settings = make_settings(
            epoch_ms=1732629600000, weight=0.0, node_timeout=2.0, master_timeout=3.0
        )
        m = node(settings)
        m.hello_received(103.0, hello("a", master=True), SRC)
        self.assertEqual(m.next_deadline(103.0), 106.0)
