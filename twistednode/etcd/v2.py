# -*- test-case-name: tests.etcd.test_v2 -*-
"""
A treq client for the etcd v2 keys API.

L{EtcdV2Client} speaks the few keys calls the registry needs (get, set/create/update,
refresh, delete, watch) to one of several etcd URLs, moving on to the next URL when a
member cannot be reached and remembering the one that answered (the URLs, the pool and
the calls in flight are L{twistednode.etcd.base.EtcdHTTP}'s). Every request is
bounded as a whole, body included (treq's own C{timeout=} stops at the headers, and an
etcd watch flushes its headers at once). The outcomes are distinct exceptions:

 - L{EtcdV2Error}: etcd answered with its JSON error (C{errorCode}, C{message},
   C{cause}, C{index}, plus the C{X-Etcd-Index} header);
 - L{EtcdWatchEnded}: a watch answered 200 with an empty body (ended by the server);
 - L{EtcdBadResponse}: a body that is not etcd's JSON, or an unexpected status;
 - L{EtcdTimeout}: a watch saw no event within its timeout;
 - L{EtcdUnavailable}: every URL failed to connect, dropped the connection, timed out
   or answered 5xx (L{EtcdServerError}); C{failures} says what happened at each.

The last three, and L{EtcdError}, are L{twistednode.etcd.base}'s, shared with v3.

L{twistednode.registry.v2.EtcdV2Backend} maps these onto the
L{twistednode.registry.backend.RegistryBackend} interface.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, cast
from urllib.parse import quote

from attrs import define, frozen
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from twistednode.etcd.base import (
    LINK_ERRORS,
    EtcdBadResponse,
    EtcdError,
    EtcdHTTP,
    EtcdTimeout,
    EtcdUnavailable,
    JsonLines,
    describe,
    read_body,
    timed_out,
)

#: etcd v2 error codes the registry acts on.
KEY_NOT_FOUND = 100
TEST_FAILED = 101
NODE_EXISTS = 105
EVENT_INDEX_CLEARED = 401


class EtcdV2Error(EtcdError):
    """etcd answered with its JSON error object."""

    def __init__(
        self,
        error_code: int,
        message: str,
        cause: str | None,
        index: int,
        etcd_index: int | None,
        status: int,
        url: str,
    ) -> None:
        self.error_code = error_code
        self.message = message
        self.cause = cause
        self.index = index
        self.etcd_index = etcd_index
        self.status = status
        self.url = url
        detail = f" ({cause})" if cause else ""
        super().__init__(
            f"etcd error {error_code}: {message}{detail} [{index}] "
            f"(HTTP {status} from {url})"
        )


class EtcdServerError(EtcdError):
    """etcd answered 5xx (a member without a leader, an internal error)."""

    def __init__(self, status: int, error: EtcdV2Error | None, excerpt: str) -> None:
        self.status = status
        self.error = error
        self.excerpt = excerpt
        what = str(error) if error is not None else repr(excerpt)
        super().__init__(f"HTTP {status} from etcd: {what}")


class EtcdWatchEnded(EtcdError):
    """A watch answered 200 with an empty body: the server ended it."""


@frozen
class EtcdNode:
    """A v2 node as rendered by etcd (C{nodes} only for listed directories)."""

    key: str
    value: str | None
    dir: bool
    created_index: int
    modified_index: int
    ttl: int | None = None
    expiration: str | None = None
    nodes: tuple[EtcdNode, ...] = ()


@frozen
class EtcdResult:
    """A successful keys answer: the action, node, prevNode and X-Etcd-Index."""

    action: str
    node: EtcdNode
    prev_node: EtcdNode | None
    etcd_index: int | None
    status: int


def _int_field(data: dict[str, Any], name: str, default: int | None) -> int | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} is not an integer: {value!r}")
    return value


def parse_node(data: object) -> EtcdNode:
    """Turn a node object from an etcd answer into an L{EtcdNode} (ValueError)."""
    if not isinstance(data, dict):
        raise ValueError(f"node is not an object: {data!r:.80}")
    key = data.get("key", "/")
    value = data.get("value")
    is_dir = data.get("dir", False)
    expiration = data.get("expiration")
    children = data.get("nodes", [])
    if not isinstance(key, str):
        raise ValueError(f"node key is not a string: {key!r:.80}")
    if value is not None and not isinstance(value, str):
        raise ValueError(f"value of {key!r} is not a string")
    if not isinstance(is_dir, bool):
        raise ValueError(f"'dir' of {key!r} is not a boolean")
    if expiration is not None and not isinstance(expiration, str):
        raise ValueError(f"'expiration' of {key!r} is not a string")
    if not isinstance(children, list):
        raise ValueError(f"'nodes' of {key!r} is not a list")
    return EtcdNode(
        key=key,
        value=None if is_dir else value,
        dir=is_dir,
        created_index=_int_field(data, "createdIndex", 0) or 0,
        modified_index=_int_field(data, "modifiedIndex", 0) or 0,
        ttl=_int_field(data, "ttl", None),
        expiration=expiration,
        nodes=tuple(parse_node(child) for child in children),
    )


def _etcd_index(headers: Any) -> int | None:
    raw = headers.getRawHeaders(b"x-etcd-index")
    if not raw:
        return None
    try:
        return int(raw[-1])
    except ValueError:
        return None


def _parse_error(
    data: dict[str, Any], status: int, etcd_index: int | None, url: str
) -> EtcdV2Error | None:
    """An L{EtcdV2Error} from an error object, or None if it is not one."""
    code = data.get("errorCode")
    message = data.get("message", "")
    cause = data.get("cause")
    index = data.get("index", 0)
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    if not isinstance(message, str) or not (cause is None or isinstance(cause, str)):
        return None
    if isinstance(index, bool) or not isinstance(index, int):
        index = 0
    return EtcdV2Error(code, message, cause, index, etcd_index, status, url)


def interpret(
    status: int, headers: Any, body: bytes, url: str, watch: bool
) -> EtcdResult:
    """
    Turn one HTTP answer into an L{EtcdResult}, or raise the matching L{EtcdError}.
    """
    etcd_index = _etcd_index(headers)
    excerpt = body[:200].decode("utf-8", "replace")
    data: object = None
    if body.strip():
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            data = None
    if status >= 500:
        error = (
            _parse_error(data, status, etcd_index, url)
            if isinstance(data, dict)
            else None
        )
        raise EtcdServerError(status, error, excerpt)
    if not body.strip():
        if watch and status == 200:
            raise EtcdWatchEnded(f"watch on {url} ended without an event")
        raise EtcdBadResponse("empty body", status, excerpt, url)
    if not isinstance(data, dict):
        raise EtcdBadResponse("body is not a JSON object", status, excerpt, url)
    if "errorCode" in data:
        error = _parse_error(data, status, etcd_index, url)
        if error is None:
            raise EtcdBadResponse("malformed error object", status, excerpt, url)
        raise error
    if not 200 <= status < 300:
        raise EtcdBadResponse(f"unexpected HTTP status {status}", status, excerpt, url)
    return _result(data, status, etcd_index, excerpt, url)


def _result(
    data: dict[str, Any], status: int, etcd_index: int | None, excerpt: str, url: str
) -> EtcdResult:
    action = data.get("action")
    if not isinstance(action, str):
        raise EtcdBadResponse("answer has no 'action'", status, excerpt, url)
    try:
        node = parse_node(data.get("node"))
        prev = data.get("prevNode")
        prev_node = parse_node(prev) if prev is not None else None
    except ValueError as e:
        raise EtcdBadResponse(str(e), status, excerpt, url) from None
    return EtcdResult(action, node, prev_node, etcd_index, status)


def streamed_event(data: object, url: str) -> EtcdResult:
    """One event line of a C{stream=true} watch as an L{EtcdResult} (its
    C{etcd_index} None); L{EtcdBadResponse} if it is not an event."""
    excerpt = repr(data)[:200]
    if not isinstance(data, dict):
        raise EtcdBadResponse("event is not a JSON object", 200, excerpt, url)
    if "errorCode" in data:
        raise EtcdBadResponse("error object in a watch stream", 200, excerpt, url)
    return _result(data, 200, None, excerpt, url)


@frozen
class StreamOpened:
    """A C{stream=true} watch that a member accepted: its base URL and the
    C{X-Etcd-Index} it answered with (events at or below it came from the history)."""

    url: str
    etcd_index: int | None


def _reply_or_stream(
    lines: JsonLines, response: IResponse
) -> Deferred[tuple[int, Any, bytes]] | tuple[int, Any, None]:
    if response.code != 200:
        return _reply(response)
    response.deliverBody(lines)
    return (response.code, response.headers, None)


def _reply(response: IResponse) -> Deferred[tuple[int, Any, bytes]]:
    d = read_body(response)
    return d.addCallback(lambda body: (response.code, response.headers, body))


@define(eq=False)
class EtcdV2Client(EtcdHTTP):
    """
    The etcd v2 keys calls the registry needs, over one connection pool.

    Construct as L{EtcdHTTP}: C{EtcdV2Client(reactor, urls, http=..., ...)}.
    """

    log = Logger()

    # -- the keys calls ---------------------------------------------------------

    def get(
        self, key: str, *, recursive: bool = False, sorted: bool = False
    ) -> Deferred[EtcdResult]:
        """GET a key or directory (C{recursive} for the whole subtree)."""
        params = [("recursive", _bool(recursive)), ("sorted", _bool(sorted))]
        return self._send("GET", key, params)

    def set(
        self,
        key: str,
        value: str,
        *,
        ttl: int | None = None,
        prev_exist: bool | None = None,
    ) -> Deferred[EtcdResult]:
        """
        PUT a value: set (C{prev_exist=None}), create (False) or update (True).

        A C{ttl} makes the key expire; without one the key has no TTL (and an update
        removes an existing TTL, as etcd does).
        """
        params = [] if prev_exist is None else [("prevExist", _bool(prev_exist))]
        form = {"value": value}
        if ttl is not None:
            form["ttl"] = str(_ttl(ttl))
        return self._send("PUT", key, params, form)

    def create(
        self, key: str, value: str, *, ttl: int | None = None
    ) -> Deferred[EtcdResult]:
        """Create a key that must not exist (etcd error 105 if it does)."""
        return self.set(key, value, ttl=ttl, prev_exist=False)

    def update(
        self, key: str, value: str, *, ttl: int | None = None
    ) -> Deferred[EtcdResult]:
        """Update a key that must exist (etcd error 100 if not); createdIndex kept."""
        return self.set(key, value, ttl=ttl, prev_exist=True)

    def refresh(
        self, key: str, ttl: int, *, prev_value: str | None = None
    ) -> Deferred[EtcdResult]:
        """Restart a key's TTL without a new value or a watch event (100 if gone);
        with C{prev_value}, only while the key holds that value (101 if not)."""
        params = [
            ("refresh", "true"),
            ("prevExist", "true"),
            ("ttl", str(_ttl(ttl))),
        ]
        if prev_value is not None:
            params.append(("prevValue", prev_value))
        return self._send("PUT", key, params)

    def delete(
        self,
        key: str,
        *,
        recursive: bool = False,
        dir: bool = False,
        prev_value: str | None = None,
        prev_index: int | None = None,
    ) -> Deferred[EtcdResult]:
        """DELETE a key (or a directory with C{dir}/C{recursive}); with
        C{prev_value} / C{prev_index}, only while the key holds that value and was
        last modified at that index (101 if not)."""
        params = [("recursive", _bool(recursive)), ("dir", _bool(dir))]
        if prev_value is not None:
            params.append(("prevValue", prev_value))
        if prev_index is not None:
            params.append(("prevIndex", str(prev_index)))
        return self._send("DELETE", key, params)

    def watch(
        self, key: str, *, wait_index: int, recursive: bool = False, timeout: float
    ) -> Deferred[EtcdResult]:
        """
        Long-poll for the first event on C{key} with index >= C{wait_index}.

        Fails with L{EtcdTimeout} after C{timeout} seconds without an event,
        L{EtcdWatchEnded} on an empty 200, L{EtcdV2Error} 401 if the index is
        outdated.
        """
        if wait_index < 0:
            raise ValueError(f"wait_index must be >= 0, not {wait_index}")
        params = [
            ("wait", "true"),
            ("recursive", _bool(recursive)),
            ("waitIndex", str(wait_index)),
        ]
        return self._send("GET", key, params, timeout=timeout, watch=True)

    def stream_watch(
        self,
        key: str,
        *,
        wait_index: int,
        recursive: bool = False,
        timeout: float,
        lines: JsonLines,
    ) -> Deferred[StreamOpened]:
        """
        Open a C{stream=true} watch from C{wait_index}: each event goes to C{lines}
        as one JSON line, on one response that stays open, with no new request per
        event.

        Fires with L{StreamOpened} once a member has answered 200 (etcd flushes the
        headers at once); fails as L{watch} does (L{EtcdTimeout} if no member
        answers within C{timeout}, L{EtcdV2Error} 401 if the index is outdated).
        etcd 3.4 sends nothing after an event it found in its history, so a caller
        should treat an event at or below L{StreamOpened.etcd_index} as the last.
        """
        if wait_index < 0:
            raise ValueError(f"wait_index must be >= 0, not {wait_index}")
        params = [
            ("wait", "true"),
            ("stream", "true"),
            ("recursive", _bool(recursive)),
            ("waitIndex", str(wait_index)),
        ]
        return self._send("GET", key, params, timeout=timeout, watch=True, lines=lines)

    # -- one request, with failover ----------------------------------------------

    def _send(
        self,
        method: str,
        key: str,
        params: list[tuple[str, str]],
        form: dict[str, str] | None = None,
        *,
        timeout: float | None = None,
        watch: bool = False,
        lines: JsonLines | None = None,
    ) -> Deferred[Any]:
        if not key.startswith("/"):
            raise ValueError(f"etcd key {key!r} must start with '/'")
        path = "/v2/keys" + quote(key, safe="/")
        limit = self.request_timeout if timeout is None else timeout
        count = len(self.urls)
        start = self._current
        failures: list[tuple[str, BaseException]] = []
        inner: list[Deferred[Any]] = []
        cancelled = False

        def cancel(_: Deferred[EtcdResult]) -> None:
            nonlocal cancelled
            cancelled = True
            for d in inner:
                d.cancel()

        outer: Deferred[Any] = Deferred(cancel)

        def attempt(step: int) -> None:
            index = (start + step) % count
            url = self.urls[index] + path
            d = maybeDeferred(
                self._http.request,
                method,
                url,
                params=params,
                data=form,
                unbuffered=True,
                allow_redirects=False,
            )
            d.addCallback(_reply if lines is None else partial(_reply_or_stream, lines))
            d.addTimeout(limit, self._reactor, onTimeoutCancel=timed_out(url))
            inner[:] = [d]
            d.addCallbacks(
                answered,
                failed,
                callbackArgs=(index, url, step),
                errbackArgs=(url, step),
            )

        def answered(
            reply: tuple[int, Any, bytes | None], index: int, url: str, step: int
        ) -> None:
            status, headers, body = reply
            if body is None and lines is not None:
                self._current = index
                lines._url = url
                outer.callback(StreamOpened(self.urls[index], _etcd_index(headers)))
                return
            assert body is not None
            try:
                result = interpret(status, headers, body, url, watch)
            except EtcdServerError as e:
                move_on(url, step, e)
            except EtcdError as e:
                self._current = index
                outer.errback(e)
            else:
                self._current = index
                outer.callback(result)

        def failed(failure: Failure, url: str, step: int) -> None:
            if cancelled:
                return
            if failure.check(EtcdTimeout) and watch:
                outer.errback(failure)
            elif failure.check(EtcdTimeout, *LINK_ERRORS):
                move_on(url, step, cast(BaseException, failure.value))
            elif failure.check(ValueError):
                outer.errback(EtcdBadResponse(failure.getErrorMessage(), 0, "", url))
            else:
                outer.errback(failure)

        def move_on(url: str, step: int, error: BaseException) -> None:
            failures.append((url, error))
            self.log.debug("etcd {url} failed: {error}", url=url, error=describe(error))
            if step + 1 < count:
                attempt(step + 1)
            else:
                outer.errback(EtcdUnavailable(failures))

        self._track(outer)
        attempt(0)
        return outer


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _ttl(ttl: int) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise ValueError(f"ttl must be a whole number of seconds >= 0, not {ttl!r}")
    return ttl
