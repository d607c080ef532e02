"""Embed a cluster node in an asyncio program (the README's asyncio example).

    python docs/asyncio_node.py [ETCD_URL [SECONDS]]

Twisted runs on the asyncio event loop: install its asyncio reactor on the loop
first, and the node's sockets and timers are the loop's. Events arrive as callbacks
on the loop's thread, so they can set asyncio events and futures; a Deferred the
node returns is awaited as a future with C{Deferred.asFuture}.
"""

import asyncio
import sys

from twisted.internet import asyncioreactor

from twistednode import Added, ClusterNode, Removed, make_settings


async def main(etcd_url="http://127.0.0.1:2379", seconds="3600") -> None:
    from twisted.internet import reactor  # the asyncio reactor installed below

    loop = asyncio.get_running_loop()
    node = ClusterNode(
        reactor=reactor,
        settings=make_settings(epoch_ms=int(reactor.seconds() * 1000)),
        cluster="asyncio-example",
        etcd_urls=(etcd_url,),
        udp_port=0,
        udp_interface="127.0.0.1",
    )
    me = node.id[:8]
    master = asyncio.Event()

    def joined(event: Added) -> None:
        print(f"{me}: {event.member.id[:8]} joined from {event.member.address}")

    def gone(event: Removed) -> None:
        print(f"{me}: {event.member.id[:8]} is gone ({event.reason})")

    node.on("added", joined)
    node.on("removed", gone)
    node.on("promotion", lambda event: master.set())
    node.on("demotion", lambda event: master.clear())
    node.subscribe("news", lambda news, envelope, source: print(f"{me}: {news}"))

    async def tell_the_others() -> None:
        while True:
            await master.wait()  # an asyncio.Event the node's callbacks set
            print(f"{me}: I am the master now")
            while node.is_master:
                node.publish("news", f"{me} is master of {len(node.members) + 1} nodes")
                await asyncio.sleep(1.0)

    print(f"{me}: running on {type(reactor).__name__}")
    reactor.startRunning(installSignalHandlers=False)  # asyncio handles Ctrl-C
    node.startService()
    teller = asyncio.create_task(tell_the_others())
    try:
        await asyncio.sleep(float(seconds))
    finally:  # the time is up, or Ctrl-C cancelled us: leave cleanly either way
        teller.cancel()
        await node.stopService().asFuture(loop)  # a Deferred, awaited as a future
        print(f"{me}: left the cluster")
        reactor.fireSystemEvent("shutdown")  # Twisted's threads and connections


if __name__ == "__main__":
    with asyncio.Runner() as runner:
        asyncioreactor.install(runner.get_loop())
        try:
            runner.run(main(*sys.argv[1:]))
        except KeyboardInterrupt:
            pass  # Ctrl-C: main() has left the cluster on its way out
