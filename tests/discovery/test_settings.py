"""Discovery settings: node-discover defaults and validation (spec §5)."""

from __future__ import annotations

import math

import attrs
from twisted.trial.unittest import SynchronousTestCase

from twistednode.discovery.settings import Settings, default_weight, make_settings

EPOCH_MS = 1732629600000


class DefaultWeightTests(SynchronousTestCase):
    """The default weight formula."""

    def test_spec_table(self) -> None:
        """The spec's two processes get -0.17326296 and -0.17326296015."""
        self.assertEqual(default_weight(1732629600000), -0.17326296)
        self.assertEqual(default_weight(1732629601500), -0.17326296015)

    def test_older_is_heavier(self) -> None:
        """An older process (smaller ms) has the higher weight."""
        self.assertGreater(default_weight(1732629600000), default_weight(1732629600001))

    def test_same_double_as_javascript(self) -> None:
        """The value is -(ms / 10**13) computed as one IEEE division, like JS."""
        self.assertEqual(repr(default_weight(1795700674136)), "-0.1795700674136")

    def test_bad_input(self) -> None:
        """Non-integers and non-positive values are refused."""
        for value in (0, -5, 1.5, True, "17"):
            with self.subTest(value=value):
                self.assertRaises(ValueError, default_weight, value)


class MakeSettingsTests(SynchronousTestCase):
    """Defaults applied by make_settings."""

    def test_defaults(self) -> None:
        """node-discover's defaults, in seconds."""
        s = make_settings(epoch_ms=EPOCH_MS)
        self.assertEqual(
            (s.hello_interval, s.check_interval, s.node_timeout, s.master_timeout),
            (1.0, 2.0, 2.0, 2.0),
        )
        self.assertEqual(s.masters_required, 1)
        self.assertEqual(s.weight, -0.17326296)
        self.assertFalse(s.client)
        self.assertIsNone(s.key)
        self.assertTrue(s.early_election)
        self.assertEqual(s.early_delay, 0.5)

    def test_master_timeout_follows_node_timeout(self) -> None:
        """masterTimeout defaults to nodeTimeout when that is given."""
        s = make_settings(epoch_ms=EPOCH_MS, node_timeout=5.0)
        self.assertEqual(s.master_timeout, 5.0)
        s = make_settings(epoch_ms=EPOCH_MS, node_timeout=5.0, master_timeout=7.0)
        self.assertEqual(s.master_timeout, 7.0)

    def test_explicit_weight(self) -> None:
        """An explicit weight, including 0, is used as given."""
        self.assertEqual(make_settings(epoch_ms=EPOCH_MS, weight=0).weight, 0)
        self.assertEqual(make_settings(epoch_ms=EPOCH_MS, weight=3.5).weight, 3.5)

    def test_early_delay_capped(self) -> None:
        """The default early delay never exceeds a short check interval."""
        s = make_settings(
            epoch_ms=EPOCH_MS, check_interval=0.2, node_timeout=0.4, hello_interval=0.1
        )
        self.assertEqual(s.early_delay, 0.2)

    def test_frozen(self) -> None:
        """Settings cannot be changed after construction."""
        s = make_settings(epoch_ms=EPOCH_MS)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, s, "weight", 1)


class ValidationTests(SynchronousTestCase):
    """Invalid settings raise ValueError naming the problem."""

    def assertRefused(self, fragment: str, **kwargs: object) -> None:
        error = self.assertRaises(
            ValueError, make_settings, epoch_ms=EPOCH_MS, **kwargs
        )
        self.assertIn(fragment, str(error))

    def test_node_timeout_below_check_interval(self) -> None:
        """nodeTimeout < checkInterval is refused, as node-discover does."""
        self.assertRefused("node_timeout", check_interval=3.0)
        self.assertRefused("node_timeout", node_timeout=1.5, hello_interval=0.5)

    def test_master_timeout_below_node_timeout(self) -> None:
        """masterTimeout < nodeTimeout is refused."""
        self.assertRefused("master_timeout", master_timeout=1.0)

    def test_hello_interval_not_below_node_timeout(self) -> None:
        """A hello interval that reaches nodeTimeout would let peers drop us."""
        self.assertRefused("hello_interval", hello_interval=2.0)

    def test_non_positive_intervals(self) -> None:
        """Zero, negative, infinite, NaN and non-numeric intervals are refused."""
        for bad in (0, -1.0, math.inf, math.nan, "1", True):
            for name in ("hello_interval", "check_interval", "node_timeout"):
                with self.subTest(name=name, bad=bad):
                    self.assertRefused(name, **{name: bad})

    def test_masters_required(self) -> None:
        """mastersRequired must be an integer >= 1."""
        for bad in (0, -1, 1.0, True):
            with self.subTest(bad=bad):
                self.assertRefused("masters_required", masters_required=bad)
        self.assertEqual(
            make_settings(epoch_ms=EPOCH_MS, masters_required=2).masters_required, 2
        )

    def test_weight(self) -> None:
        """Non-finite, boolean and string weights are refused."""
        for bad in (math.nan, math.inf, -math.inf, "1", True):
            with self.subTest(bad=bad):
                self.assertRefused("weight", weight=bad)

    def test_key(self) -> None:
        """An empty key is refused (node-discover would silently ignore it)."""
        self.assertRefused("key", key="")
        self.assertEqual(make_settings(epoch_ms=EPOCH_MS, key="secret").key, "secret")

    def test_client_and_early_flags(self) -> None:
        """client and early_election must be booleans; early_delay in range."""
        self.assertRefused("client", client=1)
        self.assertRefused("early_election", early_election="yes")
        self.assertRefused("early_delay", early_delay=-0.1)
        self.assertRefused("early_delay", early_delay=2.5)

    def test_direct_construction_validates(self) -> None:
        """Building Settings directly runs the same checks."""
        self.assertRaises(
            ValueError,
            Settings,
            hello_interval=1.0,
            check_interval=2.0,
            node_timeout=1.0,
            master_timeout=2.0,
            masters_required=1,
            weight=0.0,
        )
