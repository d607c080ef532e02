"""The leased election's state machine: terms, deadlines, epochs, and safety."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.harness.leasesim import make_simulation, overlaps
from twistednode.election.lease import (
    Campaign,
    Elected,
    Holder,
    LeaseElection,
    MasterChanged,
    Renew,
    Resign,
    SteppedDown,
    default_margin,
)

TTL = 2.0


def elected(now: float = 0.0, epoch: int = 7) -> LeaseElection:
    """A node that listed a vacancy at C{now}, campaigned and won C{epoch}."""
    election = LeaseElection("me", TTL)
    [campaign] = [a for a in election.observed(now, None, 1) if isinstance(a, Campaign)]
    election.campaign_won(now + 0.01, campaign.token, epoch)
    return election


class CampaignTests(SynchronousTestCase):
    """A node campaigns only for a vacancy it has seen, and wins by creating."""

    def test_vacancy_starts_a_campaign(self) -> None:
        """A listing without a master key makes an eligible node campaign at once."""
        election = LeaseElection("me", TTL)
        self.assertEqual(election.observed(5.0, None, 3), [Campaign(1)])

    def test_head_start_delays_the_campaign(self) -> None:
        """A lighter node campaigns only after its head start."""
        election = LeaseElection("me", TTL)
        self.assertEqual(election.observed(5.0, None, 3, head_start=0.05), [])
        self.assertEqual(election.next_deadline(), 5.05)
        self.assertEqual(election.tick(5.05), [Campaign(1)])

    def test_no_campaign_before_listing(self) -> None:
        """A node that has never seen the registry never campaigns or leads."""
        election = LeaseElection("me", TTL)
        self.assertEqual(election.tick(100.0), [])
        self.assertIsNone(election.next_deadline())
        self.assertFalse(election.is_master(100.0))

    def test_held_key_means_waiting(self) -> None:
        """Someone else's key: no campaign, and the holder is reported."""
        election = LeaseElection("me", TTL)
        other = Holder("other", 4)
        self.assertEqual(election.observed(1.0, other, 4), [MasterChanged(other)])
        self.assertIsNone(election.next_deadline())

    def test_client_never_campaigns(self) -> None:
        """A node that is not eligible watches but never campaigns."""
        election = LeaseElection("me", TTL, eligible=False)
        self.assertEqual(election.observed(1.0, None, 2), [])
        self.assertEqual(election.tick(10.0), [])

    def test_win_starts_a_valid_term(self) -> None:
        """The create made the key: master, with the created index as epoch."""
        election = LeaseElection("me", TTL)
        [campaign] = election.observed(1.0, None, 2)
        assert isinstance(campaign, Campaign)
        actions = election.campaign_won(1.2, campaign.token, 9)
        self.assertEqual(actions, [MasterChanged(Holder("me", 9)), Elected(9)])
        self.assertTrue(election.is_master(1.2))
        self.assertEqual(election.epoch, 9)

    def test_lost_race_waits_for_the_watch(self) -> None:
        """RecordExists: no term, no retry until the registry shows a vacancy."""
        election = LeaseElection("me", TTL)
        [campaign] = election.observed(1.0, None, 2)
        assert isinstance(campaign, Campaign)
        self.assertEqual(election.campaign_lost(1.1, campaign.token), [])
        self.assertFalse(election.is_master(1.1))
        self.assertIsNone(election.next_deadline())

    def test_unreachable_registry_retries(self) -> None:
        """A campaign without an answer is sent again after the retry delay."""
        election = LeaseElection("me", TTL, retry=0.5)
        [campaign] = election.observed(1.0, None, 2)
        assert isinstance(campaign, Campaign)
        self.assertEqual(election.campaign_failed(1.6, campaign.token), [])
        self.assertEqual(election.tick(2.1), [Campaign(2)])

    def test_late_answer_to_an_old_campaign_is_ignored(self) -> None:
        """An answer carrying an old token starts no term."""
        election = LeaseElection("me", TTL, retry=0.5)
        election.observed(1.0, None, 2)
        election.campaign_failed(1.6, 1)
        election.tick(2.1)  # campaign 2 in flight
        self.assertEqual(election.campaign_won(2.2, 1, 5), [])
        self.assertFalse(election.is_master(2.2))


class TermTests(SynchronousTestCase):
    """A term is valid until the last accepted send + TTL - margin."""

    def test_deadline_counts_from_the_send_time(self) -> None:
        """The term ends TTL - margin after the campaign was sent, not answered."""
        election = elected(now=0.0)
        margin = default_margin(TTL)
        self.assertTrue(election.is_master(TTL - margin - 0.001))
        self.assertFalse(election.is_master(TTL - margin))

    def test_is_master_reads_the_clock(self) -> None:
        """After a pause is_master is False before any tick has run."""
        election = elected(now=0.0)
        self.assertFalse(election.is_master(60.0))
        self.assertEqual(election.valid_for(60.0), 0.0)

    def test_renewals_are_due_every_third_of_the_ttl(self) -> None:
        """The first renewal is due TTL/3 after the campaign was sent."""
        election = elected(now=0.0)
        self.assertAlmostEqual(election.next_deadline() or 0, TTL / 3)
        self.assertEqual(election.tick(TTL / 3), [Renew(1)])

    def test_renewal_extends_from_its_send_time(self) -> None:
        """An accepted renewal moves the deadline to its send time + TTL - margin."""
        election = elected(now=0.0)
        election.tick(1.0)  # Renew(1) sent at 1.0
        election.renewed(1.5, 1)
        margin = default_margin(TTL)
        self.assertTrue(election.is_master(1.0 + TTL - margin - 0.001))
        self.assertFalse(election.is_master(1.0 + TTL - margin))

    def test_deadline_without_renewal_steps_down(self) -> None:
        """The deadline passes: a SteppedDown "expired", and a renewal is tried."""
        election = elected(now=0.0)
        election.tick(TTL / 3)  # Renew(1) in flight
        election.renew_failed(TTL / 3 + 0.1, 1)
        actions = election.tick(TTL)
        self.assertIn(SteppedDown(7, "expired"), actions)
        self.assertFalse(election.is_master(TTL))

    def test_renewal_after_expiry_continues_the_term(self) -> None:
        """A renewal that gets through after the deadline re-elects, same epoch."""
        election = elected(now=0.0)
        election.tick(TTL / 3)
        election.renew_failed(TTL / 3 + 0.1, 1)
        actions = election.tick(TTL)
        [renew] = [a for a in actions if isinstance(a, Renew)]
        self.assertEqual(election.renewed(TTL + 0.1, renew.token), [Elected(7)])

    def test_lost_key_ends_the_term_at_once(self) -> None:
        """A renewal that finds the key gone or someone else's ends the term."""
        election = elected(now=0.0)
        election.tick(TTL / 3)
        self.assertEqual(election.renew_lost(0.7, 1), [SteppedDown(7, "lost")])
        self.assertFalse(election.is_master(0.7))

    def test_watched_delete_ends_the_term(self) -> None:
        """The watch shows the key deleted (by hand): the term is over."""
        election = elected(now=0.0)
        actions = election.observed(0.5, None, 20)
        self.assertIn(SteppedDown(7, "lost"), actions)
        self.assertIn(MasterChanged(None), actions)

    def test_stale_listing_cannot_end_a_newer_term(self) -> None:
        """An observation older than our create (an in-flight listing) is ignored."""
        election = elected(now=0.0, epoch=7)
        self.assertEqual(election.observed(0.5, None, 3), [])
        self.assertTrue(election.is_master(0.5))

    def test_listing_after_a_registry_wipe_counts(self) -> None:
        """A listing asked for after we learned a higher index is a wiped registry:
        its vacancy ends our term and starts a campaign."""
        election = elected(now=0.0, epoch=7)
        actions = election.observed(0.9, None, 2, asked_at=0.8)
        self.assertIn(SteppedDown(7, "lost"), actions)
        self.assertIn(Campaign(2), actions)

    def test_resign_gives_the_key_up(self) -> None:
        """Resign: SteppedDown "resigned", a guarded delete, and no more campaigns."""
        election = elected(now=0.0)
        self.assertEqual(election.resign(0.5), [SteppedDown(7, "resigned"), Resign(7)])
        self.assertEqual(election.observed(0.6, None, 30), [MasterChanged(None)])

    def test_step_down_stays_a_candidate(self) -> None:
        """step_down resigns the key but campaigns again on the next vacancy."""
        election = elected(now=0.0)
        self.assertEqual(
            election.step_down(0.5), [SteppedDown(7, "resigned"), Resign(7)]
        )
        actions = election.observed(0.6, None, 30)
        self.assertIn(Campaign(2), actions)

    def test_bad_ttl_refused(self) -> None:
        """A TTL that is not positive, or a margin not below it, is a ValueError."""
        self.assertRaises(ValueError, LeaseElection, "me", 0.0)
        self.assertRaises(ValueError, LeaseElection, "me", 2.0, margin=2.0)


class SafetyTests(SynchronousTestCase):
    """Never two valid terms at once, whatever the delays, losses, pauses, drift."""

    @settings(max_examples=300, deadline=None)
    @given(
        seed=st.integers(0, 2**32),
        nodes=st.integers(2, 5),
        ttl=st.sampled_from([2.0, 3.0, 5.0]),
        pause_rate=st.sampled_from([0.0, 0.1, 0.5]),
        drift=st.sampled_from([0.0, 0.001, 0.02]),
    )
    def test_no_two_masters(
        self, seed: int, nodes: int, ttl: float, pause_rate: float, drift: float
    ) -> None:
        """Mastership intervals of different nodes never overlap in real time."""
        simulation = make_simulation(seed, nodes, ttl, None, drift, pause_rate)
        simulation.run()
        self.assertEqual(overlaps(simulation.nodes), [])

    @settings(max_examples=100, deadline=None)
    @given(seed=st.integers(0, 2**32))
    def test_someone_leads_without_faults(self, seed: int) -> None:
        """Without losses, pauses or step-downs one master leads nearly all the time,
        from the first listing on (liveness)."""
        simulation = make_simulation(seed, 3, 2.0, None, 0.0, 0.0, horizon=20.0)
        simulation.drop = 0.0
        simulation.max_delay = 0.05
        simulation.kicks = False
        simulation.run()
        led = sum(
            end - start for node in simulation.nodes for _, start, end in node.terms
        )
        self.assertGreater(led, 18.0)

    def test_without_margin_drift_gives_two_masters(self) -> None:
        """The checker can fail: with no margin and fast clocks, terms overlap."""
        found = []
        for seed in range(300):
            simulation = make_simulation(seed, 5, 2.0, 0.0, 0.5, 0.0)
            simulation.drop = 0.5
            simulation.run()
            found += overlaps(simulation.nodes)
        self.assertNotEqual(found, [])

    def test_margin_covers_drift_under_heavy_loss(self) -> None:
        """The same runs with the default margin and 2 % drift: no overlap."""
        for seed in range(300):
            simulation = make_simulation(seed, 5, 2.0, None, 0.02, 0.0)
            simulation.drop = 0.5
            simulation.run()
            self.assertEqual(overlaps(simulation.nodes), [], seed)
