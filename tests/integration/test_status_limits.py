"""Slow and crowding clients against a real node's status server.

One C{twistd -n clusternode} on minietcd with C{--http-max-connections 40} and
C{--http-header-timeout 1}. A test opens 120 connections that each send a request
line and then one header line every 0.3 s (slowloris): those over the limit are
closed at once, the others when their headers are 1 s late, every one within
3 s; the node answers C{GET /status} afterwards, logged no request, and kept its
place in the cluster.
"""

from __future__ import annotations

import socket
import time
import uuid

from twisted.trial.unittest import SynchronousTestCase

from tests.harness.clusternodes import FAST_TIMERS, start_nodes, stop_nodes
from tests.harness.servers import shared_minietcd

LIMIT = 40
HEADER_TIMEOUT = 1.0
CLIENTS = 120


def closed(sock: socket.socket) -> bool:
    """Whether the server closed C{sock} (EOF or reset), without blocking."""
    try:
        return sock.recv(1024, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class SlowClientTests(SynchronousTestCase):
    def test_slow_header_clients_are_cut_off_and_the_node_answers(self) -> None:
        """Over the limit: closed at once; slow headers: closed at the deadline;
        the status API answers afterwards."""
        nodes = start_nodes(
            1,
            etcd=shared_minietcd().url,
            cluster=f"slow-{uuid.uuid4().hex[:10]}",
            timers=FAST_TIMERS,
            extra_args=[
                "--http-max-connections",
                str(LIMIT),
                "--http-header-timeout",
                str(HEADER_TIMEOUT),
            ],
        )
        self.addCleanup(stop_nodes, nodes)
        node = nodes[0]
        sockets = []
        for _ in range(CLIENTS):
            sock = socket.create_connection(("127.0.0.1", node.http_port), timeout=5)
            self.addCleanup(sock.close)
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: node\r\n")
            sockets.append(sock)
        started = time.monotonic()
        time.sleep(0.3)
        refused = sum(closed(s) for s in sockets)
        self.assertTrue(refused >= CLIENTS - LIMIT, f"{refused} closed at once")
        while time.monotonic() - started < 3.0:
            open_ = [s for s in sockets if not closed(s)]
            if not open_:
                break
            for sock in open_:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            time.sleep(0.3)
        still_open = [s for s in sockets if not closed(s)]
        self.assertEqual(len(still_open), 0, "slow clients still held after 3 s")
        status = node.status()
        self.assertEqual(status["self"]["id"], node.id)
        self.assertNotIn("GET /status", node.output())
