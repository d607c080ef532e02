# -*- test-case-name: tests.transport.test_transport -*-
"""The receiving end of the node-to-node transport: two POST routes, all thin.

- C{POST /v1/node/call}: a L{CallRequest} document; the router runs or forwards it
  (L{Router.receive}); 200 C{{"answer": ..., "node": <id>}}, or the error's status
  with C{{"error": <kind>, "message": ..., "node": ...}}.
- C{POST /v1/node/publish}: C{{"channel", "payload", "from", "hostName", "pid"}}:
  a channel message too large for one datagram; 200 C{{"delivered": bool}}.

When the node has a keyring, a request without a valid proof of the cluster key
(L{twistednode.transport.proof}) is refused with 401 before its body is parsed.
Bodies above L{MAX_BODY} are refused with 413. A caller that goes away cancels the
call it was waiting for. Anything else is a JSON error too: 404, 405, 400.

This is a plain C{twisted.web} resource rather than Klein: the transport listens on
every node by default, and Klein (with werkzeug) costs a node about 35 ms of start-up
CPU for two routes; the status API, opt-in, stays on Klein.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tapkit.guardedsite import GuardedSite
from twistednode.routing.errors import BadCall, CallError, Unauthenticated
from twistednode.routing.request import CallRequest
from twistednode.transport.client import CALL_PATH, PUBLISH_PATH
from twistednode.transport.proof import HEADER, ProofChecker, ProofError

#: Seconds a request's headers may take, and a kept-alive connection may idle
#: (callers keep idle connections for less: client.POOL_IDLE).
IDLE_LIMIT: Final = 60.0

#: The largest request body accepted (a 1 MiB message is well inside it).
MAX_BODY: Final = 16 * 1024 * 1024

#: publish(channel, payload, sender document) -> whether a subscriber took it.
Publish = Callable[[str, Any, dict[str, Any]], bool]


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _error_document(error: CallError) -> dict[str, Any]:
    return {"error": error.kind, "message": error.message, "node": error.node}


@define(eq=False)
class TransportResource(Resource):
    """The two routes, over a router (calls) and the node (large channel messages).

    @ivar node_id: named in answers.
    @ivar receive: L{Router.receive}.
    @ivar publish: delivers a large channel message to its subscriber.
    @ivar checker: refuses requests without a proof of the cluster key.
    @ivar clock: C{seconds()} for the proof's time window.
    """

    isLeaf = True
    log = Logger()

    node_id: str
    receive: Callable[[CallRequest], Deferred[Any]]
    publish: Publish
    checker: ProofChecker
    clock: Any
    refused: dict[str, int] = field(factory=dict)

    def __attrs_post_init__(self) -> None:
        Resource.__init__(self)

    def render_GET(self, request: Request) -> bytes:
        return self._refuse(request, 405, "bad-method", "use POST")

    def render_POST(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace")
        if path not in (CALL_PATH, PUBLISH_PATH):
            return self._refuse(request, 404, "not-found", f"no route {path}")
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return self._refuse(
                request, 413, "too-large", f"body over {MAX_BODY} bytes"
            )
        assert request.content is not None
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return self._refuse(
                request, 413, "too-large", f"body over {MAX_BODY} bytes"
            )
        proof = request.getHeader(HEADER)
        try:
            self.checker.check(self.clock.seconds(), proof, "POST", path, body)
        except ProofError as e:
            self.log.debug("refused a transport request: {why}", why=str(e))
            return self._send_error(request, Unauthenticated(str(e), self.node_id))
        try:
            document = json.loads(body)
        except ValueError:
            return self._send_error(request, BadCall("the body is not JSON"))
        if path == PUBLISH_PATH:
            return self._publish(request, document)
        try:
            call = CallRequest.from_document(document)
        except BadCall as e:
            return self._send_error(request, e)
        answered = self.receive(call)
        gone: list[Failure] = []

        def caller_left(failure: Failure) -> None:
            gone.append(failure)
            answered.cancel()

        request.notifyFinish().addErrback(caller_left)

        def answer(value: Any) -> None:
            if not gone:
                request.setHeader(b"content-type", b"application/json")
                request.write(_json({"answer": value, "node": self.node_id}))
                request.finish()

        def failed(failure: Failure) -> None:
            if not gone:
                request.write(self._send_error(request, self._error(failure)))
                request.finish()

        answered.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _publish(self, request: Request, document: object) -> bytes:
        if not isinstance(document, dict) or not isinstance(
            document.get("channel"), str
        ):
            return self._send_error(request, BadCall("a message needs a 'channel'"))
        sender = {k: document.get(k) for k in ("from", "hostName", "pid")}
        if not isinstance(sender["from"], str):
            return self._send_error(request, BadCall("'from' must be a node id"))
        delivered = self.publish(document["channel"], document.get("payload"), sender)
        request.setHeader(b"content-type", b"application/json")
        return _json({"delivered": delivered})

    def _error(self, failure: Failure) -> CallError:
        if isinstance(failure.value, CallError):
            return failure.value
        if not failure.check(CancelledError):
            self.log.failure("a transport call failed unexpectedly", failure)
        return CallError(f"node {self.node_id}: {failure.getErrorMessage()}")

    def _send_error(self, request: Request, error: CallError) -> bytes:
        self.refused[error.kind] = self.refused.get(error.kind, 0) + 1
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", b"application/json")
        document = _error_document(error)
        if document["node"] is None:
            document["node"] = self.node_id
        return _json(document)

    def _refuse(self, request: Request, status: int, kind: str, message: str) -> bytes:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return _json({"error": kind, "message": message, "node": self.node_id})


@define(eq=False)
class TransportService(Service):
    """Listens on an endpoint string; L{port} is the bound port once running.

    @ivar reactor: the reactor the endpoint is parsed against.
    @ivar endpoint: e.g. C{tcp:0:interface=10.0.0.5} or C{ssl:7001:privateKey=...}.
    @ivar resource: the routes.
    @ivar listening: told C{(port, secure)} once the endpoint listens.
    """

    reactor: Any
    endpoint: str
    resource: TransportResource
    listening: Callable[[int, bool], None] | None = None
    _listening: IListeningPort | None = field(default=None, init=False)

    @property
    def port(self) -> int | None:
        listening = self._listening
        return None if listening is None else int(listening.getHost().port)  # type: ignore[attr-defined]

    @property
    def secure(self) -> bool:
        return self.endpoint.split(":", 1)[0] in ("ssl", "tls")

    def startService(self) -> None:
        from twisted.internet.endpoints import serverFromString

        Service.startService(self)
        # No access log: a busy cluster forwards thousands of calls a second.
        site = GuardedSite(
            self.resource,
            header_timeout=IDLE_LIMIT,
            access_log=False,
            reactor=self.reactor,
        )
        listening = serverFromString(self.reactor, self.endpoint).listen(site)
        outcome: list[Any] = []
        listening.addBoth(outcome.append)
        if not outcome:
            raise RuntimeError(f"transport endpoint {self.endpoint} did not listen")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self._listening = outcome[0]
        if self.listening is not None:
            self.listening(self.port or 0, self.secure)

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        listening, self._listening = self._listening, None
        if listening is None:
            return None
        return listening.stopListening()
