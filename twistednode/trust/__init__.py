"""The cluster's keyring and sealed datagrams: who may speak on the membership wire.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports nothing else of twistednode; discovery imports it.
"""
