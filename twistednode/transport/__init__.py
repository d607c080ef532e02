"""The node-to-node transport: HTTP/JSON between nodes, proven by the cluster key.

Internal: not part of the public API (that is what C{twistednode} exports). It
imports routing (its requests and errors), trust (the keyring) and etcd (the
pooled treq client).
"""
