"""etcd v3 user/password auth against a real etcd 3.4.

The test turns auth on through the v3 gateway itself (add user root, grant it the
root role, enable auth) on an etcd whose simple tokens live only two seconds, so a
registry must get new tokens while it runs. A wrong password fails with a clear
error that names the user and etcd's reason.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.harness.servers import RealEtcd, shared_instance
from tests.registry.test_service import RecordingListener, eventually, make_id, rec
from twistednode.etcd.v3 import Credentials
from twistednode.registry.backends import make_backend
from twistednode.registry.service import Registry
from twistednode.registry.v3 import AuthenticationFailed

PASSWORD = "s3cret:with-colon"


def post_v3(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def enable_root_auth(url: str) -> None:
    """Through the v3 gateway at C{url}: add user root (L{PASSWORD}) with the root
    role and turn authentication on, for the whole etcd cluster."""
    post_v3(url, "/v3/auth/user/add", {"name": "root", "password": PASSWORD})
    post_v3(url, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    post_v3(url, "/v3/auth/enable", {})


def shared_auth_etcd() -> RealEtcd:
    """One etcd 3.4 (no v2) with auth enabled and 2 s tokens, per test process."""

    def start() -> RealEtcd:
        etcd = RealEtcd(enable_v2=False, extra_args=["--auth-token-ttl", "2"]).start()
        enable_root_auth(etcd.url)
        return etcd

    return shared_instance("etcd-auth", start)


class EtcdAuthTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.etcd = shared_auth_etcd()
        self.cluster = "auth-" + uuid.uuid4().hex[:12]

    def registry(self, member: str, password: str, api: str = "v3") -> Registry:
        backend = make_backend(
            self.reactor,
            [self.etcd.url],
            api,
            auth=Credentials("root", password),
        )
        registry = Registry(
            backend=backend,
            cluster=self.cluster,
            listener=RecordingListener(),
            clock=self.reactor,
            record=rec(member),
            ttl=3,
        )
        registry.startService()

        async def stop() -> None:
            if registry.running:
                await registry.stopService()

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        return registry

    def test_anonymous_is_refused(self) -> None:
        """The fixture really has auth on: an anonymous range is refused."""
        request = urllib.request.Request(
            self.etcd.url + "/v3/kv/range", data=b'{"key":"Zm9v"}', method="POST"
        )
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        body = caught.exception.read().decode()
        caught.exception.close()
        self.assertIn("user name is empty", body)

    def test_registry_with_password(self) -> Deferred[None]:
        """Registries with the right password register, meet and keep working."""
        return Deferred.fromCoroutine(self._with_password())

    async def _with_password(self) -> None:
        a = self.registry(make_id(1), PASSWORD)
        b = self.registry(make_id(2), PASSWORD, api="auto")
        await eventually(
            lambda: make_id(2) in a.peers and make_id(1) in b.peers, "meet"
        )
        await deferLater(self.reactor, 5.0)
        self.assertEqual((a.state, b.state), ("watching", "watching"))
        self.assertEqual(a.stats.errors, 0, a.last_error)
        self.assertEqual(a.stats.recreations, 0)
        self.assertGreaterEqual(a.stats.refreshes, 3)
        await b.stopService()
        await eventually(lambda: make_id(2) not in a.peers, "clean leave")

    def test_expired_token_is_renewed(self) -> Deferred[None]:
        """A token that expired while idle is replaced without an error."""
        return Deferred.fromCoroutine(self._expired_token())

    async def _expired_token(self) -> None:
        rejected: list[dict[str, Any]] = []

        @implementer(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            if "token rejected" in str(event.get("log_format", "")):
                rejected.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        backend = make_backend(
            self.reactor, [self.etcd.url], "v3", auth=Credentials("root", PASSWORD)
        )
        self.addCleanup(backend.close)
        directory = f"/twistednode/{self.cluster}/members"
        await backend.list(directory)
        await deferLater(self.reactor, 3.0)  # past the 2 s token TTL, unused
        self.assertEqual((await backend.list(directory)).entries, ())
        self.assertEqual(len(rejected), 1)
        self.assertEqual(rejected[0]["url"], self.etcd.url)

    def test_wrong_password(self) -> Deferred[None]:
        """A wrong password fails with a clear error naming user and reason."""
        return Deferred.fromCoroutine(self._wrong_password())

    async def _wrong_password(self) -> None:
        backend = make_backend(
            self.reactor, [self.etcd.url], "v3", auth=Credentials("root", "nope")
        )
        try:
            with self.assertRaises(AuthenticationFailed) as caught:
                await backend.list(f"/twistednode/{self.cluster}/members")
        finally:
            await backend.close()
        message = str(caught.exception)
        self.assertIn("refused user 'root'", message)
        self.assertIn("invalid user ID or password", message)
        self.assertNotIn("nope", message)

        registry = self.registry(make_id(3), "nope")
        await eventually(lambda: registry.last_error is not None, "the failure")
        self.assertIn("invalid user ID or password", registry.last_error or "")
        self.assertEqual(registry.state, "unreachable")
