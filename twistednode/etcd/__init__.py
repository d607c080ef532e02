"""etcd clients: the HTTP base (errors, bodies, member failover), the v2 keys client,
the
v3 JSON-gateway client, the client TLS files and the HTTP client they share.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports nothing else of twistednode.
"""
