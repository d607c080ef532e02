# -*- test-case-name: tests.cli.test_commands -*-
"""The C{twistednode} commands, as coroutines over an injected reactor.

Each command reads through what the node itself uses: the registry backend
(L{twistednode.registry.backends.make_backend}: etcd v2, minietcd or etcd v3, with
the same TLS and auth) and the pooled treq client of L{twistednode.etcd.httpclient}.
What they print is made by L{twistednode.cli.render} from pure values. A failure an
operator can fix (a registry or a node out of reach, a refused password, an answer
that is not what was expected) is a L{CommandFailed} with a one-line message; the
program prints it and exits 1.

C{watch} lists the members directory and the cluster's directory, then watches the
cluster's directory (members and master key alike) from the listings' index; on
any gap it lists again and reports only what changed (L{Follower}). It runs until
stopped; a registry that goes away is one line, and one more when it is back.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.task import deferLater

from twistednode.cli.follow import Follower, WatchEvent
from twistednode.cli.render import (
    event_line,
    members_json,
    members_text,
    status_text,
    timestamp,
)
from twistednode.cli.snapshot import (
    ClusterSnapshot,
    cluster_directory,
    members_directory,
    snapshot_of,
)
from twistednode.etcd.base import LINK_ERRORS, describe, read_body
from twistednode.etcd.httpclient import http_client
from twistednode.registry.backend import (
    BackendError,
    HistoryLost,
    Listing,
    RegistryBackend,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.backends import (
    SelectedBackend,
    make_backend,
    tls_from_options,
)
from twistednode.registry.backoff import Backoff

#: How long one watch request waits before it is sent again.
WATCH_TIMEOUT = 30.0


class CommandFailed(Exception):
    """What went wrong, in one line for the operator."""


def open_registry(reactor: Any, config: Any, http: Any = None) -> SelectedBackend:
    """The registry backend the options describe (C{http}: a client for tests)."""
    try:
        tls = tls_from_options(*config["tls-files"])
    except (OSError, ValueError) as e:
        raise CommandFailed(f"etcd TLS: {e}") from None
    try:
        return make_backend(
            reactor,
            config["etcd-urls"],
            api=config["etcd-api"],
            tls=tls,
            auth=config["auth"],
            http=http,
            connect_timeout=config["timeout"],
            request_timeout=config["timeout"],
        )
    except ValueError as e:
        raise CommandFailed(str(e)) from None


def _registry_failed(config: Any, error: BaseException) -> CommandFailed:
    urls = ",".join(config["etcd-urls"])
    return CommandFailed(f"cannot read the registry at {urls}: {error}")


async def read_cluster(
    backend: RegistryBackend, cluster: str
) -> tuple[Listing, Listing]:
    """The members directory's listing, then the cluster directory's."""
    members = await backend.list(members_directory(cluster))
    directory = await backend.list(cluster_directory(cluster))
    return members, directory


async def snapshot(
    reactor: Any, config: Any, http: Any = None
) -> tuple[ClusterSnapshot, SelectedBackend]:
    """The cluster as the registry holds it now, and the backend that read it
    (closed)."""
    backend = open_registry(reactor, config, http)
    try:
        members, directory = await read_cluster(backend, config["cluster"])
    except BackendError as e:
        raise _registry_failed(config, e) from None
    finally:
        await backend.close()
    found, _view = snapshot_of(config["cluster"], members, directory)
    return found, backend


async def members(reactor: Any, config: Any, out: IO[str], http: Any = None) -> None:
    """C{twistednode members}: a table, or C{--json}."""
    found, backend = await snapshot(reactor, config, http)
    now = reactor.seconds()
    if config["json"]:
        document = members_json(found, now, backend.endpoint, backend.api)
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(members_text(found, now, backend.endpoint, backend.api))
    out.flush()


async def new_key(reactor: Any, config: Any, out: IO[str], http: Any = None) -> None:
    """C{twistednode new-key}: 32 random bytes in base64, one keyring line."""
    from twistednode.trust.keyring import new_key as make_key

    out.write(make_key() + "\n")
    out.flush()


async def status(reactor: Any, config: Any, out: IO[str], http: Any = None) -> None:
    """C{twistednode status URL}: a node's C{/status}, readable (or C{--json})."""
    url = config["url"]
    pool = None
    if http is None:
        http, pool = http_client(reactor, None, config["timeout"])
    try:
        document = await _get_status(reactor, http, url, config["timeout"])
    finally:
        if pool is not None:
            await pool.closeCachedConnections()
    if config["json"]:
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(status_text(document))
    out.flush()


async def _get_status(reactor: Any, http: Any, url: str, timeout: float) -> Any:
    async def fetch() -> tuple[int, bytes]:
        response = await http.request("GET", url, allow_redirects=False)
        return response.code, await read_body(response)

    d = Deferred.fromCoroutine(fetch())
    d.addTimeout(timeout, reactor)
    try:
        code, body = await d
    except (CancelledError, TimeoutError):
        raise CommandFailed(f"no answer from {url} within {timeout:g} s") from None
    except LINK_ERRORS as e:
        raise CommandFailed(f"cannot reach {url}: {describe(e)}") from None
    except (OSError, ValueError) as e:
        raise CommandFailed(f"cannot read {url}: {e}") from None
    if code != 200:
        raise CommandFailed(f"{url} answered HTTP {code}, not a node's status")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("self"), dict):
        raise CommandFailed(f"{url} answered something that is not a node's status")
    return document


async def watch(
    reactor: Any,
    config: Any,
    out: IO[str],
    http: Any = None,
    draw: Callable[[], float] = random.random,
) -> None:
    """C{twistednode watch}: one timestamped line per join, leave and master change,
    until cancelled (or the process is stopped)."""
    cluster = config["cluster"]
    backend = open_registry(reactor, config, http)
    follower = Follower(cluster)
    backoff = Backoff(initial=0.5, maximum=5.0)
    failures = 0

    def emit(events: list[WatchEvent]) -> None:
        now = reactor.seconds()
        for event in events:
            out.write(event_line(event, now) + "\n")
        out.flush()

    def outage(error: BaseException) -> None:
        if failures == 1:
            out.write(
                f"{timestamp(reactor.seconds())}  registry  unreachable: {error}; "
                "retrying\n"
            )
            out.flush()

    try:
        while True:
            try:
                members, directory = await read_cluster(backend, cluster)
            except BackendError as e:
                if not follower.started:
                    raise _registry_failed(config, e) from None
                failures += 1
                outage(e)
                await deferLater(reactor, backoff.delay(failures - 1, draw()))
                continue
            if failures:
                failures = 0
                out.write(f"{timestamp(reactor.seconds())}  registry  reachable\n")
            emit(follower.listed(members, directory))
            index = min(members.index, directory.index) + 1
            while True:
                try:
                    changes = await backend.watch(
                        cluster_directory(cluster), index, WATCH_TIMEOUT
                    )
                except (WatchTimedOut, HistoryLost, WatchEnded):
                    break
                except BackendError as e:
                    failures += 1
                    outage(e)
                    await deferLater(reactor, backoff.delay(failures - 1, draw()))
                    break
                for change in changes:
                    emit(follower.changed(change))
                    index = max(index, change.index + 1)
    finally:
        await backend.close()
