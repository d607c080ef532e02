"""Run one conformance case against real etcd and against minietcd, and compare.

A case is a function C{case(side)} that sends requests through the L{Side} it is given.
Every request goes under the case's own key prefix; the first request of every case is a
GET of that (missing) prefix, whose C{X-Etcd-Index} is the I{base} that all indices are
made relative to. Each response is normalised (L{tests.minietcd.conformance.normalise})
and kept
in the side's transcript; after both sides ran, the transcripts must be equal.

A case may also state expectations (L{Side.expect}): they hold on real etcd (a failing
one there is a bug in the case), so a case cannot pass by both servers being wrong
alike. A request sent with C{compare=False} is kept out of the comparison: the case then
asserts each side's behaviour itself (used only for the deliberate, documented
differences).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

from attrs import define, field, frozen

from tests.minietcd.conformance.http import (
    DEFAULT_TIMEOUT,
    Connection,
    ProtocolError,
    Response,
    exchange,
)
from tests.minietcd.conformance.normalise import Context, normalise_response

Params = Mapping[str, str] | Sequence[tuple[str, str]] | str | None

RUN_TOKEN = uuid.uuid4().hex[:8]
WATCH_HEAD_TIMEOUT = 5.0
ETCD = "etcd"
ETCD_PEER = "etcd-peer"
MINIETCD = "minietcd"


@frozen
class Case:
    """One behaviour to compare: a function of a L{Side}, named and documented."""

    name: str
    doc: str
    group: str
    run: Callable[[Side], None]


CASES: list[Case] = []


def case(group: str) -> Callable[[Callable[[Side], None]], Case]:
    """Register the decorated function as a case in C{group}."""

    def register(func: Callable[[Side], None]) -> Case:
        name = func.__name__
        doc = (func.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"case {name} has no docstring")
        if any(existing.name == name for existing in CASES):
            raise ValueError(f"duplicate case name {name}")
        registered = Case(name=name, doc=doc, group=group, run=func)
        CASES.append(registered)
        return registered

    return register


class ExpectationError(AssertionError):
    """An expectation written in a case does not hold on one server."""


def _encode(params: Params) -> str:
    if params is None:
        return ""
    if isinstance(params, str):
        return params
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return urlencode(pairs, quote_via=quote)


def _names(params: Params) -> dict[str, str]:
    if params is None or isinstance(params, str):
        text = params or ""
        found: dict[str, str] = {}
        for part in text.split("&"):
            name, _, value = part.partition("=")
            found.setdefault(unquote_plus(name), unquote_plus(value))
        return found
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    found = {}
    for name, value in pairs:
        found.setdefault(name, value)
    return found


@define(eq=False)
class Exchange:
    """One response as received and as normalised, with the request that got it."""

    label: str
    response: Response
    normalised: dict[str, Any]
    compared: bool


@define(eq=False)
class Side:
    """One server in one case: sends requests, keeps the normalised transcript."""

    kind: str
    url: str
    prefix: str
    base: int = 0
    exchanges: list[Exchange] = field(factory=list)
    watches: list[Watch] = field(factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    @property
    def is_etcd(self) -> bool:
        """Whether this side is real etcd (for the documented differences only)."""
        return self.kind in (ETCD, ETCD_PEER)

    def key(self, rel: str = "") -> str:
        """The key of C{rel} under the case's prefix, e.g. C{/conf-1234-case/a}."""
        return f"/{self.prefix}/{rel}" if rel else f"/{self.prefix}"

    def path(self, rel: str = "") -> str:
        """The request path of C{rel}'s key: C{/v2/keys/<prefix>/<rel>}."""
        return "/v2/keys" + self.key(rel)

    def idx(self, offset: int) -> int:
        """The absolute index C{offset} writes after the start of the case."""
        return self.base + offset

    def begin(self) -> None:
        """Learn the base index from a GET of the case's (still missing) prefix."""
        response = self.keys("GET")
        self.expect(response, 404, errorCode=100)
        index = response.header("X-Etcd-Index")
        if index is None or not index.isdigit():
            raise ExpectationError(f"{self.kind}: no X-Etcd-Index on a 404: {response}")
        self.base = int(index)
        self.exchanges[-1].normalised = self.normalise(
            "GET", self.path(), response, Context(self.base, self.url)
        )

    def normalise(
        self, method: str, target: str, response: Response, ctx: Context
    ) -> dict[str, Any]:
        """The comparable form of C{response}; a format error names this side."""
        path = target.split("?", 1)[0]
        try:
            return normalise_response(path, response, ctx)
        except AssertionError as error:
            raise ExpectationError(
                f"{self.kind}: {method} {target}: {error}\nresponse: {response}"
            ) from None

    def request(
        self,
        method: str,
        target: str,
        *,
        query: Params = None,
        form: Params = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        compare: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Response:
        """Send one request (target sent as is, plus C{query}) and record the answer.

        C{form} is sent urlencoded, with the form content type unless C{content_type}
        says otherwise; C{body} is sent as given.
        """
        encoded = _encode(query)
        if encoded:
            target += ("&" if "?" in target else "?") + encoded
        send_headers = list(headers)
        data: bytes | None = None
        if form is not None:
            data = _encode(form).encode("utf-8")
            content_type = content_type or "application/x-www-form-urlencoded"
        elif body is not None:
            data = body.encode("utf-8") if isinstance(body, str) else body
        if content_type is not None:
            send_headers.append(("Content-Type", content_type))
        response = exchange(
            self.host, self.port, method, target, send_headers, data, timeout
        )
        params = _names(target.split("?", 1)[1] if "?" in target else None)
        for name, value in _names(form).items():
            params.setdefault(name, value)
        ctx = Context(
            base=self.base,
            url=self.url,
            sorted=params.get("sorted", "").lower() in ("true", "1", "t"),
            prev_value=params.get("prevValue"),
            prev_index=params.get("prevIndex"),
        )
        normalised = self.normalise(method, target, response, ctx)
        self.exchanges.append(
            Exchange(f"{method} {target}", response, normalised, compare)
        )
        return response

    def keys(
        self, method: str, rel: str = "", query: Params = None, **kwargs: Any
    ) -> Response:
        """A request on the key C{rel} under the case's prefix."""
        return self.request(method, self.path(rel), query=query, **kwargs)

    def watch(self, rel: str = "", query: Params = None) -> Watch:
        """Open C{GET <rel>?wait=true&<query>} and wait for the status and headers."""
        target = self.path(rel) + "?wait=true"
        encoded = _encode(query)
        if encoded:
            target += "&" + encoded
        watch = Watch(self, target)
        self.watches.append(watch)
        return watch

    def expect(
        self,
        response: Response,
        status: int,
        *,
        headers: Mapping[str, str | None] | None = None,
        **fields: Any,
    ) -> Any:
        """Assert the status, some headers (None: absent) and top-level JSON fields."""
        problems = []
        if response.status != status:
            problems.append(f"status {response.status}, expected {status}")
        for name, value in (headers or {}).items():
            if response.header(name) != value:
                problems.append(
                    f"header {name}: {response.header(name)!r} != {value!r}"
                )
        parsed: Any = None
        try:
            parsed = json.loads(response.body)
        except ValueError:
            if fields:
                problems.append(f"body is not JSON: {response.body[:200]!r}")
        else:
            for name, value in fields.items():
                path = name.split("__")
                found: Any = parsed
                for part in path:
                    found = found.get(part) if isinstance(found, dict) else None
                if found != value:
                    problems.append(f"{'.'.join(path)} = {found!r}, expected {value!r}")
        if problems:
            raise ExpectationError(
                f"{self.kind}: " + "; ".join(problems) + f"\nresponse: {response}"
            )
        return parsed

    def record(self, label: str, data: dict[str, Any]) -> None:
        """Add something the case computed (not a response) to the transcript."""
        now = time.time()
        response = Response(0, "computed", (), json.dumps(data).encode(), now, now)
        normalised = {"computed": data}
        self.exchanges.append(Exchange(label, response, normalised, True))

    def bulk_set(self, rel: str, count: int) -> None:
        """Set C{rel} C{count} times over one keep-alive connection (not recorded)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=DEFAULT_TIMEOUT)
        try:
            for number in range(count):
                conn.request(
                    "PUT",
                    self.path(rel),
                    body=f"value={number}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                response = conn.getresponse()
                response.read()
                if response.status not in (200, 201):
                    raise ExpectationError(
                        f"{self.kind}: bulk write {number} answered {response.status}"
                    )
        finally:
            conn.close()

    def check(self, condition: bool, message: str) -> None:
        """Assert something a case computed itself."""
        if not condition:
            raise ExpectationError(f"{self.kind}: {message}")

    def close(self) -> None:
        """Close any watch left open."""
        for watch in self.watches:
            watch.close()

    def clean_up(self) -> None:
        """Delete the case's prefix (not recorded).

        Keys with a TTL would otherwise expire during a later case and move the index
        under it; a failure here is ignored (the prefix may not exist).
        """
        try:
            exchange(self.host, self.port, "DELETE", self.path() + "?recursive=true")
        except (OSError, ProtocolError):
            pass


class Watch:
    """A long-poll whose headers arrived; its events are read one at a time."""

    def __init__(self, side: Side, target: str) -> None:
        self.side = side
        self.target = target
        self.conn = Connection(side.host, side.port)
        self.conn.send("GET", target)
        try:
            status, reason, headers = self.conn.read_head(WATCH_HEAD_TIMEOUT)
        except TimeoutError:
            self.conn.close()
            raise ExpectationError(
                f"{side.kind}: GET {target}: no status line and headers within "
                f"{WATCH_HEAD_TIMEOUT:.0f}s (etcd sends them once the watch is set)"
            ) from None
        self.status = status
        self.reason = reason
        self.headers = headers
        self.reader = self.conn.body_reader("GET", status, headers)
        self.count = 0

    def headers_index(self) -> str | None:
        """The X-Etcd-Index header of the watch response."""
        for name, value in self.headers:
            if name.lower() == "x-etcd-index":
                return value
        return None

    def pending(self, wait: float = 0.1) -> bool:
        """Whether no event has arrived yet (after waiting C{wait} seconds)."""
        return not self.reader.data and not self.conn.has_data(wait)

    def event(
        self, timeout: float = DEFAULT_TIMEOUT, *, compare: bool = True
    ) -> Response:
        """Read the next line of the body (one event or an error) and record it."""
        try:
            line = self.reader.read_line(timeout)
        except TimeoutError:
            raise ExpectationError(
                f"{self.side.kind}: GET {self.target}: no event within {timeout:.0f}s"
            ) from None
        body = line if line is not None else self.reader.data
        self.count += 1
        now = time.time()
        response = Response(self.status, self.reason, self.headers, body, now, now)
        side = self.side
        ctx = Context(base=side.base, url=side.url)
        normalised = side.normalise("GET", self.target, response, ctx)
        side.exchanges.append(
            Exchange(
                f"GET {self.target} (event {self.count})", response, normalised, compare
            )
        )
        return response

    def close(self) -> None:
        """Hang up (etcd then drops the watcher)."""
        self.conn.close()


def _differences(left: Any, right: Any, path: str = "") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        found = []
        for name in sorted(set(left) | set(right), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in left:
                found.append(f"{where}: only minietcd has it: {right[name]!r}")
            elif name not in right:
                found.append(f"{where}: minietcd lacks it (etcd: {left[name]!r})")
            else:
                found.extend(_differences(left[name], right[name], where))
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        found = []
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            found.extend(_differences(a, b, f"{path}[{i}]"))
        return found
    if left != right:
        return [f"{path}: etcd {left!r} != minietcd {right!r}"]
    return []


def compare(
    reference: Side, candidate: Side, error: BaseException | None = None
) -> None:
    """Raise AssertionError at the first compared exchange where the two differ.

    If the candidate stopped early with C{error}, that is raised after the common
    exchanges compared equal.
    """
    left = [x for x in reference.exchanges if x.compared]
    right = [x for x in candidate.exchanges if x.compared]
    for number, (a, b) in enumerate(zip(left, right, strict=False), start=1):
        if a.normalised != b.normalised:
            lines = "\n  ".join(_differences(a.normalised, b.normalised))
            raise AssertionError(
                f"{candidate.kind} differs from real etcd at request {number}, "
                f"{a.label}:\n"
                f"  {lines}\n"
                f"etcd     (normalised): {json.dumps(a.normalised, sort_keys=True)}\n"
                f"{candidate.kind:8} (normalised): "
                f"{json.dumps(b.normalised, sort_keys=True)}\n"
                f"etcd raw:     {a.response}\n{candidate.kind} raw: {b.response}"
            )
    if error is not None:
        raise error
    if len(left) != len(right):
        raise AssertionError(
            f"etcd made {len(left)} compared exchanges, {candidate.kind} {len(right)}"
        )


def _run_side(the_case: Case, side: Side, errors: dict[str, BaseException]) -> None:
    try:
        side.begin()
        the_case.run(side)
    except BaseException as error:  # reported by the test thread
        errors[side.kind] = error
    finally:
        side.close()
        side.clean_up()


def run_case(the_case: Case, reference_url: str, candidate: tuple[str, str]) -> None:
    """Run C{the_case} against real etcd and the candidate concurrently; compare."""
    prefix = f"conf-{RUN_TOKEN}-{the_case.name}"
    reference = Side(ETCD, reference_url, prefix)
    other = Side(candidate[0], candidate[1], prefix)
    errors: dict[str, BaseException] = {}
    threads = [
        threading.Thread(target=_run_side, args=(the_case, side, errors), daemon=True)
        for side in (reference, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        if thread.is_alive():
            raise AssertionError(f"case {the_case.name} did not finish in 120 s")
    if ETCD in errors:
        raise AssertionError(
            f"the case's own expectation fails on real etcd (a bug in the case): "
            f"{errors[ETCD]}"
        ) from errors[ETCD]
    compare(reference, other, errors.get(other.kind))


def candidate_kind() -> str:
    """Which server to hold against real etcd: minietcd, or (to check the suite) etcd.

    C{TWISTEDNODE_CONFORMANCE_PEER=etcd} selects a second real etcd (L{ETCD_PEER}).
    """
    chosen = os.environ.get("TWISTEDNODE_CONFORMANCE_PEER", MINIETCD)
    return ETCD_PEER if chosen in (ETCD, ETCD_PEER) else MINIETCD


def all_cases(groups: Iterable[str] | None = None) -> list[Case]:
    """The registered cases, optionally of some groups only."""
    wanted = None if groups is None else set(groups)
    return [c for c in CASES if wanted is None or c.group in wanted]
