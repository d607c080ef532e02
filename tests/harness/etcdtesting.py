"""Helpers for minietcd tests: watcher recorders, and a KeysAPI on a Clock
driven through StubTreq."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from treq import content
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse

from minietcd.api import KeysAPI
from minietcd.errors import EtcdError
from minietcd.events import Event
from minietcd.store import Store

NOW = 1_700_000_000.0
BASE = "http://127.0.0.1:2379"
FORM = {b"Content-Type": [b"application/x-www-form-urlencoded"]}


class Answer:
    """A response: status, headers (lower-case names) and body."""

    def __init__(self, response: IResponse, body: bytes) -> None:
        self.code = response.code
        self.headers = {
            name.decode().lower(): values[0].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        self.body = body
        self.length = response.length

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class APITestCase(SynchronousTestCase):
    """A KeysAPI on a Clock at a realistic epoch, driven through StubTreq."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = Store()
        self.api = KeysAPI(clock=self.clock, store=self.store)
        self.stub = StubTreq(self.api.resource())
        self.addCleanup(self.api.stop)

    def send(
        self, method: str, path: str, body: bytes | None = None, form: bool = True
    ) -> Any:
        """Start a request; return the Deferred of its response."""
        headers = FORM if form and body is not None else {}
        return self.stub.request(
            method, BASE + path, data=body, headers=headers, allow_redirects=False
        )

    def call(
        self, method: str, path: str, body: bytes | None = None, form: bool = True
    ) -> Answer:
        """Make a request that completes at once; return its answer."""
        response = self.successResultOf(self.send(method, path, body, form))
        return Answer(response, self.successResultOf(content(response)))

    def assertError(
        self, answer: Answer, status: int, code: int, cause: str | None, index: int
    ) -> None:
        """C{answer} is the etcd error C{code} with this cause and index."""
        expected: dict[str, object] = {
            "errorCode": code,
            "message": answer.json["message"],
        }
        if cause is not None:
            expected["cause"] = cause
        expected["index"] = index
        self.assertEqual((answer.code, answer.json), (status, expected))
        self.assertEqual(answer.headers["x-etcd-index"], str(index))
        self.assertNotIn("x-raft-index", answer.headers)
        self.assertTrue(answer.body.endswith(b"\n"))


class Recorder:
    """Collects the events a watcher receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def actions(self) -> list[tuple[str, str]]:
        return [(event.action, event.node.key) for event in self.events]


def error_of(
    test: SynchronousTestCase, call: Callable[..., object], *args: Any, **kw: Any
) -> EtcdError:
    """Call and return the L{EtcdError} it raises."""
    error: EtcdError = test.assertRaises(EtcdError, call, *args, **kw)
    return error
