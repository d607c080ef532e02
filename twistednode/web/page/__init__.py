"""The live status page: static files that L{twistednode.web.status.StatusAPI} serves.

Internal: not part of the public API (that is what C{twistednode} exports).
"""
