# -*- test-case-name: tests.registry.test_backends -*-
"""
Choosing the registry backend: etcd v2 (and minietcd) or etcd v3, by option or by
asking the server.

L{make_backend} is what the node calls. It returns a L{SelectedBackend}: a
L{twistednode.registry.backend.RegistryBackend} that owns the HTTP connection pool
(with the
client TLS settings) and passes every call to the v2 or v3 backend. With
C{api="auto"} the choice is made on the first call, without blocking start-up: the
first member that answers C{POST /v3/maintenance/status} with etcd's status object
gets the v3 API; one that answers 404 or 405 there (minietcd, or an etcd proxy
without the gateway) gets v2. Members that cannot be reached are skipped; if none
answers, that call fails with L{BackendUnavailable} and the next call asks again.
L{SelectedBackend.api} says what was chosen (None until then) for the status
document.

The node builds it from its C{etcd_api}, C{etcd_tls} and C{etcd_auth}; the
clusternode options give those through L{tls_from_options} and
L{twistednode.etcd.v3.Credentials.from_option}, which raise ValueError with a clear
message for a bad file or a bad USER:PASSWORD.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from attrs import define, field
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IResponse

from twistednode.etcd.base import (
    LINK_ERRORS,
    EtcdTimeout,
    member_urls,
    read_body,
    timed_out,
)
from twistednode.etcd.httpclient import http_client
from twistednode.registry.backend import (
    BackendError,
    BackendUnavailable,
    Change,
    Listing,
    RegistryBackend,
)
from twistednode.registry.timing import RequestStats

if TYPE_CHECKING:
    from twistednode.etcd.tls import ClientTLS
    from twistednode.etcd.v3 import Credentials
    from twistednode.registry.v2 import EtcdV2Backend
    from twistednode.registry.v3 import EtcdV3Backend

Api = Literal["auto", "v2", "v3"]
Chosen = Literal["v2", "v3"]
APIS: tuple[Api, ...] = ("auto", "v2", "v3")

_T = TypeVar("_T")


def make_backend(
    reactor: Any,
    urls: str | Sequence[str],
    api: str = "auto",
    tls: ClientTLS | None = None,
    auth: Credentials | None = None,
    *,
    http: Any = None,
    connect_timeout: float = 5.0,
    request_timeout: float = 5.0,
) -> SelectedBackend:
    """
    The registry backend for etcd at C{urls} (fail-over order).

    @param api: "v2", "v3", or "auto" (ask the server on the first call).
    @param tls: client TLS for https:// URLs (L{tls_from_options}).
    @param auth: a v3 user and password; with C{api="v2"} a ValueError.
    @param http: a treq-like client to use instead of a new pool (tests).
    @raise ValueError: an unknown C{api}, no URL, a URL that is not http(s), or
        C{auth} with v2.
    """
    if api not in APIS:
        raise ValueError(f"the etcd API must be one of {', '.join(APIS)}, not {api!r}")
    if auth is not None and api == "v2":
        raise ValueError("etcd user/password auth needs the v3 API (--etcd-api v3)")
    pool = None
    if http is None:
        http, pool = http_client(reactor, tls, connect_timeout)
    backend = SelectedBackend(
        reactor, urls, http=http, pool=pool, auth=auth, request_timeout=request_timeout
    )
    if api != "auto":
        backend.choose(api)
    return backend


def tls_from_options(
    cacert: str | None, cert: str | None, key: str | None
) -> ClientTLS | None:
    """L{ClientTLS} from C{--etcd-cacert/--etcd-cert/--etcd-key}, None if none given."""
    if cacert is None and cert is None and key is None:
        return None
    from twistednode.etcd.tls import ClientTLS

    return ClientTLS.from_files(cacert, cert, key)


@define(eq=False)
class SelectedBackend:
    """
    A L{RegistryBackend} that is the v2 or the v3 backend once chosen.

    Calls made before an "auto" choice wait for the probe (one probe at a time).
    """

    log = Logger()

    _reactor: IReactorTime
    urls: tuple[str, ...] = field(converter=member_urls)
    _http: Any = None
    _pool: HTTPConnectionPool | None = None
    _auth: Credentials | None = None
    _request_timeout: float = 5.0
    _backend: EtcdV2Backend | EtcdV3Backend | None = field(default=None, init=False)
    _probe: Deferred[Chosen] | None = field(default=None, init=False)
    _waiters: list[Deferred[None]] = field(factory=list, init=False)
    _closed: bool = field(default=False, init=False)
    #: What the calls cost (L{RequestStats}), for the node's metrics.
    stats: RequestStats = field(factory=RequestStats, init=False)

    @property
    def api(self) -> Chosen | None:
        """The API in use, "v2" or "v3"; None while "auto" has not decided."""
        return None if self._backend is None else self._backend.api

    @property
    def backend(self) -> RegistryBackend | None:
        """The chosen backend, or None."""
        return self._backend

    @property
    def endpoint(self) -> str:
        return self.urls[0] if self._backend is None else self._backend.endpoint

    def choose(self, api: Chosen) -> None:
        """Use C{api} from now on (done by L{make_backend} or by the probe)."""
        if self._backend is not None:
            raise RuntimeError(f"the etcd API is already chosen ({self.api})")
        if api == "v2":
            if self._auth is not None:
                raise ValueError(
                    f"etcd user/password auth needs the v3 API, but {self.urls[0]} "
                    "serves only v2"
                )
            # Each API's client loads only once it is chosen: one process never
            # needs both.
            from twistednode.etcd.v2 import EtcdV2Client
            from twistednode.registry.v2 import EtcdV2Backend

            v2 = EtcdV2Client(
                self._reactor,
                self.urls,
                request_timeout=self._request_timeout,
                http=self._http,
            )
            self._backend = EtcdV2Backend(v2)
        else:
            from twistednode.etcd.v3 import EtcdV3Client
            from twistednode.registry.v3 import EtcdV3Backend

            v3 = EtcdV3Client(
                self._reactor,
                self.urls,
                request_timeout=self._request_timeout,
                http=self._http,
                credentials=self._auth,
            )
            self._backend = EtcdV3Backend(v3, self._reactor)
        self.log.info("registry uses the etcd {api} API", api=api)

    # -- RegistryBackend ---------------------------------------------------------

    def create(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self._with("create", lambda b: b.create(key, value, ttl))

    def replace(self, key: str, value: str, ttl: int) -> Deferred[int]:
        return self._with("replace", lambda b: b.replace(key, value, ttl))

    def refresh(self, key: str, ttl: int) -> Deferred[None]:
        return self._with("refresh", lambda b: b.refresh(key, ttl))

    def delete(self, key: str) -> Deferred[None]:
        return self._with("delete", lambda b: b.delete(key))

    def refresh_if(self, key: str, value: str, ttl: int) -> Deferred[None]:
        return self._with("refresh_if", lambda b: b.refresh_if(key, value, ttl))

    def delete_if(self, key: str, value: str, created_index: int) -> Deferred[None]:
        return self._with("delete_if", lambda b: b.delete_if(key, value, created_index))

    def list(self, directory: str) -> Deferred[Listing]:
        return self._with("list", lambda b: b.list(directory))

    def watch(
        self,
        directory: str,
        from_index: int,
        timeout: float,
        only: str | None = None,
    ) -> Deferred[Sequence[Change]]:
        return self._with(
            "watch", lambda b: b.watch(directory, from_index, timeout, only)
        )

    def close(self) -> Deferred[None]:
        """Cancel the probe and every call, close the backend and the pool."""
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        for waiter in self._waiters:
            if not waiter.called:
                waiter.cancel()
        if self._backend is not None:
            await self._backend.close()
        if self._pool is not None:
            await self._pool.closeCachedConnections()

    # -- choosing ------------------------------------------------------------------

    def _with(
        self, operation: str, call: Callable[[RegistryBackend], Deferred[_T]]
    ) -> Deferred[_T]:
        self.stats.started(operation)
        began = self._reactor.seconds()
        if self._backend is not None:
            d = call(self._backend)
        else:
            d = Deferred.fromCoroutine(self._later(call))

        def answered(result: _T) -> _T:
            self.stats.answered(operation, self._reactor.seconds() - began)
            return result

        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                elapsed = self._reactor.seconds() - began
                error = failure.value
                assert error is not None
                self.stats.failed(operation, error, elapsed)
            return failure

        return d.addCallbacks(answered, failed)

    async def _later(self, call: Callable[[RegistryBackend], Deferred[_T]]) -> _T:
        if self._closed:
            raise CancelledError("the registry backend is closed")
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self._probe is None:
            self._start_probe()
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        assert self._backend is not None
        return await call(self._backend)

    def _start_probe(self) -> None:
        probe = self._probe = Deferred.fromCoroutine(self._detect())

        def done(result: Chosen | BaseException) -> None:
            self._probe = None
            if not isinstance(result, BaseException) and self._backend is None:
                try:
                    self.choose(result)
                except ValueError as e:
                    result = BackendError(str(e))
            waiters, self._waiters = self._waiters, []
            if isinstance(result, BaseException):
                for waiter in waiters:
                    if not waiter.called:
                        waiter.errback(result)
                return
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)

        probe.addCallbacks(done, lambda f: done(f.value))

    async def _detect(self) -> Chosen:
        """Ask each member in turn which API it serves (see the module docstring)."""
        failures = []
        for url in self.urls:
            try:
                return await self._ask(url)
            except CancelledError:
                raise
            except _NoAnswer as e:
                failures.append(f"{url}: {e}")
            except Exception as e:
                if not isinstance(e, (EtcdTimeout, *LINK_ERRORS)):
                    raise
                failures.append(f"{url}: {type(e).__name__}: {e}")
        raise BackendUnavailable(
            "cannot tell which etcd API to use, no member answered ("
            + "; ".join(failures)
            + ")"
        )

    async def _ask(self, url: str) -> Chosen:
        d = maybeDeferred(
            self._http.request,
            "POST",
            url + "/v3/maintenance/status",
            data=b"{}",
            headers={"Content-Type": ["application/json"]},
            allow_redirects=False,
        )
        d.addCallback(_status_and_body)
        d.addTimeout(self._request_timeout, self._reactor, timed_out(url))
        status, body = await d
        if status >= 500:
            raise _NoAnswer(f"HTTP {status}")
        if status in (404, 405):
            self.log.info("{url} has no v3 gateway: using etcd v2", url=url)
            return "v2"
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and ("header" in data or "code" in data):
            return "v3"
        raise _NoAnswer(f"HTTP {status} that is not etcd's: {body[:100]!r}")


def _status_and_body(response: IResponse) -> Deferred[tuple[int, bytes]]:
    return read_body(response).addCallback(lambda body: (response.code, body))


class _NoAnswer(Exception):
    """A member answered the probe with something that decides nothing."""
