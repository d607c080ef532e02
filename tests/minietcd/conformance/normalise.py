"""Turn a response into the parts that must be equal on real etcd and on minietcd.

Rules (each value is checked for its format before it is replaced):

* Indices (C{X-Etcd-Index}, C{modifiedIndex}, C{createdIndex}, an error's C{index}, the
  20-digit names of in-order keys, the numbers in a 401 cause and in a 101 cause for
  C{prevIndex}) become C{"@+n"}: relative to the index at the start of the case. 0 stays
  0.
* C{X-Raft-Index} and C{X-Raft-Term} must be decimal:
  C{"<raft-index>"}/C{"<raft-term>"}. C{X-Etcd-Cluster-Id}, member C{id}s and C{leader}
  must be hex: placeholders.
* C{expiration} must be RFC 3339 UTC with Go's nanosecond form and lie C{ttl} seconds
  after the request (within a tolerance): C{"<expiration>"}.
* C{nodes} lists are sorted by key unless the request asked for C{sorted=true} (then the
  order itself is compared, and must be sorted).
* Member C{name}s, peer URLs, start times, uptimes, versions and stats counters are
  replaced after their format is checked; the server's own URL becomes C{"<url>"}.
* JSON bodies are compared as data, plus whether the raw body ends with a newline; other
  bodies are compared as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from tests.minietcd.conformance.http import Response

COMPARED_HEADERS = (
    "content-type",
    "x-etcd-index",
    "x-raft-index",
    "x-raft-term",
    "x-etcd-cluster-id",
    "allow",
    "location",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
)

_EXPIRATION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")
_TIMESTAMP = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$"
)
_GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?(s|ms|µs|ns)$|^0s$")
_HEX_ID = re.compile(r"^[0-9a-f]{1,16}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+")
_IN_ORDER_NAME = re.compile(r"^\d{20}$")
_COMPARE_PAIR = re.compile(r"\[([^\[\]]*) != ([^\[\]]*)\]$")
_CLEARED = re.compile(r"^the requested history has been cleared \[(\d+)/(\d+)\]$")
_COUNTER_FIELDS = frozenset(
    {
        "getsSuccess",
        "getsFail",
        "setsSuccess",
        "setsFail",
        "deleteSuccess",
        "deleteFail",
        "updateSuccess",
        "updateFail",
        "createSuccess",
        "createFail",
        "compareAndSwapSuccess",
        "compareAndSwapFail",
        "compareAndDeleteSuccess",
        "compareAndDeleteFail",
        "expireCount",
        "watchers",
        "recvAppendRequestCnt",
        "sendAppendRequestCnt",
    }
)
EXPIRY_TOLERANCE = 2.0


class FormatError(AssertionError):
    """A value in a response does not have the format etcd gives it."""


@frozen
class Context:
    """What the normaliser needs to know about the case and the request."""

    base: int
    url: str
    sorted: bool = False
    prev_value: str | None = None
    prev_index: str | None = None


def relative(index: int, base: int) -> int | str:
    """C{index} relative to C{base} as C{"@+n"}; 0 (no index) stays 0."""
    if index == 0:
        return 0
    return f"@{index - base:+d}"


def parse_expiration(text: str) -> float:
    """Check Go's RFC 3339 nano UTC form and return the POSIX time."""
    if not _EXPIRATION.match(text):
        raise FormatError(
            f"expiration {text!r} is not RFC 3339 nano UTC as Go writes it"
        )
    whole, _, rest = text.rstrip("Z").partition(".")
    stamp = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = float("0." + rest) if rest else 0.0
    return stamp.timestamp() + fraction


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FormatError(message)


def normalise_header(name: str, value: str, ctx: Context) -> str | int:
    """The comparable form of one header value."""
    if name == "x-etcd-index":
        _check(value.isdigit(), f"X-Etcd-Index {value!r} is not a decimal")
        return relative(int(value), ctx.base)
    if name in ("x-raft-index", "x-raft-term"):
        _check(value.isdigit(), f"{name} {value!r} is not a decimal")
        return f"<{name[2:]}>"
    if name == "x-etcd-cluster-id":
        _check(bool(_HEX_ID.match(value)), f"X-Etcd-Cluster-Id {value!r} is not hex")
        return "<cluster-id>"
    if name == "location":
        return value.replace(ctx.url, "<url>")
    return value


def _node_key(key: str, ctx: Context) -> str:
    parts = key.split("/")
    return "/".join(
        str(relative(int(part), ctx.base)) if _IN_ORDER_NAME.match(part) else part
        for part in parts
    )


def _normalise_node(node: Mapping[str, Any], ctx: Context, resp: Response) -> Any:
    out: dict[str, Any] = {}
    for name, value in node.items():
        if name in ("modifiedIndex", "createdIndex"):
            _check(type(value) is int, f"{name} {value!r} is not an integer")
            out[name] = relative(value, ctx.base)
        elif name == "key":
            _check(isinstance(value, str), f"key {value!r} is not a string")
            out[name] = _node_key(value, ctx)
        elif name == "expiration":
            expires = parse_expiration(value)
            ttl = node.get("ttl", 0)
            _check(type(ttl) is int, f"ttl {ttl!r} is not an integer")
            low = resp.sent_at + ttl - 1 - EXPIRY_TOLERANCE
            high = resp.received_at + ttl + EXPIRY_TOLERANCE
            if "ttl" in node:
                _check(
                    low <= expires <= high,
                    f"expiration {value} is not about ttl={ttl}s after the request",
                )
            else:
                _check(
                    expires <= high,
                    f"expiration {value} without ttl lies in the future",
                )
            out[name] = "<expiration>"
        elif name == "nodes":
            _check(isinstance(value, list), "nodes is not a list")
            children = [_normalise_node(child, ctx, resp) for child in value]
            keys = [child.get("key", "") for child in value]
            if ctx.sorted:
                _check(keys == sorted(keys), f"sorted=true gave unsorted nodes {keys}")
            else:
                children.sort(key=lambda child: str(child.get("key", "")))
            out[name] = children
        else:
            out[name] = value
    return out


def _normalise_error(body: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    out = dict(body)
    code = body.get("errorCode")
    _check(type(code) is int, f"errorCode {code!r} is not an integer")
    index = body.get("index")
    _check(type(index) is int, f"error index {index!r} is not an integer")
    assert isinstance(index, int)
    out["index"] = relative(index, ctx.base)
    cause = body.get("cause")
    if isinstance(cause, str):
        if code == 401:
            match = _CLEARED.match(cause)
            _check(match is not None, f"401 cause {cause!r} has the wrong form")
            assert match is not None
            oldest, wanted = (relative(int(g), ctx.base) for g in match.groups())
            out["cause"] = f"the requested history has been cleared [{oldest}/{wanted}]"
        elif code == 101 and ctx.prev_index not in (None, "", "0"):
            out["cause"] = _index_pair_cause(cause, ctx)
    return out


def _index_pair_cause(cause: str, ctx: Context) -> str:
    """Make the C{[prevIndex != modifiedIndex]} pair of a 101 cause relative.

    The cause is C{[pv != v]}, C{[pi != mi]} or C{[pv != v] [pi != mi]}; a single
    pair is the index pair unless it starts with the prevValue that was sent.
    """
    match = _COMPARE_PAIR.search(cause)
    _check(match is not None, f"101 cause {cause!r} has the wrong form")
    assert match is not None
    given, actual = match.groups()
    single = match.start() == 0
    if (
        single
        and ctx.prev_value
        and given == ctx.prev_value
        and given != ctx.prev_index
    ):
        return cause
    _check(given.isdigit() and actual.isdigit(), f"bad index pair in {cause!r}")
    pair = f"[{relative(int(given), ctx.base)} != {relative(int(actual), ctx.base)}]"
    return cause[: match.start()] + pair


def _normalise_info(value: Any, ctx: Context) -> Any:
    """Cluster, version and stats documents: check formats, replace what varies."""
    if isinstance(value, list):
        return [_normalise_info(item, ctx) for item in value]
    if not isinstance(value, dict):
        return value.replace(ctx.url, "<url>") if isinstance(value, str) else value
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name in ("id", "leader") and isinstance(item, str):
            _check(bool(_HEX_ID.match(item)), f"{name} {item!r} is not a hex member id")
            out[name] = "<member-id>"
        elif name == "name":
            _check(isinstance(item, str), f"name {item!r} is not a string")
            out[name] = "<name>"
        elif name == "startTime":
            _check(
                isinstance(item, str) and bool(_TIMESTAMP.match(item)),
                f"startTime {item!r} is not RFC 3339",
            )
            out[name] = "<time>"
        elif name == "uptime":
            _check(
                isinstance(item, str) and bool(_GO_DURATION.match(item)),
                f"uptime {item!r} is not a Go duration",
            )
            out[name] = "<duration>"
        elif name in ("etcdserver", "etcdcluster"):
            _check(
                isinstance(item, str) and bool(_VERSION.match(item)),
                f"{name} {item!r} is not a version",
            )
            out[name] = "<version>"
        elif name == "peerURLs":
            _check(
                isinstance(item, list)
                and all(isinstance(u, str) and u.startswith("http") for u in item),
                f"peerURLs {item!r} is not a list of URLs",
            )
            out[name] = "<peer-urls>"
        elif name in _COUNTER_FIELDS:
            _check(type(item) is int and item >= 0, f"{name} {item!r} is not a count")
            out[name] = "<count>"
        else:
            out[name] = _normalise_info(item, ctx)
    return out


def normalise_json(path: str, body: Any, ctx: Context, resp: Response) -> Any:
    """The comparable form of a JSON body of a request to C{path}."""
    if path.startswith("/v2/keys") and isinstance(body, dict):
        if "errorCode" in body:
            return _normalise_error(body, ctx)
        out = dict(body)
        for name in ("node", "prevNode"):
            if isinstance(out.get(name), dict):
                out[name] = _normalise_node(out[name], ctx, resp)
        return out
    return _normalise_info(body, ctx)


def normalise_response(path: str, resp: Response, ctx: Context) -> dict[str, Any]:
    """Status, the compared headers and the body of C{resp}, made comparable."""
    headers = {}
    for name in COMPARED_HEADERS:
        value = resp.header(name)
        if value is not None:
            headers[name] = normalise_header(name, value, ctx)
    out: dict[str, Any] = {"status": resp.status, "headers": headers}
    text = resp.body.decode("utf-8", "replace")
    body: Any = text.replace(ctx.url, "<url>")
    if text.lstrip().startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            body = {
                "json": normalise_json(path, parsed, ctx, resp),
                "ends_with_newline": text.endswith("\n"),
            }
    out["body"] = body
    return out
