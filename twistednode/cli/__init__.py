"""The C{twistednode} command: a cluster seen from the registry, or from one node.

Internal: not part of the public API (that is what C{twistednode} exports).
"""
