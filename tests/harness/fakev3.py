"""
A small fake of etcd's v3 JSON gateway, for unit tests over C{StubTreq}.

It keeps what the registry backend touches the way etcd 3.4 does (checked against
the real gateway, see C{specs/etcd-v3-gateway.md}): one global revision, keys with
create/mod revisions and a lease, leases that expire on the injected clock and
delete their keys in one revision, transactions with CREATE compares, prefix
ranges, compaction, a streaming C{/v3/watch} (created line, history replay from
C{start_revision}, live events, cancel with C{compact_revision}), and simple-token
auth. Answers use etcd's shapes: base64 keys and values, int64s as strings,
default-valued fields left out, gRPC errors as C{{"error","message","code"}}.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from attrs import define, field
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

MEMBER_ID = "13668033151171901709"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: object) -> bytes:
    return base64.b64decode(str(text or ""), validate=True)


class GrpcError(Exception):
    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


LEASE_NOT_FOUND = GrpcError(5, "etcdserver: requested lease not found", 404)
COMPACTED = GrpcError(11, "etcdserver: mvcc: required revision has been compacted", 400)
BAD_TOKEN = GrpcError(16, "etcdserver: invalid auth token", 401)
NO_USER = GrpcError(3, "etcdserver: user name is empty", 400)
BAD_PASSWORD = GrpcError(
    3, "etcdserver: authentication failed, invalid user ID or password", 400
)


@define
class KV:
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    def render(self, key: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": b64(key),
            "create_revision": str(self.create_revision),
            "mod_revision": str(self.mod_revision),
            "version": str(self.version),
        }
        if self.value:
            out["value"] = b64(self.value)
        if self.lease:
            out["lease"] = str(self.lease)
        return out


@define
class Lease:
    ttl: int
    keys: set[bytes] = field(factory=set)
    timer: IDelayedCall | None = None


@define
class Watcher:
    key: bytes
    end: bytes | None
    prev_kv: bool
    send: Callable[[dict[str, Any]], None]

    def matches(self, key: bytes) -> bool:
        if self.end is None:
            return key == self.key
        if self.end == b"\x00":
            return key >= self.key
        return self.key <= key < self.end


@define(eq=False)
class FakeEtcdV3:
    """The fake gateway; C{resource()} is what a C{StubTreq} wraps."""

    app = Klein()

    clock: Clock
    revision: int = 1
    compacted: int = 0
    kvs: dict[bytes, KV] = field(factory=dict)
    history: list[tuple[int, list[dict[str, Any]]]] = field(factory=list)
    leases: dict[int, Lease] = field(factory=dict)
    watchers: list[Watcher] = field(factory=list)
    watch_requests: int = 0
    hold_watches: bool = False
    held: list[tuple[IRequest, dict[str, Any], Deferred[bytes]]] = field(factory=list)
    calls: list[str] = field(factory=list)
    users: dict[str, str] = field(factory=dict)
    auth_enabled: bool = False
    tokens: set[str] = field(factory=set)
    seen_tokens: list[str | None] = field(factory=list)
    _next_lease: int = 7587879000000000001
    _next_token: int = 1

    def resource(self) -> IResource:
        return self.app.resource()

    # -- the store ---------------------------------------------------------------

    def _commit(self, ops: list[tuple[str, bytes, bytes, int]]) -> int:
        """Apply puts/deletes as one revision; notify watchers."""
        self.revision += 1
        events = []
        for op, key, value, lease in ops:
            prev = self.kvs.get(key)
            if prev is not None and prev.lease and prev.lease in self.leases:
                self.leases[prev.lease].keys.discard(key)
            if op == "put":
                kv = KV(
                    value,
                    prev.create_revision if prev else self.revision,
                    self.revision,
                    (prev.version if prev else 0) + 1,
                    lease,
                )
                self.kvs[key] = kv
                if lease:
                    self.leases[lease].keys.add(key)
                event: dict[str, Any] = {"kv": kv.render(key)}
            else:
                if prev is None:
                    continue
                del self.kvs[key]
                event = {
                    "type": "DELETE",
                    "kv": {"key": b64(key), "mod_revision": str(self.revision)},
                }
            if prev is not None:
                event["prev_kv"] = prev.render(key)
            events.append(event)
        self.history.append((self.revision, events))
        for watcher in list(self.watchers):
            self._send_events(watcher, self.revision, events)
        return self.revision

    def _send_events(
        self, watcher: Watcher, revision: int, events: list[dict[str, Any]]
    ) -> None:
        mine = []
        for event in events:
            if watcher.matches(unb64(event["kv"]["key"])):
                if not watcher.prev_kv:
                    event = {k: v for k, v in event.items() if k != "prev_kv"}
                mine.append(event)
        if mine:
            watcher.send({"result": {"header": self.header(revision), "events": mine}})

    def header(self, revision: int | None = None) -> dict[str, str]:
        return {
            "cluster_id": "15118495548433857066",
            "member_id": MEMBER_ID,
            "revision": str(self.revision if revision is None else revision),
            "raft_term": "2",
        }

    def put(self, key: str, value: str, lease: int = 0) -> int:
        """Write a key directly (as another client would)."""
        return self._commit([("put", key.encode(), value.encode(), lease)])

    def delete(self, key: str) -> int:
        return self._commit([("delete", key.encode(), b"", 0)])

    def grant(self, ttl: int) -> int:
        self._next_lease += 1
        lease = Lease(max(ttl, 2))  # etcd's minimum TTL on a default cluster
        self.leases[self._next_lease] = lease
        self._arm(self._next_lease)
        return self._next_lease

    def _arm(self, lease_id: int) -> None:
        lease = self.leases[lease_id]
        if lease.timer is not None and lease.timer.active():
            lease.timer.cancel()
        lease.timer = self.clock.callLater(lease.ttl, self.revoke, lease_id)

    def revoke(self, lease_id: int) -> None:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise LEASE_NOT_FOUND
        if lease.timer is not None and lease.timer.active():
            lease.timer.cancel()
        if lease.keys:
            self._commit([("delete", key, b"", 0) for key in sorted(lease.keys)])

    def compact(self, revision: int) -> None:
        self.compacted = max(self.compacted, revision)
        self.history = [(r, e) for r, e in self.history if r > revision]

    def end_watches(self) -> None:
        """Close every watch stream, as a member going away would."""
        for watcher in list(self.watchers):
            watcher.send({})

    # -- HTTP ----------------------------------------------------------------------

    @app.route("/<path:path>", methods=["POST", "GET"])
    def dispatch(self, request: IRequest, path: str) -> Any:
        request.setHeader("content-type", "application/json")
        if request.method != b"POST":
            request.setResponseCode(405)
            return b'{"code":12,"error":"Method Not Allowed"}'
        self.calls.append(path)
        try:
            body = json.loads(request.content.read() or b"{}")
            handler = _ROUTES.get(path)
            if handler is None:
                request.setResponseCode(404)
                request.setHeader("content-type", "text/plain")
                return b"404 page not found\n"
            if path != "v3/auth/authenticate" and not path.startswith("v3/lease"):
                self._check_token(request)
            return handler(self, request, body)
        except GrpcError as e:
            request.setResponseCode(e.status)
            error = {"error": e.message, "message": e.message, "code": e.code}
            return json.dumps(error).encode()
        except (ValueError, KeyError) as e:
            request.setResponseCode(400)
            return json.dumps({"error": str(e), "message": str(e), "code": 3}).encode()

    def _check_token(self, request: IRequest) -> None:
        token = request.getHeader("authorization")
        self.seen_tokens.append(token)
        if not self.auth_enabled:
            return
        if token is None:
            raise NO_USER
        if token not in self.tokens:
            raise BAD_TOKEN

    def _answer(self, data: dict[str, Any]) -> bytes:
        return json.dumps({"header": self.header(), **data}).encode()

    def _authenticate(self, request: IRequest, body: dict[str, Any]) -> bytes:
        if not self.auth_enabled:
            raise GrpcError(9, "etcdserver: authentication is not enabled", 400)
        if self.users.get(body.get("name", "")) != body.get("password"):
            raise BAD_PASSWORD
        token = f"tok{self._next_token}.{self.revision}"
        self._next_token += 1
        self.tokens.add(token)
        return self._answer({"token": token})

    def _status(self, request: IRequest, body: dict[str, Any]) -> bytes:
        return self._answer({"version": "3.4.23", "leader": MEMBER_ID})

    def _range(self, request: IRequest, body: dict[str, Any]) -> bytes:
        return self._answer(self._range_result(body))

    def _range_result(self, body: dict[str, Any]) -> dict[str, Any]:
        key = unb64(body["key"])
        end = unb64(body["range_end"]) if body.get("range_end") else None
        probe = Watcher(key, end, False, lambda _: None)
        found = [kv.render(k) for k, kv in sorted(self.kvs.items()) if probe.matches(k)]
        out: dict[str, Any] = {}
        if found:
            out["kvs"] = found
            out["count"] = str(len(found))
        return out

    def _deleterange(self, request: IRequest, body: dict[str, Any]) -> bytes:
        key = unb64(body["key"])
        if key in self.kvs:
            self._commit([("delete", key, b"", 0)])
            return self._answer({"deleted": "1"})
        return self._answer({})

    def _put(self, request: IRequest, body: dict[str, Any]) -> bytes:
        lease = int(body.get("lease", 0))
        if lease and lease not in self.leases:
            raise LEASE_NOT_FOUND
        self._commit([("put", unb64(body["key"]), unb64(body.get("value")), lease)])
        return self._answer({})

    def _txn(self, request: IRequest, body: dict[str, Any]) -> bytes:
        ok = all(self._compare(c) for c in body.get("compare", []))
        ops = body.get("success" if ok else "failure", [])
        writes: list[tuple[str, bytes, bytes, int]] = []
        for op in ops:
            if "requestPut" in op:
                put = op["requestPut"]
                lease = int(put.get("lease", 0))
                if lease and lease not in self.leases:
                    raise LEASE_NOT_FOUND
                writes.append(
                    ("put", unb64(put["key"]), unb64(put.get("value")), lease)
                )
            elif "requestDeleteRange" in op:
                writes.append(
                    ("delete", unb64(op["requestDeleteRange"]["key"]), b"", 0)
                )
        keys = [w[1] for w in writes]
        if len(keys) != len(set(keys)):
            raise GrpcError(3, "etcdserver: duplicate key given in txn request", 400)
        if writes:
            self._commit(writes)
        responses: list[dict[str, Any]] = []
        for op in ops:
            if "requestPut" in op:
                responses.append({"response_put": {"header": {}}})
            elif "requestDeleteRange" in op:
                responses.append({"response_delete_range": {"header": {}}})
            else:
                found = self._range_result(op["requestRange"])
                responses.append({"response_range": {"header": {}, **found}})
        out: dict[str, Any] = {}
        if ok:
            out["succeeded"] = True
        if responses:
            out["responses"] = responses
        return self._answer(out)

    def _compare(self, compare: dict[str, Any]) -> bool:
        assert compare["target"] == "CREATE"
        kv = self.kvs.get(unb64(compare["key"]))
        actual = 0 if kv is None else kv.create_revision
        wanted = int(compare.get("createRevision", 0))
        result = compare.get("result", "EQUAL")
        return actual == wanted if result == "EQUAL" else actual > wanted

    def _compaction(self, request: IRequest, body: dict[str, Any]) -> bytes:
        self.compact(int(body["revision"]))
        return self._answer({})

    def _grant(self, request: IRequest, body: dict[str, Any]) -> bytes:
        lease_id = self.grant(int(body["TTL"]))
        return self._answer(
            {"ID": str(lease_id), "TTL": str(self.leases[lease_id].ttl)}
        )

    def _keepalive(self, request: IRequest, body: dict[str, Any]) -> bytes:
        lease_id = int(body["ID"])
        result: dict[str, Any] = {"header": self.header(), "ID": str(lease_id)}
        if lease_id in self.leases:
            self._arm(lease_id)
            result["TTL"] = str(self.leases[lease_id].ttl)
        return json.dumps({"result": result}).encode() + b"\n"

    def _revoke(self, request: IRequest, body: dict[str, Any]) -> bytes:
        self.revoke(int(body["ID"]))
        return self._answer({})

    def release_watches(self) -> None:
        """Let the watch requests held by C{hold_watches} through, in order."""
        self.hold_watches = False
        held, self.held = self.held, []
        for request, body, answer in held:
            self._watch(request, body).chainDeferred(answer)

    def _watch(self, request: IRequest, body: dict[str, Any]) -> Any:
        if self.hold_watches:
            # A watch whose request is slow to reach the server.
            answer: Deferred[bytes] = Deferred()
            self.held.append((request, body, answer))
            return answer
        self.watch_requests += 1
        create = body["create_request"]
        start = int(create.get("start_revision", 0))
        end = unb64(create["range_end"]) if create.get("range_end") else None

        def forget(_: object) -> None:
            if watcher in self.watchers:
                self.watchers.remove(watcher)

        # Klein keeps the response open until this fires, and cancels it when the
        # client goes away.
        done: Deferred[bytes] = Deferred(forget)

        def send(message: dict[str, Any]) -> None:
            if done.called:
                return
            if not message:  # end_watches()
                forget(None)
                done.callback(b"")
                return
            request.write(json.dumps(message).encode() + b"\n")

        watcher = Watcher(unb64(create["key"]), end, bool(create.get("prev_kv")), send)
        send({"result": {"header": self.header(), "created": True}})
        if start and start <= self.compacted:
            cancel = {
                "header": {k: v for k, v in self.header().items() if k != "revision"},
                "canceled": True,
                "compact_revision": str(self.compacted),
            }
            send({"result": cancel})
            return done
        self.watchers.append(watcher)
        if start:
            for revision, events in self.history:
                if revision >= start:
                    self._send_events(watcher, revision, events)
        return done


_ROUTES: dict[str, Callable[[FakeEtcdV3, IRequest, dict[str, Any]], Any]] = {
    "v3/auth/authenticate": FakeEtcdV3._authenticate,
    "v3/maintenance/status": FakeEtcdV3._status,
    "v3/kv/range": FakeEtcdV3._range,
    "v3/kv/put": FakeEtcdV3._put,
    "v3/kv/deleterange": FakeEtcdV3._deleterange,
    "v3/kv/txn": FakeEtcdV3._txn,
    "v3/kv/compaction": FakeEtcdV3._compaction,
    "v3/lease/grant": FakeEtcdV3._grant,
    "v3/lease/keepalive": FakeEtcdV3._keepalive,
    "v3/lease/revoke": FakeEtcdV3._revoke,
    "v3/watch": FakeEtcdV3._watch,
}
