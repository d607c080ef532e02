"""The demo's client of L{demo.docstore}: documents over HTTP, to any node.

Every node answers C{POST /v1/route/<service>/<key>} for a key whatever node owns
it (it forwards the call to the owner) and C{GET /v1/owner/<key>} with the owner in
its view. The demo sends its requests from L{PARALLEL} threads, each with one
kept-alive connection per node; the story tallies the answers.
"""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from attrs import frozen

PARALLEL = 8
"""Requests in flight at once."""

REQUEST_TIMEOUT = 30.0
"""Seconds one request may take (a call to a dead owner retries for 5 s)."""

T = TypeVar("T")


def document_keys(count: int) -> list[str]:
    """The demo's keys: doc-0000, doc-0001, ..."""
    return [f"doc-{i:04d}" for i in range(count)]


def document(key: str) -> dict[str, object]:
    """The document the demo stores under C{key}."""
    return {"title": f"document {key.removeprefix('doc-')}"}


class RequestFailed(Exception):
    """A node answered with an error, or not at all."""


@frozen
class Stored:
    """A C{docs.put} answer: which node the demo sent it to, and who stored it."""

    key: str
    sent_to: str
    stored_by: str


@frozen
class Looked:
    """A C{docs.get} answer: the owner that answered, and whether it had it."""

    key: str
    sent_to: str
    owner: str
    found: bool


class Connections:
    """One kept-alive connection per node, for one thread."""

    def __init__(self, ports: Mapping[str, int]) -> None:
        self.ports = ports
        self._open: dict[str, http.client.HTTPConnection] = {}

    def request(
        self, name: str, method: str, path: str, body: object | None = None
    ) -> Any:
        """One request to node C{name}; its JSON answer, RequestFailed if not 200."""
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"content-type": "application/json"}
        for attempt in (1, 2):
            connection = self._open.get(name)
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.ports[name], timeout=REQUEST_TIMEOUT
                )
                self._open[name] = connection
            try:
                connection.request(method, path, data, headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as e:
                connection.close()
                del self._open[name]
                if attempt == 2:
                    raise RequestFailed(f"{method} {path} to {name}: {e}") from e
                continue  # a kept-alive connection the node closed: once more
            if response.status != 200:
                text = answer.decode("utf-8", "replace")
                raise RequestFailed(
                    f"{method} {path} to {name}: {response.status} {text}"
                )
            return json.loads(answer)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every connection."""
        for connection in self._open.values():
            connection.close()
        self._open.clear()


Request = Callable[[Connections, str, str], T]
"""C{(connections, key, node name)} -> an answer."""


class Client:
    """Requests for many keys, each to a random one of the named nodes' HTTP
    ports, from L{PARALLEL} threads at once."""

    def __init__(self, ports: Mapping[str, int], rng: random.Random) -> None:
        self.ports = dict(ports)
        self.rng = rng

    def _each(self, keys: Sequence[str], one: Request[T]) -> list[T]:
        names = sorted(self.ports)
        targets = [(key, self.rng.choice(names)) for key in keys]
        shares = [targets[i::PARALLEL] for i in range(PARALLEL)]

        def run(share: list[tuple[str, str]]) -> list[T]:
            connections = Connections(self.ports)
            try:
                return [one(connections, key, name) for key, name in share]
            finally:
                connections.close()

        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="docs") as pool:
            done = list(pool.map(run, shares))
        # Back in the keys' order: share i holds keys i, i + PARALLEL, ...
        answers: list[T] = []
        for i in range(len(targets)):
            answers.append(done[i % PARALLEL][i // PARALLEL])
        return answers

    def put_all(self, keys: Sequence[str]) -> list[Stored]:
        """C{docs.put} of every key's document, each to a random node."""

        def put(connections: Connections, key: str, name: str) -> Stored:
            answer = connections.request(
                name, "POST", f"/v1/route/docs.put/{key}", document(key)
            )
            return Stored(key, name, str(answer["storedBy"]))

        return self._each(keys, put)

    def get_all(self, keys: Sequence[str]) -> list[Looked]:
        """C{docs.get} of every key, each from a random node."""

        def get(connections: Connections, key: str, name: str) -> Looked:
            answer = connections.request(name, "POST", f"/v1/route/docs.get/{key}", {})
            return Looked(key, name, str(answer["owner"]), answer["found"] is True)

        return self._each(keys, get)

    def owners(self, keys: Sequence[str]) -> dict[str, str | None]:
        """The owner of every key, each in a random node's view."""

        def owner(
            connections: Connections, key: str, name: str
        ) -> tuple[str, str | None]:
            found = connections.request(name, "GET", f"/v1/owner/{key}")["owner"]
            return key, None if found is None else str(found)

        return dict(self._each(keys, owner))
