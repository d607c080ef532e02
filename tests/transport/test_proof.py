"""Proofs of the cluster key on node-to-node requests."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from twistednode.transport.proof import ProofChecker, ProofError, sign
from twistednode.trust.keyring import Keyring

OLD, NEW = os.urandom(32), os.urandom(32)
BODY = b'{"service":"echo"}'


def checker(*keys: bytes, cluster: str = "prod") -> ProofChecker:
    ring = Keyring(keys) if keys else None
    return ProofChecker(lambda: ring, cluster)


class ProofTests(SynchronousTestCase):
    def test_a_signed_request_is_accepted_once(self) -> None:
        """The same proof a second time is a replay."""
        proof = sign(Keyring((OLD,)), "prod", 1000.0, "POST", "/v1/node/call", BODY)
        check = checker(OLD)
        check.check(1000.5, proof, "POST", "/v1/node/call", BODY)
        with self.assertRaisesRegex(ProofError, "replayed"):
            check.check(1001.0, proof, "POST", "/v1/node/call", BODY)

    def test_any_key_of_the_ring_is_accepted(self) -> None:
        """Mid-rotation a node signing with the new key is still heard."""
        proof = sign(Keyring((NEW, OLD)), "prod", 5.0, "POST", "/p", BODY)
        checker(OLD, NEW).check(5.0, proof, "POST", "/p", BODY)

    def test_refusals_say_why(self) -> None:
        ring = Keyring((OLD,))
        good = sign(ring, "prod", 100.0, "POST", "/p", BODY)
        cases = [
            (None, "no X-Twistednode-Proof"),
            ("v1 abc", "not 'v1"),
            (sign(Keyring((NEW,)), "prod", 100.0, "POST", "/p", BODY), "key this node"),
            (sign(ring, "test", 100.0, "POST", "/p", BODY), "MAC does not match"),
            (sign(ring, "prod", 100.0, "POST", "/other", BODY), "MAC does not match"),
            (sign(ring, "prod", 100.0, "POST", "/p", b"{}"), "MAC does not match"),
            (sign(ring, "prod", 40.0, "POST", "/p", BODY), "more than 30 s"),
            (good.replace(" 100000 ", " x "), "malformed"),
        ]
        for header, why in cases:
            with self.assertRaisesRegex(ProofError, why):
                checker(OLD).check(100.0, header, "POST", "/p", BODY)

    def test_without_a_keyring_nothing_is_checked(self) -> None:
        checker().check(0.0, None, "POST", "/p", BODY)

    def test_seen_nonces_are_forgotten_after_the_window(self) -> None:
        check = checker(OLD)
        for i in range(50):
            proof = sign(Keyring((OLD,)), "prod", float(i), "POST", "/p", BODY)
            check.check(float(i), proof, "POST", "/p", BODY)
        self.assertLessEqual(len(check._seen), 50)
        proof = sign(Keyring((OLD,)), "prod", 200.0, "POST", "/p", BODY)
        check.check(200.0, proof, "POST", "/p", BODY)
        self.assertEqual(len(check._seen), 1)
