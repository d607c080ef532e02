"""The servers the conformance and etcdctl tests compare, private to those tests.

They are shared by every case in the test process but by no other test module: a
background writer, or a key with a TTL left by another test, would move the global
index in the middle of a case and break the index-relative comparison.

C{TWISTEDNODE_CONFORMANCE_PEER=etcd} selects a second, independent real etcd whose index
starts elsewhere than the first one's; every conformance and etcdctl test must pass
then, which shows the expectations and the normalisation are etcd's, not luck.
"""

from __future__ import annotations

import urllib.request

from tests.harness.servers import MiniEtcdProcess, RealEtcd, shared_instance
from tests.minietcd.conformance.runner import ETCD_PEER, candidate_kind


def _offset_real_etcd() -> RealEtcd:
    """A real etcd whose index is 7 ahead of a fresh one's."""
    etcd = RealEtcd().start()
    try:
        for number in range(7):
            request = urllib.request.Request(
                f"{etcd.url}/v2/keys/conformance-offset/{number}",
                data=b"",
                method="PUT",
            )
            urllib.request.urlopen(request, timeout=5).close()
    except BaseException:
        etcd.stop()
        raise
    return etcd


def reference() -> RealEtcd:
    """The real etcd every case runs against."""
    return shared_instance("conformance-etcd", lambda: RealEtcd().start())


def candidate() -> tuple[str, str]:
    """The kind and URL of the server compared with real etcd."""
    kind = candidate_kind()
    if kind == ETCD_PEER:
        return kind, shared_instance("conformance-etcd-peer", _offset_real_etcd).url
    server = shared_instance("conformance-minietcd", lambda: MiniEtcdProcess().start())
    return kind, server.url
