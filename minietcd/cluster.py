# -*- test-case-name: tests.minietcd.test_keys_api -*-
"""The single-member cluster minietcd presents: IDs, members, machines, stats, version.

IDs are computed as etcd computes them (SHA-1 of the sorted peer URLs and the
cluster token for a member; SHA-1 of the member IDs for the cluster), so a
minietcd named like an etcd member gets the same IDs.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

from attrs import define, field

from minietcd.render import format_time, go_json
from minietcd.store import NS, StoreStats

#: What C{/version} reports: the etcd release whose v2 API minietcd follows.
SERVER_VERSION = "3.4.23"
CLUSTER_VERSION = "3.4.0"
#: etcd's default advertised peer URL; minietcd has no peers but reports one.
DEFAULT_PEER_URLS = ("http://localhost:2380",)


def member_id(peer_urls: list[str] | tuple[str, ...], token: str) -> int:
    """etcd's C{NewMember} ID for a member of an initial cluster."""
    data = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(data.encode("utf-8")).digest()[:8], "big")


def cluster_id(member_ids: list[int]) -> int:
    """etcd's cluster ID: SHA-1 over the sorted member IDs (8 bytes each)."""
    data = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def hex_id(value: int) -> str:
    """An ID as etcd prints it (C{types.ID.String()}: lower-case hex, no padding)."""
    return f"{value:x}"


def go_duration(ns: int) -> str:
    """Go's C{time.Duration.String()}, e.g. C{3m7.445593937s} or C{1.5ms}."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    left = abs(ns)
    if left < NS:
        for unit, scale, digits in (("ms", 10**6, 6), ("µs", 10**3, 3)):
            if left >= scale:
                whole, fraction = divmod(left, scale)
                frac = f"{fraction:0{digits}d}".rstrip("0")
                return f"{sign}{whole}{'.' + frac if frac else ''}{unit}"
        return f"{sign}{left}ns"
    seconds, fraction = divmod(left, NS)
    frac = f"{fraction:09d}".rstrip("0")
    text = f"{seconds % 60}{'.' + frac if frac else ''}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m" + text
        hours = minutes // 60
        if hours:
            text = f"{hours}h" + text
    return sign + text


def store_stats_json(stats: StoreStats, watchers: int) -> bytes:
    """C{/v2/stats/store}: the counters in etcd's order (no trailing newline)."""
    return go_json(
        {
            "getsSuccess": stats.gets_success,
            "getsFail": stats.gets_fail,
            "setsSuccess": stats.sets_success,
            "setsFail": stats.sets_fail,
            "deleteSuccess": stats.delete_success,
            "deleteFail": stats.delete_fail,
            "updateSuccess": stats.update_success,
            "updateFail": stats.update_fail,
            "createSuccess": stats.create_success,
            "createFail": stats.create_fail,
            "compareAndSwapSuccess": stats.compare_and_swap_success,
            "compareAndSwapFail": stats.compare_and_swap_fail,
            "compareAndDeleteSuccess": stats.compare_and_delete_success,
            "compareAndDeleteFail": stats.compare_and_delete_fail,
            "expireCount": stats.expire_count,
            "watchers": watchers,
        }
    )


@define
class Cluster:
    """This member and its one-member cluster, as the cluster endpoints show them.

    The client URLs are passed in, as they are only known once the listeners are up.
    """

    name: str
    start_ns: int
    peer_urls: list[str] = field(factory=lambda: list(DEFAULT_PEER_URLS))
    member_id: int = field(init=False)
    cluster_id: int = field(init=False)

    def __attrs_post_init__(self) -> None:
        self.member_id = member_id(self.peer_urls, self.name)
        self.cluster_id = cluster_id([self.member_id])

    def member(self, client_urls: list[str]) -> dict[str, object]:
        """This member as C{/v2/members} lists it."""
        return {
            "id": hex_id(self.member_id),
            "name": self.name,
            "peerURLs": list(self.peer_urls),
            "clientURLs": list(client_urls),
        }

    def members_json(self, client_urls: list[str]) -> bytes:
        """C{GET /v2/members}, with etcd's trailing newline."""
        return go_json({"members": [self.member(client_urls)]}) + b"\n"

    def leader_json(self, client_urls: list[str]) -> bytes:
        """C{GET /v2/members/leader}: this member, it always leads."""
        return go_json(self.member(client_urls)) + b"\n"

    def self_stats_json(self, now_ns: int) -> bytes:
        """C{GET /v2/stats/self} of a lone leader."""
        started = format_time(self.start_ns)
        own = hex_id(self.member_id)
        return go_json(
            {
                "name": self.name,
                "id": own,
                "state": "StateLeader",
                "startTime": started,
                "leaderInfo": {
                    "leader": own,
                    "uptime": go_duration(now_ns - self.start_ns),
                    "startTime": started,
                },
                "recvAppendRequestCnt": 0,
                "sendAppendRequestCnt": 0,
            }
        )

    def leader_stats_json(self) -> bytes:
        """C{GET /v2/stats/leader}: no followers."""
        return go_json({"leader": hex_id(self.member_id), "followers": {}})


def machines_text(client_urls: list[str]) -> bytes:
    """C{GET /v2/machines}: the client URLs joined by C{", "}."""
    return ", ".join(client_urls).encode("utf-8")


def version_json() -> bytes:
    """C{GET /version} (no trailing newline)."""
    return json.dumps(
        {"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION},
        separators=(",", ":"),
    ).encode("ascii")


def message_json(message: str) -> bytes:
    """etcd's C{httptypes.HTTPError} body, e.g. C{{"message":"Not found"}}."""
    return go_json({"message": message})


class MemberRequestError(ValueError):
    """A rejected members-API request body; C{str()} is etcd's message."""


#: Go's encoding/json refuses a value nested deeper than this.
GO_JSON_MAX_DEPTH = 10_000


def _too_deep(body: bytes) -> str:
    """Why a body nested too deeply for Python's parser is refused.

    Go's message names the bracket that went past its depth limit. Python's parser
    gives up sooner; a body nested between the two limits is still refused here
    (Go would parse it and then fail on its shape), with a message that says why.
    """
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            if depth > GO_JSON_MAX_DEPTH:
                return f"invalid character {chr(byte)!r} exceeded max depth"
        elif byte in b"]}":
            depth -= 1
    return "json: the value is nested too deeply"


def parse_peer_urls(body: bytes) -> list[str]:
    """The C{peerURLs} of a member add/update body, validated as etcd does
    (C{types.NewURLs}); raise L{MemberRequestError} with etcd's wording."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise MemberRequestError(_too_deep(body)) from None
    except ValueError as error:
        text = body.decode("utf-8", "replace").strip()
        pos = getattr(error, "pos", len(text))
        if not text or pos >= len(body.rstrip()):
            raise MemberRequestError("unexpected end of JSON input") from None
        bad = body.decode("utf-8", "replace")[pos]
        raise MemberRequestError(
            f"invalid character {bad!r} looking for beginning of value"
        ) from None
    urls = document.get("peerURLs") if isinstance(document, dict) else None
    if urls is not None and not (
        isinstance(urls, list) and all(isinstance(url, str) for url in urls)
    ):
        raise MemberRequestError("json: cannot unmarshal peerURLs")
    if not urls:
        raise MemberRequestError("no valid URLs given")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise MemberRequestError(
                f"URL scheme must be http, https, unix, or unixs: {url}"
            )
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None or not parts.hostname and not parts.netloc.startswith(":"):
            raise MemberRequestError(
                f'URL address does not have the form "host:port": {url}'
            )
        if parts.path:
            raise MemberRequestError(f"URL must not contain a path: {url}")
    return sorted(urls)
