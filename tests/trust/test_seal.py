"""Sealed datagrams: they open only with our key and cluster, once, while fresh."""

from __future__ import annotations

import random
import struct

from twisted.trial.unittest import SynchronousTestCase

from twistednode.trust.keyring import Keyring, key_id
from twistednode.trust.seal import (
    HEADER_SIZE,
    MAGIC,
    OVERHEAD,
    REORDER,
    Header,
    ReplayWindow,
    Sealer,
    SealError,
)

A = bytes(range(32))
B = bytes(range(32, 64))
NOW = 1_764_800_000.0
PLAIN = b'{"event":"hello","iid":"x","data":{"isMaster":false}}'


def pair(
    sender_keys: tuple[bytes, ...] = (A,),
    receiver_keys: tuple[bytes, ...] = (A,),
    cluster: str = "prod",
    other_cluster: str | None = None,
) -> tuple[Sealer, Sealer]:
    sender = Sealer(Keyring(sender_keys), cluster)
    receiver = Sealer(Keyring(receiver_keys), other_cluster or cluster)
    return sender, receiver


def reason(receiver: Sealer, datagram: bytes, now: float = NOW) -> str:
    try:
        receiver.open(now, datagram)
    except SealError as e:
        return e.reason
    return "accepted"


class FormatTests(SynchronousTestCase):
    """The datagram layout of docs/sealed-datagrams.md."""

    def test_header_fields_in_order(self) -> None:
        """Magic, version, key id, boot id, counter, milliseconds, then ciphertext."""
        sender, _ = pair()
        sealed = sender.seal(NOW, PLAIN)
        self.assertEqual(sealed[:3], MAGIC)
        self.assertEqual(sealed[3], 1)
        self.assertEqual(sealed[4:8], key_id(A))
        self.assertEqual(sealed[8:24], sender.boot)
        self.assertEqual(struct.unpack("!QQ", sealed[24:40]), (1, int(NOW * 1000)))
        self.assertEqual(len(sealed), len(PLAIN) + OVERHEAD)
        self.assertEqual(HEADER_SIZE, 40)
        self.assertNotIn(b"hello", sealed)

    def test_counter_increases_per_datagram(self) -> None:
        """Every seal takes the next counter."""
        sender, _ = pair()
        counters = [Header.unpack(sender.seal(NOW, PLAIN)).counter for _ in range(3)]
        self.assertEqual(counters, [1, 2, 3])

    def test_round_trip(self) -> None:
        """What one node seals, another of the same cluster and key opens."""
        sender, receiver = pair()
        self.assertEqual(receiver.open(NOW, sender.seal(NOW, PLAIN)), PLAIN)


class RefusalTests(SynchronousTestCase):
    """Every datagram not sealed for us now is refused, with its reason."""

    def test_plain_json_is_not_sealed(self) -> None:
        """node-discover's plain JSON is refused before anything parses it."""
        _, receiver = pair()
        self.assertEqual(reason(receiver, PLAIN), "not-sealed")

    def test_other_cluster_name_does_not_open(self) -> None:
        """Same key, another cluster: the associated data differs, the tag fails."""
        sender, receiver = pair(other_cluster="staging")
        self.assertEqual(reason(receiver, sender.seal(NOW, PLAIN)), "forged")

    def test_other_key_is_unknown(self) -> None:
        """A key we do not hold is refused by its id."""
        sender, receiver = pair(sender_keys=(B,))
        self.assertEqual(reason(receiver, sender.seal(NOW, PLAIN)), "unknown-key")

    def test_flipped_bit_anywhere_is_refused(self) -> None:
        """Any single changed bit, header or body, makes the datagram unopenable."""
        sender, _ = pair()
        sealed = sender.seal(NOW, PLAIN)
        for index in range(len(sealed)):
            receiver = Sealer(Keyring((A,)), "prod")
            tampered = bytearray(sealed)
            tampered[index] ^= 0x01
            self.assertNotEqual(reason(receiver, bytes(tampered)), "accepted", index)

    def test_truncated_is_refused(self) -> None:
        """Shorter than a header and a tag, or cut anywhere: refused."""
        sender, _ = pair()
        sealed = sender.seal(NOW, PLAIN)
        for size in range(len(sealed)):
            receiver = Sealer(Keyring((A,)), "prod")
            self.assertNotEqual(reason(receiver, sealed[:size]), "accepted", size)

    def test_our_own_boot_is_refused(self) -> None:
        """A datagram carrying our own boot id (looped back or replayed to us)."""
        sender, _ = pair()
        self.assertEqual(reason(sender, sender.seal(NOW, PLAIN)), "own-boot")


class ReplayTests(SynchronousTestCase):
    """Each datagram opens once; old ones never; a restarted sender still does."""

    def test_replay_is_refused(self) -> None:
        """The same datagram a second time is a replay."""
        sender, receiver = pair()
        sealed = sender.seal(NOW, PLAIN)
        receiver.open(NOW, sealed)
        self.assertEqual(reason(receiver, sealed, NOW + 1), "replayed")

    def test_reordered_within_window_is_accepted_once(self) -> None:
        """A late datagram up to REORDER behind opens once."""
        sender, receiver = pair()
        first = sender.seal(NOW, PLAIN)
        later = [sender.seal(NOW, PLAIN) for _ in range(REORDER - 1)]
        for datagram in later:
            receiver.open(NOW, datagram)
        self.assertEqual(reason(receiver, first), "accepted")
        self.assertEqual(reason(receiver, first), "replayed")

    def test_too_far_behind_is_refused(self) -> None:
        """A datagram more than REORDER counters old is refused."""
        sender, receiver = pair()
        first = sender.seal(NOW, PLAIN)
        for _ in range(REORDER + 1):
            receiver.open(NOW, sender.seal(NOW, PLAIN))
        self.assertEqual(reason(receiver, first), "replayed")

    def test_old_timestamp_is_expired(self) -> None:
        """A datagram sent more than the window ago is refused, even if new to us."""
        sender, receiver = pair()
        sealed = sender.seal(NOW, PLAIN)
        self.assertEqual(reason(receiver, sealed, NOW + 31), "expired")
        self.assertEqual(reason(receiver, sealed, NOW - 31), "expired")

    def test_restarted_sender_is_accepted(self) -> None:
        """A new process (new boot id) starts its counter at 1 and is accepted."""
        sender, receiver = pair()
        for _ in range(5):
            receiver.open(NOW, sender.seal(NOW, PLAIN))
        restarted = Sealer(Keyring((A,)), "prod")
        self.assertEqual(reason(receiver, restarted.seal(NOW + 1, PLAIN)), "accepted")

    def test_forgery_does_not_move_the_window(self) -> None:
        """A forged header with a huge counter does not make real datagrams old."""
        sender, receiver = pair()
        receiver.open(NOW, sender.seal(NOW, PLAIN))
        real = sender.seal(NOW, PLAIN)
        header = Header(key_id(A), sender.boot, 2**63, int(NOW * 1000)).pack()
        self.assertEqual(reason(receiver, header + real[HEADER_SIZE:]), "forged")
        self.assertEqual(reason(receiver, real), "accepted")

    def test_silent_senders_are_forgotten_when_full(self) -> None:
        """Beyond max_senders the state stays bounded."""
        window = ReplayWindow(max_senders=8)
        receiver = Sealer(Keyring((A,)), "prod", replay=window)
        for _ in range(20):
            receiver.open(NOW, Sealer(Keyring((A,)), "prod").seal(NOW, PLAIN))
        self.assertLessEqual(len(window), 8)


class RotationTests(SynchronousTestCase):
    """Any key of the ring opens; the first seals."""

    def test_second_key_opens(self) -> None:
        """A receiver holding old and new opens a sender already on the new key."""
        sender, receiver = pair(sender_keys=(B, A), receiver_keys=(A, B))
        self.assertEqual(receiver.open(NOW, sender.seal(NOW, PLAIN)), PLAIN)

    def test_set_keyring_changes_the_send_key(self) -> None:
        """After set_keyring, the first key of the new ring seals."""
        sender, _ = pair()
        sender.set_keyring(Keyring((B, A)))
        self.assertEqual(Header.unpack(sender.seal(NOW, PLAIN)).key_id, key_id(B))


class FuzzTests(SynchronousTestCase):
    """20,000 random, truncated and bit-flipped datagrams: none opens, none raises
    anything but SealError."""

    def test_fuzzed_datagrams_are_all_refused(self) -> None:
        """Random bytes, random bytes after our magic, cuts and flips of real ones."""
        rng = random.Random(12)
        sender, receiver = pair()
        real = [sender.seal(NOW, PLAIN + bytes(rng.randrange(200))) for _ in range(8)]
        for datagram in real:
            receiver.open(NOW, datagram)
        reasons: dict[str, int] = {}
        for n in range(20_000):
            kind = n % 4
            base = rng.choice(real)
            if kind == 0:
                datagram = rng.randbytes(rng.randrange(0, 300))
            elif kind == 1:
                datagram = MAGIC + b"\x01" + rng.randbytes(rng.randrange(0, 300))
            elif kind == 2:
                datagram = base[: rng.randrange(len(base))]
            else:
                flipped = bytearray(base)
                for _ in range(rng.randrange(1, 4)):
                    flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                datagram = bytes(flipped)
            why = reason(receiver, datagram)
            reasons[why] = reasons.get(why, 0) + 1
        self.assertNotIn("accepted", reasons)
        self.assertEqual(sum(reasons.values()), 20_000)
