# -*- test-case-name: tests.minietcd.test_store -*-
"""What the store answers and watchers receive: events and nodes as etcd shows them."""

from __future__ import annotations

from attrs import frozen


@frozen
class NodeView:
    """A node as etcd renders it (its C{NodeExtern}); None/0/empty fields are omitted.

    C{expiration} is in epoch nanoseconds; C{value} is L{None} for directories.
    """

    key: str
    value: str | None = None
    dir: bool = False
    expiration: int | None = None
    ttl: int = 0
    nodes: list[NodeView] | None = None
    modified_index: int = 0
    created_index: int = 0


@frozen
class Event:
    """The result of an operation, and what watchers receive.

    C{etcd_index} is the store index to report in C{X-Etcd-Index} for this response;
    C{refresh} marks TTL refreshes, which are recorded but never delivered.
    """

    action: str
    node: NodeView
    prev_node: NodeView | None = None
    etcd_index: int = 0
    refresh: bool = False

    @property
    def index(self) -> int:
        """The index of the change, as etcd's C{Event.Index()}."""
        return self.node.modified_index

    @property
    def created(self) -> bool:
        """Whether etcd answers this event with 201 Created."""
        return self.action == "create" or (
            self.action == "set" and self.prev_node is None
        )
