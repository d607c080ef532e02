# -*- test-case-name: tests.transport.test_transport -*-
"""The sending end of the node-to-node transport: HTTP/JSON POSTs over treq.

Why HTTP/JSON and not AMP: AMP caps every value at 65,535 bytes, so a 1 MiB channel
message or call payload would need a chunking layer of our own; HTTP carries any
size, is what the node's other ends already speak (Klein status API, treq etcd
clients), can be read with curl and tcpdump, and gets TLS from an endpoint string.
A persistent connection pool makes a forwarded call one round trip on a warm
connection.

Every request has a deadline (L{CallRequest.timeout}); a connection that cannot be
made, is refused or is reset fails with L{Unreachable}, a deadline that passes with
L{CallTimedOut}, and an error answer with the exception its kind names. treq loads
with the first request, not with the node.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectError, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistednode.routing.errors import CallError, CallTimedOut, Unreachable, error_of
from twistednode.routing.request import CallRequest
from twistednode.transport.proof import HEADER, sign
from twistednode.trust.keyring import Keyring

if TYPE_CHECKING:
    from treq.client import HTTPClient
    from twisted.web.client import HTTPConnectionPool

    from twistednode.etcd.tls import ClientTLS

CALL_PATH: Final = "/v1/node/call"
PUBLISH_PATH: Final = "/v1/node/publish"
CONNECT_TIMEOUT: Final = 2.0
#: Seconds an idle pooled connection is kept (the server closes one idle for
#: twistednode.transport.server.IDLE_LIMIT).
POOL_IDLE: Final = 20
#: Idle connections kept per peer (calls in flight to one owner reuse them).
POOL_PER_HOST: Final = 32
PUBLISH_TIMEOUT: Final = 10.0


@define(eq=False)
class TransportClient:
    """POSTs calls and channel messages to other nodes' transports.

    @ivar reactor: connects and times the deadlines.
    @ivar cluster: bound into every proof.
    @ivar keyring: the current keyring (None: requests carry no proof).
    @ivar tls: client TLS for https:// transports (None: the platform's trust).
    @ivar http: the treq client to use (tests pass a C{StubTreq}); default: one
        over a persistent pool, made with the first request.
    """

    log = Logger()

    reactor: Any
    cluster: str
    keyring: Callable[[], Keyring | None]
    tls: ClientTLS | None = None
    http: HTTPClient | None = None
    _pool: HTTPConnectionPool | None = field(default=None, init=False)

    def call(self, url: str, request: CallRequest) -> Deferred[Any]:
        """Send C{request} to the transport at C{url}; its answer, or a CallError."""
        body = json.dumps(request.document(), allow_nan=False).encode("utf-8")
        posted = self._post(url, CALL_PATH, body, request.timeout)
        return posted.addCallback(lambda document: document.get("answer"))

    def publish(
        self, url: str, channel: str, sender: dict[str, Any], payload: Any
    ) -> Deferred[Any]:
        """Deliver one channel message at C{url} (a message too large for UDP)."""
        document = {"channel": channel, "payload": payload, **sender}
        body = json.dumps(document, allow_nan=False).encode("utf-8")
        return self._post(url, PUBLISH_PATH, body, PUBLISH_TIMEOUT)

    def close(self) -> Deferred[None]:
        """Close the pooled connections (the node's stopService)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self.http = None
        if pool is None:
            return succeed(None)
        closed: Deferred[None] = pool.closeCachedConnections()
        return closed

    def _http(self) -> HTTPClient:
        if self.http is None:
            from twistednode.etcd.httpclient import http_client

            self.http, self._pool = http_client(
                self.reactor, tls=self.tls, connect_timeout=CONNECT_TIMEOUT
            )
            # Well before the server's idle limit, so a pooled
            # connection is never one the server is closing.
            self._pool.cachedConnectionTimeout = POOL_IDLE
            # Twisted keeps 2 idle connections per host: a burst of answers would
            # close the rest, and the next burst open them again.
            self._pool.maxPersistentPerHost = POOL_PER_HOST
        return self.http

    def _post(
        self, url: str, path: str, body: bytes, timeout: float
    ) -> Deferred[dict[str, Any]]:
        headers: dict[bytes | str, list[bytes | str]] = {
            "Content-Type": ["application/json"]
        }
        keyring = self.keyring()
        if keyring is not None:
            proof = sign(
                keyring, self.cluster, self.reactor.seconds(), "POST", path, body
            )
            headers[HEADER] = [proof]
        target = url.rstrip("/") + path
        d: Deferred[Any] = self._http().post(target, data=body, headers=headers)
        d.addCallback(self._read, target)

        def late(result: object, seconds: float) -> Failure:
            return Failure(
                CallTimedOut(f"{target} did not answer within {seconds:.3g} s")
            )

        d.addTimeout(max(timeout, 0.001), self.reactor, onTimeoutCancel=late)
        d.addErrback(self._failed, target)
        return d

    def _read(self, response: Any, target: str) -> Deferred[dict[str, Any]]:
        def parse(content: bytes) -> dict[str, Any]:
            try:
                document = json.loads(content)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise CallError(
                    f"{target} answered {response.code} with something that is not "
                    "a JSON object"
                )
            if response.code != 200:
                raise error_of(
                    document.get("error"), document.get("message"), document.get("node")
                )
            return document

        content: Deferred[bytes] = response.content()
        return content.addCallback(parse)

    def _failed(self, failure: Failure, target: str) -> Failure:
        if failure.check(CallError, CancelledError):
            return failure
        if failure.check(ConnectError, ConnectionLost):
            raise Unreachable(f"{target}: {failure.getErrorMessage()}")
        # treq/twisted.web wrap connection losses (ResponseNeverReceived, ...).
        raise Unreachable(
            f"{target}: {type(failure.value).__name__}: {failure.getErrorMessage()}"
        )
