"""Embed a cluster node in your own Twisted program (the README's example).

    python docs/embedded_node.py [ETCD_URL [SECONDS]]

Start it in two or three terminals: the copies find each other through etcd (or
minietcd), elect one master, and the master sends the others a message every second.
"""

import sys

from twisted.internet import task

from twistednode import Added, ClusterNode, Removed, make_settings


async def main(reactor, etcd_url="http://127.0.0.1:2379", seconds="3600") -> None:
    node = ClusterNode(
        reactor=reactor,
        settings=make_settings(epoch_ms=int(reactor.seconds() * 1000)),
        cluster="example",
        etcd_urls=(etcd_url,),
        udp_port=0,  # any free port: the others learn it from the registry
        udp_interface="127.0.0.1",  # leave out to listen on every interface
    )
    me = node.id[:8]

    def joined(event: Added) -> None:
        print(f"{me}: {event.member.id[:8]} joined from {event.member.address}")

    def gone(event: Removed) -> None:
        print(f"{me}: {event.member.id[:8]} is gone ({event.reason})")

    node.on("added", joined)
    node.on("removed", gone)
    node.on("promotion", lambda event: print(f"{me}: I am the master now"))
    node.subscribe("news", lambda news, envelope, source: print(f"{me}: {news}"))

    def tell_the_others() -> None:
        if node.is_master:
            node.publish("news", f"{me} is master of {len(node.members) + 1} nodes")

    ticker = task.LoopingCall(tell_the_others)
    ticker.clock = reactor
    node.startService()
    # Leave cleanly when the program ends, Ctrl-C included: the others see it at once.
    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    ticker.start(1.0)
    await task.deferLater(reactor, float(seconds))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
