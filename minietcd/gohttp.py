# -*- test-case-name: tests.minietcd.test_keys_api -*-
"""What Go's C{net/http} does around etcd's handlers, done on a Twisted request.

CORS headers on every answer, C{ServeMux}'s text 404 and 405 and its redirects to
clean paths, the server's own 400 for an unparsable request line, request targets
taken byte for byte (L{GoSite}), the limits minietcd puts on request size, and a
request that says when its client left.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, HTTPFactory, _GenericHTTPChannelProtocol
from twisted.web.server import Request, Site

from minietcd.params import MAX_FORM_BYTES, escape_path
from minietcd.requestline import GO_BAD_REQUEST, read_request_line, stand_in

#: Longest request target (path and query) answered; longer ones get 414.
#: etcd's listener resets request lines over ~4 KiB; we allow twice that.
MAX_URI_BYTES = 8192
#: Largest request body kept. Form bodies over Go's 10 MiB form limit get etcd's
#: own 400/210 "http: POST too large"; any other body over it gets 413.
MAX_BODY_BYTES = MAX_FORM_BYTES

JSON = [b"application/json"]
TEXT = [b"text/plain; charset=utf-8"]
_NOSNIFF = [b"nosniff"]
_CORS = (
    (b"Access-Control-Allow-Origin", [b"*"]),
    (b"Access-Control-Allow-Methods", [b"POST, GET, OPTIONS, PUT, DELETE"]),
    (b"Access-Control-Allow-Headers", [b"accept, content-type, authorization"]),
)


def body(request: Request, data: bytes) -> bytes:
    """What to return from C{render} to answer C{data}.

    Twisted adds the Content-Length; for HEAD it is set here and no body is
    returned, so Go's header (the length GET would have) goes out without
    Twisted's warning about a HEAD answer with a body.
    """
    if request.method == b"HEAD":
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(data)])
        return b""
    return data


def start(request: Request) -> None:
    """What every answer of etcd's client listener carries: CORS, no Server."""
    headers = request.responseHeaders
    headers.removeHeader(b"server")
    for name, value in _CORS:
        headers.setRawHeaders(name, value)


def bad_request_line(request: Request) -> bytes:
    """Go's server refusing a request line it cannot parse (before any handler,
    so without CORS headers)."""
    headers = request.responseHeaders
    headers.removeHeader(b"server")
    request.setResponseCode(400)
    headers.setRawHeaders(b"Content-Type", TEXT)
    headers.setRawHeaders(b"Connection", [b"close"])
    return body(request, b"400 Bad Request")


def error_text(request: Request, status: int, text: bytes) -> bytes:
    """Go's C{http.Error}: plain text, nosniff."""
    request.setResponseCode(status)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Content-Type", TEXT)
    headers.setRawHeaders(b"X-Content-Type-Options", _NOSNIFF)
    return body(request, text)


def not_found(request: Request) -> bytes:
    """C{ServeMux}'s answer for a path no handler serves."""
    return error_text(request, 404, b"404 page not found\n")


def not_allowed(request: Request, allowed: bytes) -> bytes:
    """etcd's C{allowMethod} refusal: 405 with C{Allow}."""
    request.responseHeaders.setRawHeaders(b"Allow", [allowed])
    return error_text(request, 405, b"Method Not Allowed\n")


def html_escape(text: str) -> str:
    """Go's C{html.EscapeString} as C{http.Redirect} uses it."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def hex_escape_non_ascii(url: bytes) -> bytes:
    """Go's C{hexEscapeNonASCII}: each byte above 0x7F as C{%xx} (lower case)."""
    if url.isascii():
        return url
    return b"".join(b"%%%x" % byte if byte > 0x7F else bytes((byte,)) for byte in url)


def redirect(request: Request, cleaned: str, raw_query: bytes) -> bytes:
    """C{ServeMux}'s 301 to the clean path (a tiny HTML body for GET only).

    The query is kept as sent: the C{Location} header escapes its bytes above 0x7F
    as Go's C{http.Redirect} does, the HTML body keeps them raw.
    """
    location = escape_path(cleaned)
    if raw_query:
        location += b"?" + raw_query
    request.setResponseCode(301)
    headers = request.responseHeaders
    headers.setRawHeaders(b"Location", [hex_escape_non_ascii(location)])
    if request.method in (b"GET", b"HEAD"):
        headers.setRawHeaders(b"Content-Type", [b"text/html; charset=utf-8"])
    else:
        request.defaultContentType = None
    text = b""
    if request.method == b"GET":
        href = html_escape(location.decode("latin-1")).encode("latin-1")
        text = b'<a href="' + href + b'">Moved Permanently</a>.\n\n'
    return body(request, text)


def body_size(request: Request) -> int:
    """How long the request body was, as received (see L{BoundedRequest})."""
    if isinstance(request, BoundedRequest):
        return request.received_length
    content = request.content
    if content is None:
        return 0
    content.seek(0, 2)
    size: int = content.tell()
    content.seek(0)
    return size


class BoundedRequest(Request):
    """The server's request: it stops keeping its body after L{MAX_BODY_BYTES}
    (plus one byte, so the API sees it is too long) and counts the rest, and it
    calls C{on_lost} if its client goes away before the answer is finished (as
    Go cancels a request's context), without the Deferred of C{notifyFinish}."""

    received_length = 0
    on_lost: Callable[[], object] | None = None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()

    def handleContentChunk(self, data: bytes) -> None:
        before = self.received_length
        self.received_length = before + len(data)
        if before >= MAX_BODY_BYTES + 1:
            return
        super().handleContentChunk(data[: MAX_BODY_BYTES + 1 - before])


#: HTTPChannel's (name-mangled) flag for "the next line starts a request".
_FIRST_LINE = "_HTTPChannel__first_line"


class GoHTTPChannel(HTTPChannel):
    """An HTTP channel that reads request lines as Go's server does.

    A target with bytes above 0x7F reaches the request unchanged (Twisted's own
    parser refuses most of them), and a line Go refuses gets Go's 400 with its
    body. Anything else is Twisted's.
    """

    def lineReceived(self, line: bytes) -> None:
        if not (line and self.persistent and getattr(self, _FIRST_LINE)):
            super().lineReceived(line)
            return
        parsed = read_request_line(line)
        if parsed is None:
            transport = self.transport
            assert transport is not None
            transport.write(GO_BAD_REQUEST)
            self.loseConnection()
            return
        if not parsed.non_ascii:
            super().lineReceived(line)
            return
        substitute = stand_in(parsed)
        super().lineReceived(substitute)
        if getattr(self, "_path", None) == substitute.split(b" ")[1]:
            self._path = parsed.target


def _go_channel_protocol(factory: HTTPFactory) -> _GenericHTTPChannelProtocol:
    """Twisted's protocol for a site (HTTP/1.1, or HTTP/2 if negotiated), with a
    L{GoHTTPChannel} for HTTP/1.1."""
    return _GenericHTTPChannelProtocol(GoHTTPChannel())


class GoSite(Site):
    """A site whose channels are L{GoHTTPChannel}s and whose requests are
    L{BoundedRequest}s."""

    protocol = _go_channel_protocol
    requestFactory = BoundedRequest
