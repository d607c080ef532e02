# -*- test-case-name: tests.registry.test_record -*-
"""
The member record: what a node writes at C{/twistednode/<cluster>/members/<id>}.

The value is one compact JSON object::

    {"id": "<iid>", "address": "10.0.0.5", "port": 41234, "hostName": "web-1",
     "weight": -0.17957, "advertisement": {"svc": "api"}, "startedAt": 1764165000.5}

C{id} is the node's node-discover C{iid} (a UUID) and equals the last component of the
key; C{address}/C{port} are where the node's UDP hello socket can be reached. A node
with a node-to-node transport adds C{"transport": "http://10.0.0.5:41235"}, and one
that owns more or fewer keys than its peers C{"capacity": 2.0}. Anything
read back from etcd is validated by L{MemberRecord.from_json}: a bad value raises
C{ValueError} with a message that says what is wrong, so the registry can log it and
ignore the key. L{check_cluster_name} says which C{<cluster>} names the key may hold.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import uuid
from typing import Any

from attrs import field, frozen

_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_cluster_name(name: object) -> str:
    """Return C{name} if it may name a cluster (one safe key component), else raise
    ValueError saying what a name must be."""
    if not isinstance(name, str) or not _CLUSTER.fullmatch(name):
        raise ValueError(
            f"cluster name {name!r} must be 1-128 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def _check_id(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"member id must be a string, not {type(value).__name__}")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"member id {value!r} is not a UUID") from None
    if canonical != value:
        raise ValueError(
            f"member id {value!r} is not a lowercase hyphenated UUID ({canonical!r})"
        )


def _check_address(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"address must be a string, not {type(value).__name__}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"address {value!r} is not an IP address") from None


def _check_port(instance: object, attribute: object, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"port must be an integer, not {type(value).__name__}")
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} is out of range 1-65535")


def _check_host_name(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"hostName must be a string, not {type(value).__name__}")


def _finite_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return float(value)


def _check_weight(instance: object, attribute: object, value: Any) -> None:
    _finite_number("weight", value)


def _check_started_at(instance: object, attribute: object, value: Any) -> None:
    if _finite_number("startedAt", value) < 0:
        raise ValueError(f"startedAt must be >= 0, not {value!r}")


def _check_advertisement(instance: object, attribute: object, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"advertisement is not plain JSON: {e}") from None


def _check_transport(instance: object, attribute: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValueError(f"transport must be a URL string, not {type(value).__name__}")
    if len(value) > 512 or not value.startswith(("http://", "https://")):
        raise ValueError(f"transport {value[:80]!r} is not an http(s) URL")


def _check_capacity(instance: object, attribute: object, value: Any) -> None:
    capacity = _finite_number("capacity", value)
    if not 0 < capacity <= 1e6:
        raise ValueError(f"capacity must be above 0 and at most 1e6, not {value!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_client(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"client must be true or false, not {value!r}")


@frozen
class MemberRecord:
    """One node's entry in the members directory (validated on construction)."""

    id: str = field(validator=_check_id)
    address: str = field(validator=_check_address)
    port: int = field(validator=_check_port)
    host_name: str = field(default="", validator=_check_host_name)
    weight: float = field(default=0.0, validator=_check_weight)
    advertisement: Any = field(default=None, validator=_check_advertisement)
    started_at: float = field(default=0.0, validator=_check_started_at)
    client: bool = field(default=False, validator=_check_client)
    transport: str | None = field(default=None, validator=_check_transport)
    capacity: float = field(default=1.0, validator=_check_capacity)

    def to_json(self) -> str:
        """The record as the compact JSON text stored in etcd."""
        extra: dict[str, object] = {}
        if self.transport is not None:
            extra["transport"] = self.transport
        if self.capacity != 1.0:
            extra["capacity"] = self.capacity
        return json.dumps(
            {
                "id": self.id,
                "address": self.address,
                "port": self.port,
                "hostName": self.host_name,
                "weight": self.weight,
                "advertisement": self.advertisement,
                "startedAt": self.started_at,
                "client": self.client,
                **extra,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str, expected_id: str | None = None) -> MemberRecord:
        """
        Parse a stored value; C{expected_id} is the key's last component.

        @raise ValueError: the value is not JSON, not an object, misses a required
            key ("id", "address", "port", "weight", "startedAt"), has a value of the
            wrong type or range, or its id differs from C{expected_id}.
            "hostName" defaults to "", "advertisement" to null and "client" (a
            client-only node, never eligible, sends no hellos) to false,
            "transport" (the node-to-node URL) to null, "capacity" (its share of
            the keys, relative) to 1; unknown
            keys are ignored so a newer node's record still reads.
        """
        if not isinstance(text, str):
            raise ValueError(f"record value must be text, not {type(text).__name__}")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"record value is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"record value must be a JSON object, not {type(data).__name__}"
            )
        for key in ("id", "address", "port", "weight", "startedAt"):
            if key not in data:
                raise ValueError(f"record has no {key!r}")
        record = cls(
            id=data["id"],
            address=data["address"],
            port=data["port"],
            host_name=data.get("hostName", ""),
            weight=data["weight"],
            advertisement=data.get("advertisement"),
            started_at=data["startedAt"],
            client=data.get("client", False),
            transport=data.get("transport"),
            capacity=data.get("capacity", 1.0),
        )
        if expected_id is not None and record.id != expected_id:
            raise ValueError(
                f"record id {record.id!r} does not match its key {expected_id!r}"
            )
        return record
