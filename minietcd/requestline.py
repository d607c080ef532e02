# -*- test-case-name: tests.minietcd.test_requestline -*-
"""Go's C{net/http} reading of an HTTP request line, without any I/O.

Go takes the bytes of the request target as they come: a byte above 0x7F is part of
the path (etcd makes it part of the key), while a control byte anywhere in the target
makes the whole request a bare C{400 Bad Request}. Twisted refuses most bytes above
0x7F and answers a control byte with an empty 400; L{read_request_line} says what Go
would do, and L{stand_in} is a line Twisted accepts in place of one Go accepts.
"""

from __future__ import annotations

import re

from attrs import frozen

#: What Go's server writes, and then closes, for a request line it cannot parse.
GO_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n"
    b"400 Bad Request"
)

_TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
#: Go's C{stringContainsCTLByte}: what C{url.ParseRequestURI} refuses.
_CTL = frozenset(range(0x20)) | {0x7F}
#: Go's C{ParseHTTPVersion}.
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_TO_ASCII = bytes.maketrans(bytes(range(0x80, 0x100)), b"_" * 0x80)


@frozen
class RequestLine:
    """A request line Go accepts: the method, the raw target and the version."""

    method: bytes
    target: bytes
    version: bytes

    @property
    def non_ascii(self) -> bool:
        """Whether the target holds bytes above 0x7F (which Twisted refuses)."""
        return not self.target.isascii()


def read_request_line(line: bytes) -> RequestLine | None:
    """The parts of C{line} as Go's server reads them, or L{None} where Go answers
    its 400.

    Go cuts the line at its first two spaces, wants a token for the method and
    C{HTTP/<digit>.<digit>} for the version, and refuses an empty target or one
    with a control byte (C{%}-escapes are checked later, by the API). Which of the
    well-formed versions are served is left to Twisted (1.0 and 1.1).
    """
    method, space, rest = line.partition(b" ")
    target, space2, version = rest.partition(b" ")
    if not space or not space2 or not method or not target:
        return None
    if not _TCHAR.issuperset(method):
        return None
    if not _CTL.isdisjoint(target):
        return None
    if _VERSION.fullmatch(version) is None:
        return None
    return RequestLine(method, target, version)


def stand_in(request_line: RequestLine) -> bytes:
    """A line of the same length that Twisted's parser accepts in place of
    C{request_line}: each byte above 0x7F of the target becomes C{_}."""
    target = request_line.target.translate(_TO_ASCII)
    return b" ".join((request_line.method, target, request_line.version))
