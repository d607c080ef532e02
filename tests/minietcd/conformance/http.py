"""A raw HTTP/1.1 client over a socket that sends request targets byte for byte.

C{http.client} and urllib clean, quote or reject some paths (C{//}, C{/./}, C{%2F} after
decoding), and buffer in ways that hide whether a long-poll has answered yet. This
client does neither: it writes the request line as given and reads the response
incrementally, so a test can see the headers of a watch arrive before its body.
"""

from __future__ import annotations

import select
import socket
import time

from attrs import field, frozen

DEFAULT_TIMEOUT = 10.0


def _short(body: bytes) -> str:
    """The repr of a body, cut to a readable length for error messages."""
    if len(body) <= 600:
        return repr(body)
    return f"{body[:600]!r}... ({len(body)} bytes)"


@frozen
class Response:
    """One HTTP response as received."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=_short)
    sent_at: float = field(eq=False)
    received_at: float = field(eq=False)

    def header(self, name: str) -> str | None:
        """The first header called C{name} (case-insensitive), or C{None}."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_names(self) -> set[str]:
        """All header names, lower-cased."""
        return {key.lower() for key, _ in self.headers}


class ProtocolError(Exception):
    """The server sent something that is not HTTP/1.1."""


class Connection:
    """One TCP connection to C{host:port}; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.sent_at = 0.0

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def send(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """Write one request; C{target} goes on the request line unchanged.

        The line is sent as UTF-8, and a surrogate escape as the byte it stands for:
        C{"/caf\\udce9"} sends a raw Latin-1 C{0xE9}, C{"/café"} its UTF-8 bytes.
        """
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        names = set()
        for name, value in headers or []:
            lines.append(f"{name}: {value}")
            names.add(name.lower())
        if body is not None and "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        raw = head.encode("utf-8", "surrogateescape") + (body or b"")
        self.sent_at = time.time()
        try:
            self.sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            # A server may answer (e.g. 413) and close before reading a large body;
            # the response is still there to read.
            pass

    def has_data(self, wait: float = 0.0) -> bool:
        """Whether response bytes are buffered or arrive within C{wait} seconds."""
        if self.buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response data before the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise TimeoutError("no response data before the deadline") from None
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def read_crlf_line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self.fill(deadline):
                raise ProtocolError("connection closed in the middle of a line")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_exactly(self, count: int, deadline: float) -> bytes:
        while len(self.buffer) < count:
            if not self.fill(deadline):
                raise ProtocolError("connection closed in the middle of a body")
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_head(
        self, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[int, str, tuple[tuple[str, str], ...]]:
        """Read the status line and headers."""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            if not self.fill(deadline):
                raise ProtocolError("connection closed before a response")
        status_line = self.read_crlf_line(deadline).decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        while True:
            line = self.read_crlf_line(deadline).decode("latin-1")
            if not line:
                break
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return status, reason, tuple(headers)

    def body_reader(
        self, method: str, status: int, headers: tuple[tuple[str, str], ...]
    ) -> BodyReader:
        """An incremental reader of the body that follows C{headers}."""
        return BodyReader(self, method, status, headers)


class BodyReader:
    """Reads a response body incrementally: by length, chunked, or until close."""

    def __init__(
        self,
        conn: Connection,
        method: str,
        status: int,
        headers: tuple[tuple[str, str], ...],
    ) -> None:
        self.conn = conn
        self.data = b""
        self.done = False
        lower = {k.lower(): v for k, v in headers}
        self._chunked = "chunked" in lower.get("transfer-encoding", "").lower()
        self._length: int | None = None
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self.done = True
        elif not self._chunked and "content-length" in lower:
            self._length = int(lower["content-length"])

    def _step(self, deadline: float) -> None:
        conn = self.conn
        if self._chunked:
            size_line = conn.read_crlf_line(deadline).split(b";")[0].strip()
            size = int(size_line, 16)
            if size == 0:
                while conn.read_crlf_line(deadline):
                    pass
                self.done = True
                return
            self.data += conn.read_exactly(size, deadline)
            conn.read_exactly(2, deadline)
        elif self._length is not None:
            self.data += conn.read_exactly(self._length, deadline)
            self.done = True
        else:
            if conn.buffer:
                self.data += conn.buffer
                conn.buffer = b""
            elif not conn.fill(deadline):
                self.done = True

    def read_all(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read until the body ends."""
        deadline = time.monotonic() + timeout
        while not self.done:
            self._step(deadline)
        return self.data

    def read_line(self, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        """Read until the body holds a full line; return it, or C{None} at its end."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.data and not self.done:
            self._step(deadline)
        if b"\n" not in self.data:
            return None
        line, _, self.data = self.data.partition(b"\n")
        return line + b"\n"


def exchange(
    host: str,
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Response:
    """Send one request on a fresh connection and read the whole response."""
    conn = Connection(host, port, timeout)
    try:
        conn.send(method, target, headers, body)
        status, reason, response_headers = conn.read_head(timeout)
        data = conn.body_reader(method, status, response_headers).read_all(timeout)
        return Response(
            status, reason, response_headers, data, conn.sent_at, time.time()
        )
    finally:
        conn.close()
