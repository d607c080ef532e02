# -*- test-case-name: tests.discovery.test_wire -*-
"""The node-discover 1.2.1 envelope codec (spec node-discover-wire.md §1, §3, §9).

Pure functions, no I/O. L{encode} turns an L{Envelope} into one datagram;
L{decode} turns a datagram back into an L{Envelope} or raises L{Dropped} with a short,
stable reason (R1-R3, R6 and the spec's stricter acceptance). The receive rules that
need node state (R4, R5, R7, stale sequence numbers) are applied by the protocol and
the membership, which count their drops under the same kind of reason names.

JavaScript semantics matter on the wire: node-discover tests values with JS
truthiness (L{js_truthy}) and compares weights after JS ToNumber (L{js_to_number}).
Python's C{bool()} differs (C{{}} and C{[]} are true in JS), so it is never used on
received values.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Final

from attrs import frozen

from twistednode.discovery.legacykey import LegacyKey, LegacyKeyError

#: An IPv4 UDP payload is at most 65,535 - 20 (IP) - 8 (UDP) bytes.
MAX_DATAGRAM: Final = 65_507
#: Above this, a datagram is IP-fragmented on common paths; keep hellos below it.
PRACTICAL_DATAGRAM: Final = 1_200

#: One random UUID per OS process, made when the library loads (the envelope C{pid}).
PROCESS_PID: Final = str(uuid.uuid4())

#: Event names node-discover reserves; C{error} crashes Node peers without a listener.
RESERVED_EVENTS: Final = frozenset(
    {"hello", "promotion", "demotion", "added", "removed", "master", "error"}
)
#: Internal node-discover event names a channel should not use (spec §8 SHOULD).
INTERNAL_EVENTS: Final = frozenset(
    {"check", "started", "stopped", "helloEmitted", "helloReceived"}
)


class Dropped(Exception):
    """A received datagram was dropped; C{reason} is a short counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason if not detail else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ValueError):
    """An envelope cannot be sent (not JSON, refused event or payload, too large)."""


class MessageTooLarge(EncodeError):
    """The encoded datagram is larger than an IPv4 UDP payload can be."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"datagram of {size} bytes exceeds the IPv4 UDP limit of "
            f"{MAX_DATAGRAM} bytes; it would be lost, so it is not sent"
        )
        self.size = size


@frozen
class Envelope:
    """One node-discover message: a hello or a channel message."""

    event: str
    pid: str | None
    iid: str
    host_name: str | None
    data: object


def js_truthy(value: object) -> bool:
    """Whether JavaScript would treat a JSON value as true.

    Falsy: absent (pass C{None}), C{null}, C{false}, C{0}, C{-0}, C{NaN} and C{""}.
    Everything else is truthy, including C{{}}, C{[]}, C{"0"} and C{"false"}.
    """
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, int | float):
        return not (value == 0 or value != value)
    if isinstance(value, str):
        return value != ""
    return True


# StrWhiteSpaceChar: WhiteSpace (incl. U+FEFF and every Zs) and LineTerminator.
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(
    r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_RADIX = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}
_DIGITS = {
    16: re.compile(r"[0-9a-fA-F]+"),
    8: re.compile(r"[0-7]+"),
    2: re.compile(r"[01]+"),
}


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _string_to_number(text: str) -> float:
    text = text.strip(_JS_SPACE)
    if text == "":
        return 0.0
    if _DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    radix = _RADIX.get(text[:2])
    if radix is not None and _DIGITS[radix].fullmatch(text[2:]):
        return _int_to_float(int(text[2:], radix))
    return math.nan


def js_to_number(value: object) -> float:
    """JavaScript ToNumber of a JSON value (spec §3 stricter acceptance).

    C{null} is 0, booleans 0/1, numeric strings their value (JS syntax: trimmed, hex,
    octal, binary, C{Infinity}), C{""} 0, other strings and objects NaN, and arrays go
    through their string form (C{[]} is 0, C{["7"]} is 7, two or more elements NaN).
    For an absent field use L{number_field}, which gives NaN.
    """
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, int):
        return _int_to_float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return _string_to_number(value)
    if isinstance(value, list):
        if not value:
            return 0.0
        if len(value) > 1:
            return math.nan  # the joined string contains ","
        (only,) = value
        if only is None:
            return 0.0
        if isinstance(only, bool | dict):
            return math.nan  # "true", "false", "[object Object]"
        return js_to_number(only)
    return math.nan


def number_field(data: Mapping[str, object], key: str) -> float:
    """ToNumber of C{data[key]}; an absent key is JS C{undefined}, i.e. NaN."""
    if key not in data:
        return math.nan
    return js_to_number(data[key])


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text!r} is out of range")
    return value


def _as_key(key: LegacyKey | str | None) -> LegacyKey | None:
    if key is None or isinstance(key, LegacyKey):
        return key
    return LegacyKey.from_password(key)


def decode(datagram: bytes, key: LegacyKey | str | None = None) -> Envelope:
    """Parse one received datagram, or raise L{Dropped}.

    Applies R2 (decrypt, UTF-8, JSON), R3 (an object), R6 (truthy C{event} and
    C{data}) and the stricter acceptance: C{event} a string, C{iid} a non-empty
    string, hello C{data} an object, no number outside the double range. A C{pid} or
    C{hostName} that is not a string is treated as absent.
    """
    if len(datagram) > MAX_DATAGRAM:
        raise Dropped("too-large", f"{len(datagram)} bytes")
    cipher = _as_key(key)
    if cipher is not None:
        try:
            datagram = cipher.decrypt(datagram)
        except LegacyKeyError as e:
            raise Dropped("bad-cipher", str(e)) from None
    try:
        text = datagram.decode("utf-8")
    except UnicodeDecodeError:
        raise Dropped("bad-utf8") from None
    try:
        obj = json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError) as e:
        raise Dropped("bad-json", str(e)[:100]) from None
    if not isinstance(obj, dict):
        raise Dropped("not-object", type(obj).__name__)
    event = obj.get("event")
    data = obj.get("data")
    if not js_truthy(event):
        raise Dropped("falsy-event")
    if not js_truthy(data):
        raise Dropped("falsy-data")
    if not isinstance(event, str):
        raise Dropped("bad-event", type(event).__name__)
    iid = obj.get("iid")
    if not isinstance(iid, str) or iid == "":
        raise Dropped("bad-iid")
    if event == "hello" and not isinstance(data, dict):
        raise Dropped("bad-hello-data", type(data).__name__)
    pid = obj.get("pid")
    host_name = obj.get("hostName")
    return Envelope(
        event=event,
        pid=pid if isinstance(pid, str) else None,
        iid=iid,
        host_name=host_name if isinstance(host_name, str) else None,
        data=data,
    )


def encode(envelope: Envelope, key: LegacyKey | str | None = None) -> bytes:
    """Serialise an envelope the way node-discover does, encrypting it if keyed.

    Compact JSON, keys in node-discover's order, non-ASCII unescaped. Raises
    L{EncodeError} for an event that is empty or C{"error"}, a falsy payload, an
    empty iid, a value that is not JSON (NaN, infinities, sets, lone surrogates...),
    and L{MessageTooLarge} above L{MAX_DATAGRAM} bytes (after encryption).
    """
    if not isinstance(envelope.event, str) or envelope.event == "":
        raise EncodeError("the event name must be a non-empty string")
    if envelope.event == "error":
        raise EncodeError('event "error" crashes node-discover peers; never sent')
    if not isinstance(envelope.iid, str) or envelope.iid == "":
        raise EncodeError("the iid must be a non-empty string")
    if not js_truthy(envelope.data):
        raise EncodeError(
            f"payload {envelope.data!r} is falsy in JavaScript; receivers drop it"
        )
    obj: dict[str, object] = {"event": envelope.event}
    if envelope.pid is not None:
        obj["pid"] = envelope.pid
    obj["iid"] = envelope.iid
    if envelope.host_name is not None:
        obj["hostName"] = envelope.host_name
    obj["data"] = envelope.data
    try:
        text = json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        payload = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodeError(f"the message is not valid JSON: {e}") from e
    cipher = _as_key(key)
    if cipher is not None:
        payload = cipher.encrypt(payload)
    if len(payload) > MAX_DATAGRAM:
        raise MessageTooLarge(len(payload))
    return payload
