"""The web face: the JSON status, its event stream and the live page.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports nothing else of twistednode.
"""
