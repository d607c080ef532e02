"""The node's Prometheus metrics: a collector read at scrape time, and its registry.

Internal: not part of the public API (that is what C{twistednode} exports).
"""
