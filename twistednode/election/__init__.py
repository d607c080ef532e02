"""The leased election: the master is the node that holds the registry's master key.

C{lease} is the pure state machine (terms, deadlines, the epoch as fencing token);
C{campaign} is its Twisted adapter over a registry backend; C{fencing} is what an
application guards its writes with.

Internal: not part of the public API (that is what C{twistednode} exports). This part
imports only L{twistednode.registry} and L{twistednode.etcd}.
"""
