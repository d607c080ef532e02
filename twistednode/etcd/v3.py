# -*- test-case-name: tests.etcd.test_v3 -*-
"""
A treq client for the etcd v3 JSON gateway.

L{EtcdV3Client} POSTs JSON to C{/v3/...} on one of several etcd URLs, moving on to the
next URL when a member cannot be reached (refused, reset, timed out, 5xx) and
remembering the one that answered, like the v2 client. With L{Credentials} it gets a
token from C{/v3/auth/authenticate}, sends it in the C{Authorization} header and gets
a new one when etcd says the token is invalid (etcd's simple tokens are per member
and expire, so a fail-over or a long run needs a new one). It also opens streaming
calls (C{/v3/watch}): a long-lived chunked response of one JSON object per line,
handed to a L{JsonLines} protocol as each line arrives.

The outcomes are distinct exceptions: L{EtcdV3Error} (the gateway's gRPC error:
C{code}, C{message}), L{EtcdAuthFailed} (wrong user or password),
L{twistednode.etcd.base.EtcdBadResponse}, and L{twistednode.etcd.base.EtcdUnavailable}
when no member answered (the URLs, the pool and the calls in flight are
L{twistednode.etcd.base.EtcdHTTP}'s, as for v2).
L{twistednode.registry.v3.EtcdV3Backend} maps them onto the
L{twistednode.registry.backend.RegistryBackend} errors.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.iweb import IResponse

from twistednode.etcd.base import (
    LINK_ERRORS,
    EtcdBadResponse,
    EtcdError,
    EtcdHTTP,
    EtcdTimeout,
    EtcdUnavailable,
    JsonLines,
    read_body,
    timed_out,
)

#: gRPC status codes the gateway reports (C{"code"} in its error objects).
INVALID_ARGUMENT = 3
NOT_FOUND = 5
PERMISSION_DENIED = 7
FAILED_PRECONDITION = 9
OUT_OF_RANGE = 11
UNAVAILABLE = 14
UNAUTHENTICATED = 16

#: Messages that mean "get a new token and try again".
_TOKEN_PROBLEMS = ("invalid auth token", "user name is empty")


def says_token_is_bad(text: str) -> bool:
    """Whether an etcd error message (or a watch's cancel reason) says that the auth
    token is invalid, so that a new one could cure it."""
    return any(problem in text for problem in _TOKEN_PROBLEMS)


class EtcdV3Error(EtcdError):
    """The gateway answered with a gRPC error (C{{"error","message","code"}})."""

    def __init__(self, code: int, message: str, status: int, url: str) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.url = url
        super().__init__(f"etcd error {code}: {message} (HTTP {status} from {url})")

    @property
    def token_problem(self) -> bool:
        """Whether a new auth token could cure it."""
        return self.code in (UNAUTHENTICATED, INVALID_ARGUMENT) and says_token_is_bad(
            self.message
        )


class EtcdAuthFailed(EtcdError):
    """etcd refused our user name and password."""


@frozen
class Credentials:
    """An etcd v3 user and password (C{--etcd-user user:password})."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def from_option(cls, value: str) -> Credentials:
        """Parse C{user:password} (ValueError if there is no user or no colon)."""
        user, colon, password = value.partition(":")
        if not colon or not user:
            raise ValueError("--etcd-user must be USER:PASSWORD")
        return cls(user, password)


def grpc_error(data: object, status: int, url: str) -> EtcdV3Error | None:
    """The error in a gateway answer, or None if C{data} is not one.

    Unary calls answer C{{"error": "...", "message": "...", "code": N}}; streaming
    calls put C{{"grpc_code", "http_code", "message"}} in an C{"error"} object.
    """
    if not isinstance(data, dict) or "error" not in data:
        return None
    error = data["error"]
    if isinstance(error, dict):
        code, message = error.get("grpc_code"), error.get("message")
    else:
        code, message = data.get("code"), data.get("message", error)
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    if not isinstance(message, str):
        message = str(error)
    return EtcdV3Error(code, message, status, url)


def interpret(status: int, body: bytes, url: str) -> dict[str, Any]:
    """One unary answer as a JSON object, or raise the matching L{EtcdError}."""
    excerpt = body[:200].decode("utf-8", "replace")
    try:
        data: object = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    error = grpc_error(data, status, url)
    if error is not None:
        raise error
    if status >= 500:
        raise EtcdBadResponse(f"HTTP {status}", status, excerpt, url)
    if not isinstance(data, dict):
        raise EtcdBadResponse("body is not a JSON object", status, excerpt, url)
    if status != 200:
        raise EtcdBadResponse(f"unexpected HTTP status {status}", status, excerpt, url)
    return data


def _member_failed(error: BaseException) -> bool:
    """Whether C{error} says "this member cannot serve", so the next URL is tried."""
    if isinstance(error, (EtcdTimeout, *LINK_ERRORS)):
        return True
    if isinstance(error, EtcdV3Error):
        return error.status >= 500 or error.code == UNAVAILABLE
    return isinstance(error, EtcdBadResponse) and error.status >= 500


@define(eq=False)
class EtcdV3Client(EtcdHTTP):
    """
    JSON calls to the etcd v3 gateway, with fail-over across members and auth.

    Construct as L{EtcdHTTP} (C{reactor}, C{urls}, C{http}, C{tls}, timeouts), plus
    C{credentials}: a user and password when etcd has auth enabled.
    """

    log = Logger()

    credentials: Credentials | None = None
    _token: str | None = field(default=None, init=False)

    def forget_token(self) -> None:
        """Drop the auth token (etcd said it is invalid); the next call gets one."""
        self._token = None

    # -- calls -------------------------------------------------------------------

    def call(self, path: str, body: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """
        POST C{body} to C{path} (C{/v3/kv/range}) and return the answer's JSON.

        Authenticates first when credentials are set, and once more if etcd says
        the token is invalid.
        """
        return self._track(Deferred.fromCoroutine(self._call(path, body)))

    def stream(
        self, path: str, body: Mapping[str, Any], lines: JsonLines
    ) -> Deferred[str]:
        """
        Open a streaming call; its lines go to C{lines} as they arrive.

        Fires with the base URL of the member that accepted it once the response
        headers are in (the stream then runs until C{lines.abort()} or the server
        ends it); fails like L{call} if no member accepts it.
        """
        return self._track(Deferred.fromCoroutine(self._stream(path, body, lines)))

    # -- internals -----------------------------------------------------------------

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        await self._ensure_token()
        try:
            answer: dict[str, Any] = await self._post(path, data, self._read_answer)
        except EtcdV3Error as e:
            if not (self.credentials is not None and e.token_problem):
                raise
            self.log.info("etcd token rejected by {url}; authenticating", url=e.url)
        else:
            return answer
        self._token = None
        await self._ensure_token()
        answer = await self._post(path, data, self._read_answer)
        return answer

    async def _stream(
        self, path: str, body: Mapping[str, Any], lines: JsonLines
    ) -> str:
        data = json.dumps(body).encode("utf-8")
        await self._ensure_token()

        async def accept(url: str, response: IResponse) -> str:
            if response.code != 200:
                status, raw = response.code, await read_body(response)
                interpret(status, raw, url)
                raise EtcdBadResponse(f"HTTP {status}", status, "", url)
            lines._url = url
            response.deliverBody(lines)
            return url

        url: str = await self._post(path, data, accept)
        return url

    async def _read_answer(self, url: str, response: IResponse) -> dict[str, Any]:
        d = read_body(response)
        d.addTimeout(self.request_timeout, self._reactor, timed_out(url))
        try:
            raw = await d
        except ValueError as e:
            raise EtcdBadResponse(str(e), response.code, "", url) from None
        return interpret(response.code, raw, url)

    async def _ensure_token(self) -> None:
        credentials = self.credentials
        if credentials is None or self._token is not None:
            return
        login = {"name": credentials.user, "password": credentials.password}
        data = json.dumps(login).encode("utf-8")
        try:
            answer = await self._post(
                "/v3/auth/authenticate", data, self._read_answer, auth=False
            )
        except EtcdV3Error as e:
            if e.code == FAILED_PRECONDITION and "not enabled" in e.message:
                self.log.warn(
                    "etcd at {url} has auth disabled; ignoring the user {user}",
                    url=e.url,
                    user=credentials.user,
                )
                self._token = ""
                return
            raise EtcdAuthFailed(
                f"etcd at {e.url} refused user {credentials.user!r}: {e.message}"
            ) from None
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise EtcdBadResponse("authenticate answer has no token", 200, "", self.url)
        self._token = token

    async def _post(
        self,
        path: str,
        data: bytes,
        handle: Callable[[str, IResponse], Any],
        *,
        auth: bool = True,
    ) -> Any:
        headers = {"Content-Type": ["application/json"]}
        if auth and self._token:
            headers["Authorization"] = [self._token]
        count = len(self.urls)
        start = self._current
        failures: list[tuple[str, BaseException]] = []
        for step in range(count):
            index = (start + step) % count
            url = self.urls[index]
            d = maybeDeferred(
                self._http.request,
                "POST",
                url + path,
                data=data,
                headers=headers,
                unbuffered=True,
                allow_redirects=False,
            )
            d.addTimeout(self.request_timeout, self._reactor, timed_out(url))
            try:
                response = await d
                result = await handle(url, response)
            except CancelledError:
                raise
            except Exception as e:
                if not _member_failed(e):
                    self._current = index
                    raise
                failures.append((url, e))
                self.log.debug("etcd {url} failed: {error}", url=url, error=e)
                continue
            self._current = index
            return result
        raise EtcdUnavailable(failures)
