"""Many long-poll watchers on one etcd v2 key, one PUT: when does each get its answer?

The client is one epoll loop over raw sockets (no HTTP library), so 1000 watchers
cost it a few milliseconds of CPU: the server, not the client, sets the pace.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import statistics
import time
import urllib.request
from collections.abc import Iterator

from attrs import frozen

from benchmarks.procstats import cpu_seconds

#: The key every watcher waits on.
FANOUT_KEY = "fanout"


class _Response:
    """Collects one HTTP/1.1 response from raw bytes; knows when it is complete."""

    __slots__ = ("data", "header_end", "length", "chunked")

    def __init__(self) -> None:
        self.data = bytearray()
        self.header_end = -1
        self.length = -1
        self.chunked = False

    def feed(self, chunk: bytes) -> bool:
        """Add bytes; return whether the whole response (headers and body) is in."""
        self.data += chunk
        return self.complete()

    def headers_in(self) -> bool:
        """Whether the status line and headers have arrived."""
        if self.header_end < 0:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.header_end = end + 4
            head = bytes(self.data[:end]).lower()
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    self.chunked = True
        return True

    def complete(self) -> bool:
        if not self.headers_in():
            return False
        if self.chunked:
            return self.data.endswith(b"0\r\n\r\n")
        return len(self.data) - self.header_end >= max(self.length, 0)

    @property
    def status(self) -> int:
        return int(bytes(self.data[9:12]))

    @property
    def body(self) -> bytes:
        return bytes(self.data[self.header_end :])


@frozen
class FanOutResult:
    """One fan-out: ms from sending the PUT until the first, median and last answer."""

    server: str
    watchers: int
    first_ms: float
    median_ms: float
    all_ms: float
    put_answer_ms: float
    client_cpu_ms: float
    #: CPU the server used from the PUT until the last answer (all its threads).
    server_cpu_ms: float
    wrong_answers: int


def _watcher_count(url: str) -> int:
    with urllib.request.urlopen(url + "/v2/stats/store", timeout=5) as response:
        count: int = json.load(response)["watchers"]
        return count


def wait_watchers(url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := _watcher_count(url)) != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: {seen} watchers registered, expected {count}")
        time.sleep(0.02)


@contextlib.contextmanager
def _watchers(port: int, count: int, key: str) -> Iterator[list[socket.socket]]:
    """C{count} connections, each with a long-poll GET sent; closed on exit."""
    request = (
        f"GET /v2/keys/{key}?wait=true HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    ).encode("ascii")
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            sock.setblocking(False)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def fan_out(
    server: str,
    url: str,
    port: int,
    count: int,
    value: str,
    pid: int,
    timeout: float = 60.0,
    before_put: contextlib.AbstractContextManager[object] | None = None,
) -> FanOutResult:
    """Register C{count} watchers on one key, PUT it once, time every answer.

    C{before_put} is entered once all watchers are registered and left once all are
    answered (the profiler hooks in there).
    """
    put_body = f"value={value}".encode("ascii")
    put_request = (
        f"PUT /v2/keys/{FANOUT_KEY} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(put_body)}\r\n\r\n"
    ).encode("ascii") + put_body
    expected = f'"action":"set","node":{{"key":"/{FANOUT_KEY}","value":"{value}"'
    with _watchers(port, count, FANOUT_KEY) as socks, selectors.EpollSelector() as sel:
        responses = {sock.fileno(): _Response() for sock in socks}
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ, sock)
        # Every watcher's status line and headers first: each server flushes them
        # once the watcher is registered.
        deadline = time.monotonic() + timeout
        pending = len(socks)
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server}: {pending} watches got no headers")
            for key, _ in sel.select(1.0):
                response = responses[key.fd]
                had = response.header_end >= 0
                response.feed(key.fileobj.recv(65536))  # type: ignore[union-attr]
                if not had and response.headers_in():
                    pending -= 1
        wait_watchers(url, count, timeout)
        put_sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        with put_sock, before_put or contextlib.nullcontext():
            put_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            put_sock.setblocking(False)
            put_response = _Response()
            sel.register(put_sock, selectors.EVENT_READ, put_sock)
            answered: list[float] = []
            put_answered = -1.0
            cpu = time.process_time()
            server_cpu = cpu_seconds(pid)
            start = time.monotonic()
            put_sock.send(put_request)
            while len(answered) < count or put_answered < 0:
                ready = sel.select(1.0)
                now = time.monotonic()
                if now - start > timeout:
                    raise RuntimeError(
                        f"{server}: {count - len(answered)} watchers unanswered"
                    )
                for key, _ in ready:
                    sock = key.data
                    data = sock.recv(65536)
                    if sock is put_sock:
                        if not data:
                            raise RuntimeError(f"{server}: the PUT got no answer")
                        if put_response.feed(data):
                            put_answered = now
                            sel.unregister(sock)
                    elif responses[key.fd].feed(data) or not data:
                        answered.append(now)
                        sel.unregister(sock)
            server_cpu = cpu_seconds(pid) - server_cpu
            cpu = time.process_time() - cpu
    wrong = sum(
        1
        for r in responses.values()
        if not r.complete() or r.status != 200 or expected.encode() not in r.body
    )
    times = sorted(1000.0 * (t - start) for t in answered)
    return FanOutResult(
        server,
        count,
        times[0],
        statistics.median(times),
        times[-1],
        1000.0 * (put_answered - start),
        1000.0 * cpu,
        1000.0 * server_cpu,
        wrong,
    )
