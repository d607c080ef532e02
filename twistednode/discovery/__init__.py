"""node-discover's protocol: the wire codec, the legacy key, the settings, membership
and
its election (pure), its events, and the UDP protocol that adapts them to a socket.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports only twistednode.trust (the keyring and sealed datagrams).
"""
