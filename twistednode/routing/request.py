# -*- test-case-name: tests.routing.test_request -*-
"""One call as it travels between nodes, and its JSON form (pure codec).

The document a node POSTs to the owner's transport::

    {"service": "docs", "key": "user-17", "payload": {...}, "hops": 1,
     "timeout": 4.2, "from": "<caller's node id>"}

A C{bytes} key travels as C{"keyBase64"} instead of C{"key"}. C{hops} counts the
nodes the call was sent to (the caller's send is hop 1; the owner may forward once
more); C{timeout} is what is left of the caller's deadline, in seconds.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from attrs import frozen

from twistednode.routing.errors import BadCall
from twistednode.routing.ownership import Key

#: A call goes to the owner and, if the owner's view differs, once more.
MAX_HOPS = 2
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_service(name: object) -> str:
    """C{name} if it may name a service (1-128 letters, digits, '.', '_', '-')."""
    if not isinstance(name, str) or not _SERVICE.fullmatch(name):
        raise BadCall(
            f"service {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@frozen
class CallRequest:
    """A call on its way to the owner of C{key}."""

    service: str
    key: Key
    payload: Any
    hops: int
    timeout: float
    sender: str

    def document(self) -> dict[str, Any]:
        """The JSON-ready form."""
        doc: dict[str, Any] = {"service": self.service}
        if isinstance(self.key, bytes):
            doc["keyBase64"] = base64.b64encode(self.key).decode("ascii")
        else:
            doc["key"] = self.key
        doc.update(
            payload=self.payload,
            hops=self.hops,
            timeout=round(self.timeout, 3),
            **{"from": self.sender},
        )
        return doc

    @classmethod
    def from_document(cls, doc: object) -> CallRequest:
        """Parse a received document; raises L{BadCall} saying what is wrong."""
        if not isinstance(doc, dict):
            raise BadCall("a call must be a JSON object")
        service = check_service(doc.get("service"))
        key: Key
        if "keyBase64" in doc:
            encoded = doc["keyBase64"]
            if not isinstance(encoded, str):
                raise BadCall("keyBase64 must be a string")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise BadCall("keyBase64 is not base64") from None
        elif isinstance(doc.get("key"), str):
            key = doc["key"]
        else:
            raise BadCall("a call needs a string 'key' or a 'keyBase64'")
        hops = doc.get("hops")
        if isinstance(hops, bool) or not isinstance(hops, int) or not 0 < hops:
            raise BadCall(f"hops must be a positive integer, not {hops!r}")
        timeout = doc.get("timeout")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise BadCall(
                f"timeout must be a number of seconds above 0, not {timeout!r}"
            )
        sender = doc.get("from")
        if not isinstance(sender, str):
            raise BadCall("'from' must be the caller's node id")
        return cls(service, key, doc.get("payload"), hops, float(timeout), sender)
