"""The registry: this node's record kept alive under a TTL, and the members directory
listed and watched, over a backend interface with etcd v2 and v3 implementations.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports only L{twistednode.etcd}.
"""
