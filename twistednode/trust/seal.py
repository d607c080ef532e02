# -*- test-case-name: tests.trust.test_seal -*-
"""Sealed datagrams: AES-256-GCM with the cluster name bound in, and replay refusal.

The format, byte by byte, and the replay rules are docs/sealed-datagrams.md. In
short: a 40-byte header (magic, key id, the sender's boot id, its counter, its
timestamp), then the ciphertext and the 16-byte tag. The header and the cluster
name are the associated data, so a datagram of another cluster, or one whose header
was changed, does not open. Each sender seals under its own key derived from the
cluster key and its boot id (HKDF-SHA256), so that its counter alone makes every
nonce unique, and a restarted sender (a new random boot id) starts a new counter
without ever reusing a nonce.

L{Sealer} is the state one node needs, sending and receiving; it does no I/O and
takes C{now} (wall-clock seconds, the timestamp's clock) in every call. Every refusal
raises L{SealError} before anything of the plaintext is looked at.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from attrs import define, field, frozen

from twistednode.trust.keyring import KEY_ID_SIZE, Keyring

if TYPE_CHECKING:  # cryptography loads with the first keyed datagram, not before
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The first bytes of every sealed datagram: 0xFF never starts UTF-8 text, so a
#: sealed datagram is never taken for node-discover JSON (plain or legacy-keyed).
MAGIC: Final = b"\xffTN"
VERSION: Final = 1
BOOT_SIZE: Final = 16
TAG_SIZE: Final = 16
_HEADER = struct.Struct(f"!3sB{KEY_ID_SIZE}s{BOOT_SIZE}sQQ")
#: Header bytes: magic (3), version (1), key id (4), boot id (16), counter (8),
#: timestamp in milliseconds (8).
HEADER_SIZE: Final = _HEADER.size
#: What sealing adds to a datagram.
OVERHEAD: Final = HEADER_SIZE + TAG_SIZE
_HKDF_INFO: Final = b"twistednode seal v1"
#: A datagram sent more than this many seconds before or after our clock says now
#: is refused (the bound on replays to a receiver that has no state for the sender).
DEFAULT_WINDOW: Final = 30.0
#: Counters up to this far below a sender's highest are accepted once (reordering).
REORDER: Final = 64
#: Senders whose replay state is kept; beyond, the longest silent is forgotten.
MAX_SENDERS: Final = 4096
_MAX_COUNTER: Final = 2**64 - 1
_MAX_CIPHERS: Final = 4096


class SealError(Exception):
    """A datagram was refused; C{reason} says why (never parsed past the header)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@frozen
class Header:
    """The clear header of a sealed datagram (authenticated, not secret)."""

    key_id: bytes
    boot: bytes
    counter: int
    sent_ms: int

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, VERSION, self.key_id, self.boot, self.counter, self.sent_ms
        )

    @classmethod
    def unpack(cls, datagram: bytes) -> Header:
        """The header of C{datagram}, or L{SealError} if it is not a sealed one."""
        if not datagram.startswith(MAGIC):
            raise SealError("not-sealed")
        if len(datagram) < OVERHEAD:
            raise SealError("truncated", f"{len(datagram)} bytes")
        magic, version, kid, boot, counter, sent_ms = _HEADER.unpack_from(datagram)
        if version != VERSION:
            raise SealError("version", str(version))
        return cls(kid, boot, counter, sent_ms)


def nonce(counter: int) -> bytes:
    """The 12-byte GCM nonce of a sender's C{counter}: 4 zero bytes, the counter."""
    return b"\x00\x00\x00\x00" + struct.pack("!Q", counter)


def associated_data(header: bytes, cluster: str) -> bytes:
    """What GCM authenticates besides the ciphertext: the header, the cluster name."""
    return header + cluster.encode("utf-8")


def derive(key: bytes, boot: bytes) -> bytes:
    """One sender boot's key: HKDF-SHA256 of the cluster key, salted by the boot id."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=boot, info=_HKDF_INFO
    ).derive(key)


@define
class _SenderState:
    """What we accepted from one sender boot: its highest counter, a bitmap of the
    L{REORDER} counters below it, when we last heard it."""

    highest: int
    seen: int
    last: float


@define
class ReplayWindow:
    """Which (boot, counter) pairs are new, and whether a timestamp is recent.

    A datagram is fresh when its timestamp is within C{window} seconds of C{now} and
    its counter is above the highest accepted from its boot id, or up to L{REORDER}
    below it and not accepted yet. L{check} judges without changing anything; only
    an authenticated datagram is then L{record}ed, so forgeries cannot move a
    sender's window.
    """

    window: float = DEFAULT_WINDOW
    max_senders: int = MAX_SENDERS
    _senders: OrderedDict[bytes, _SenderState] = field(factory=OrderedDict, init=False)

    def check(self, now: float, header: Header) -> None:
        """Raise L{SealError} ("expired", "replayed") if C{header} is not fresh."""
        sent = header.sent_ms / 1000.0
        if abs(now - sent) > self.window:
            raise SealError("expired", f"sent {now - sent:+.3f} s from now")
        state = self._senders.get(header.boot)
        if state is None:
            return
        if header.counter > state.highest:
            return
        behind = state.highest - header.counter
        if behind >= REORDER or (state.seen >> behind) & 1:
            raise SealError("replayed", f"counter {header.counter}")

    def record(self, now: float, header: Header) -> None:
        """Remember an authenticated, fresh datagram (after L{check})."""
        boot, counter = header.boot, header.counter
        state = self._senders.get(boot)
        if state is None:
            self._forget(now)
            self._senders[boot] = _SenderState(counter, 1, now)
            return
        self._senders.move_to_end(boot)
        state.last = now
        if counter > state.highest:
            shift = counter - state.highest
            state.seen = ((state.seen << shift) | 1) & ((1 << REORDER) - 1)
            state.highest = counter
        else:
            state.seen |= 1 << (state.highest - counter)

    def _forget(self, now: float) -> None:
        """Make room: senders silent for longer than the window can only be
        replayed with an expired timestamp, so their state is no longer needed."""
        while self._senders:
            boot, oldest = next(iter(self._senders.items()))
            if len(self._senders) < self.max_senders and now - oldest.last <= (
                2 * self.window
            ):
                return
            del self._senders[boot]

    def __len__(self) -> int:
        return len(self._senders)


def _random_boot() -> bytes:
    return os.urandom(BOOT_SIZE)


@define
class Sealer:
    """One node's sealing: its keyring, its cluster, its boot id and counter, and
    the replay state of everyone it hears.

    @ivar boot: random per process start (a new L{Sealer}); it names this sender
        in every datagram and salts its key, so a restart never reuses a nonce.
    """

    keyring: Keyring
    cluster: str
    boot: bytes = field(factory=_random_boot)
    replay: ReplayWindow = field(factory=ReplayWindow)
    _counter: int = field(default=0, init=False)
    _ciphers: OrderedDict[tuple[bytes, bytes], AESGCM] = field(
        factory=OrderedDict, init=False
    )

    def set_keyring(self, keyring: Keyring) -> None:
        """Seal with C{keyring}'s first key from now on, open with any of its keys."""
        self.keyring = keyring
        self._ciphers.clear()

    def seal(self, now: float, plaintext: bytes) -> bytes:
        """C{plaintext} as one sealed datagram, with the next counter."""
        if self._counter >= _MAX_COUNTER:
            raise SealError("exhausted", "the counter is spent; restart the node")
        self._counter += 1
        key = self.keyring.send_key
        header = Header(
            self.keyring.send_id, self.boot, self._counter, max(0, round(now * 1000))
        ).pack()
        cipher = self._cipher(key, self.boot, keep=True)
        sealed = cipher.encrypt(
            nonce(self._counter), plaintext, associated_data(header, self.cluster)
        )
        return header + sealed

    def open(self, now: float, datagram: bytes) -> bytes:
        """The plaintext of a sealed, fresh datagram; L{SealError} otherwise."""
        header = Header.unpack(datagram)
        if header.boot == self.boot:
            raise SealError("own-boot")  # our own, looped back, or a replay of it
        keys = self.keyring.candidates(header.key_id)
        if not keys:
            raise SealError("unknown-key", header.key_id.hex())
        self.replay.check(now, header)
        from cryptography.exceptions import InvalidTag

        data = associated_data(datagram[:HEADER_SIZE], self.cluster)
        body = datagram[HEADER_SIZE:]
        for key in keys:
            cipher = self._cipher(key, header.boot, keep=False)
            try:
                plaintext = cipher.decrypt(nonce(header.counter), body, data)
            except InvalidTag:
                continue
            self._keep(key, header.boot, cipher)
            self.replay.record(now, header)
            return plaintext
        raise SealError("forged", "the tag does not match")

    def _cipher(self, key: bytes, boot: bytes, keep: bool) -> AESGCM:
        cipher = self._ciphers.get((key, boot))
        if cipher is not None:
            self._ciphers.move_to_end((key, boot))
            return cipher
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        cipher = AESGCM(derive(key, boot))
        if keep:
            self._keep(key, boot, cipher)
        return cipher

    def _keep(self, key: bytes, boot: bytes, cipher: AESGCM) -> None:
        """Cache a boot's cipher; only for authenticated senders (and ourselves)."""
        self._ciphers[(key, boot)] = cipher
        self._ciphers.move_to_end((key, boot))
        while len(self._ciphers) > _MAX_CIPHERS:
            self._ciphers.popitem(last=False)
