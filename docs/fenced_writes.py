"""Fenced writes: a resource that refuses the writes of a master whose term is over.

    .venv/bin/python docs/fenced_writes.py [ETCD_URL]

Two nodes in one process elect a master through the registry (minietcd or etcd);
the master writes to a store with its term's epoch; then it stops, the other node
takes over and writes with its own, higher epoch; a late write carrying the old
epoch is refused. The store here is a dict; in a real application the fence lives
beside the data it guards (a database row, a file, a queue) and is checked in the
same transaction as the write.
"""

import sys
import uuid

from twisted.internet import task

from twistednode import ClusterNode, EpochFence, StaleEpoch, make_settings


class FencedStore:
    """A store that remembers the highest epoch it accepted."""

    def __init__(self) -> None:
        self.fence = EpochFence()
        self.data: dict[str, str] = {}

    def write(self, epoch: int, key: str, value: str) -> None:
        self.fence.admit(epoch)  # raises StaleEpoch for an older term
        self.data[key] = value


async def main(reactor, etcd_url="http://127.0.0.1:2379") -> None:
    cluster = "fencing-" + uuid.uuid4().hex[:8]
    nodes = [
        ClusterNode(
            reactor=reactor,
            settings=make_settings(
                epoch_ms=int(reactor.seconds() * 1000), weight=weight
            ),
            cluster=cluster,
            etcd_urls=(etcd_url,),
            udp_port=0,
            udp_interface="127.0.0.1",
            pid=str(uuid.uuid4()),  # two nodes in one process need their own pid
        )
        for weight in (2.0, 1.0)
    ]
    for node in nodes:
        node.startService()
    store = FencedStore()
    while not any(node.is_master for node in nodes):
        await task.deferLater(reactor, 0.05)
    first = next(node for node in nodes if node.is_master)
    old_epoch = first.leadership.epoch
    store.write(old_epoch, "owner", first.id)
    print(f"master {first.id[:8]} wrote with epoch {old_epoch}")

    await first.stopService()
    second = next(node for node in nodes if node is not first)
    while not second.is_master:
        await task.deferLater(reactor, 0.05)
    new_epoch = second.leadership.epoch
    store.write(new_epoch, "owner", second.id)
    print(f"master {second.id[:8]} wrote with epoch {new_epoch}")
    try:
        store.write(old_epoch, "owner", first.id)
    except StaleEpoch as e:
        print(f"a late write of the old master was refused: {e}")
    await second.stopService()


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
