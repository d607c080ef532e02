"""The server held against real etcd: minietcd, or a second etcd to check the suite.

C{TWISTEDNODE_CONFORMANCE_PEER=etcd} selects a second, independent real etcd whose index
starts elsewhere than the first one's; every conformance and etcdctl test must pass
then, which shows the expectations and the normalisation are etcd's, not luck.
"""

from __future__ import annotations

import urllib.request

from tests.conformance.runner import ETCD_PEER, candidate_kind
from tests.servers import RealEtcd, shared_instance, shared_minietcd


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


def candidate() -> tuple[str, str]:
    """The kind and URL of the shared server to compare with real etcd."""
    kind = candidate_kind()
    if kind == ETCD_PEER:
        return kind, shared_instance("etcd-peer", _offset_real_etcd).url
    return kind, shared_minietcd().url
