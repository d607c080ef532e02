# -*- test-case-name: tests.routing.test_router -*-
"""Why a call failed: one exception per cause, each with a stable C{kind}.

The kind travels between nodes (the transport's JSON errors) and to HTTP clients
(C{POST /v1/route/...}); L{CallError.status} is the HTTP status that says it.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from typing import ClassVar


class CallError(Exception):
    """A call did not give an answer; C{kind} says why, C{str()} says it in words."""

    kind: ClassVar[str] = "call-failed"
    status: ClassVar[int] = 500

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The node the failure comes from, when one does.
        self.node = node


class NoOwner(CallError):
    """No member may own keys (an empty view, or only client nodes)."""

    kind = "no-owner"
    status = 503


class CallTimedOut(CallError):
    """The deadline passed before an owner answered (the last reason is said)."""

    kind = "timed-out"
    status = 504


class HandlerFailed(CallError):
    """The owner's handler raised, or answered with something that is not JSON."""

    kind = "handler-failed"
    status = 502


class UnknownService(CallError):
    """The owner has no handler for the service."""

    kind = "unknown-service"
    status = 404


class Moved(CallError):
    """The receiver does not own the key and may not forward it again (two hops)."""

    kind = "moved"
    status = 409


class Unreachable(CallError):
    """The owner could not be reached (refused, reset, no transport endpoint)."""

    kind = "unreachable"
    status = 503


class BadCall(CallError):
    """The request itself is wrong (not JSON, no such field, key of a wrong type)."""

    kind = "bad-request"
    status = 400


class Unauthenticated(CallError):
    """A node-to-node request without a valid proof of the cluster key."""

    kind = "unauthenticated"
    status = 401


KINDS: dict[str, type[CallError]] = {
    cls.kind: cls
    for cls in (
        CallError,
        NoOwner,
        CallTimedOut,
        HandlerFailed,
        UnknownService,
        Moved,
        Unreachable,
        BadCall,
        Unauthenticated,
    )
}


def error_of(kind: object, message: object, node: object = None) -> CallError:
    """The exception a received error document names (an unknown kind: CallError)."""
    cls = KINDS.get(kind, CallError) if isinstance(kind, str) else CallError
    return cls(
        message if isinstance(message, str) else f"call failed ({kind!r})",
        node if isinstance(node, str) else None,
    )
