"""twistednode: copies of an application find each other and elect one master.

This module is the public API: what an application that embeds a node imports. Every
name in C{__all__} is kept stable; the submodules are internal (each says so) and may
move between releases. Names are imported on first use, so that C{import twistednode}
costs nothing until the application asks for a node.

    from twistednode import ClusterNode, make_settings

    node = ClusterNode(reactor=reactor, settings=make_settings(), cluster="example",
                       etcd_urls=("http://127.0.0.1:2379",))
    node.on("promotion", lambda event: ...)
    node.startService()
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tapkit.version import __version__

if TYPE_CHECKING:
    from twistednode.discovery.events import (
        Added,
        Demotion,
        MasterSeen,
        Member,
        MembershipEvent,
        Promotion,
        Removed,
    )
    from twistednode.discovery.settings import Settings, make_settings
    from twistednode.discovery.wire import Envelope, MessageTooLarge
    from twistednode.election.fencing import EpochFence, StaleEpoch, v3_master_guard
    from twistednode.etcd.tls import ClientTLS
    from twistednode.etcd.v3 import Credentials
    from twistednode.node import ClusterNode, EventName, Leadership
    from twistednode.routing.errors import (
        CallError,
        CallTimedOut,
        HandlerFailed,
        NoOwner,
        UnknownService,
    )
    from twistednode.routing.ownership import OwnershipChanged, OwnershipView

#: Where each public name lives (imported when first asked for).
_HOMES = {
    "ClusterNode": "twistednode.node",
    "EventName": "twistednode.node",
    "Member": "twistednode.discovery.events",
    "MembershipEvent": "twistednode.discovery.events",
    "Added": "twistednode.discovery.events",
    "Removed": "twistednode.discovery.events",
    "MasterSeen": "twistednode.discovery.events",
    "Promotion": "twistednode.discovery.events",
    "Demotion": "twistednode.discovery.events",
    "Settings": "twistednode.discovery.settings",
    "make_settings": "twistednode.discovery.settings",
    "Envelope": "twistednode.discovery.wire",
    "MessageTooLarge": "twistednode.discovery.wire",
    "Credentials": "twistednode.etcd.v3",
    "ClientTLS": "twistednode.etcd.tls",
    "Leadership": "twistednode.node",
    "EpochFence": "twistednode.election.fencing",
    "StaleEpoch": "twistednode.election.fencing",
    "v3_master_guard": "twistednode.election.fencing",
    "CallError": "twistednode.routing.errors",
    "CallTimedOut": "twistednode.routing.errors",
    "HandlerFailed": "twistednode.routing.errors",
    "NoOwner": "twistednode.routing.errors",
    "UnknownService": "twistednode.routing.errors",
    "OwnershipChanged": "twistednode.routing.ownership",
    "OwnershipView": "twistednode.routing.ownership",
}

__all__ = [
    "Added",
    "CallError",
    "CallTimedOut",
    "ClientTLS",
    "ClusterNode",
    "Credentials",
    "Demotion",
    "Envelope",
    "EpochFence",
    "EventName",
    "HandlerFailed",
    "Leadership",
    "MasterSeen",
    "Member",
    "MembershipEvent",
    "MessageTooLarge",
    "NoOwner",
    "OwnershipChanged",
    "OwnershipView",
    "Promotion",
    "Removed",
    "Settings",
    "StaleEpoch",
    "UnknownService",
    "__version__",
    "make_settings",
    "v3_master_guard",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'twistednode' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
