"""Who owns a key (rendezvous hashing over the view) and calls sent to the owner.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports nothing else of twistednode: the node gives it its view and the transport's
client; the transport imports its errors and requests.
"""
