# -*- test-case-name: tests.cli.test_render -*-
"""What the C{twistednode} command prints: tables, lines and JSON, from values.

Pure functions of a L{ClusterSnapshot}, a node's status document or a
L{WatchEvent}, and C{now} (seconds since the epoch, for ages and timestamps). Times
are printed in UTC (C{2026-12-03T17:47:25.123Z}); ages as C{5m03s}.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twistednode.cli.follow import (
    Changed,
    Joined,
    Left,
    WatchEvent,
    Watching,
)
from twistednode.cli.snapshot import ClusterSnapshot, Listed
from twistednode.election.lease import Holder
from twistednode.registry.record import MemberRecord


def timestamp(now: float) -> str:
    """C{now} as UTC, to the millisecond: C{2026-12-03T17:47:25.123Z}."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def age(seconds: float) -> str:
    """A duration for a table: C{42s}, C{5m03s}, C{2h04m}, C{3d02h}."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def weight(value: float) -> str:
    """A weight short enough for a column (ten significant digits)."""
    return format(value, ".10g")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, the last one not padded."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _master_text(snapshot: ClusterSnapshot) -> str:
    holder = snapshot.master
    if holder is None:
        return "no master"
    stale = "" if snapshot.member(holder.node_id) else ", no member record"
    return f"master {holder.node_id} (epoch {holder.epoch}{stale})"


def _role(listed: Listed) -> str:
    return "eligible" if listed.eligible else "client"


def members_text(
    snapshot: ClusterSnapshot, now: float, endpoint: str, api: str | None
) -> str:
    """C{twistednode members}: a heading, one row per member, the master."""
    holder = snapshot.master
    rows = [
        [
            m.record.id,
            m.record.address,
            str(m.record.port),
            weight(m.record.weight),
            age(now - m.record.started_at),
            _role(m),
            "*" if holder is not None and holder.node_id == m.record.id else "",
        ]
        for m in snapshot.members
    ]
    count = len(snapshot.members)
    lines = [
        f"cluster {snapshot.cluster} on {endpoint} (etcd {api or '?'}), "
        f"index {snapshot.index}: {count} member{'' if count == 1 else 's'}, "
        + _master_text(snapshot)
    ]
    if rows:
        header = ["ID", "ADDRESS", "PORT", "WEIGHT", "AGE", "ROLE", "MASTER"]
        lines += table(header, rows)
    for name, why in snapshot.rejected:
        lines.append(f"ignored {name}: {why}")
    return "\n".join(lines) + "\n"


def record_json(record: MemberRecord, now: float) -> dict[str, Any]:
    """A member record for C{--json}."""
    return {
        "id": record.id,
        "address": record.address,
        "port": record.port,
        "hostName": record.host_name,
        "weight": record.weight,
        "startedAt": record.started_at,
        "age": round(max(0.0, now - record.started_at), 3),
        "client": record.client,
        "eligible": not record.client,
        "advertisement": record.advertisement,
    }


def _holder_json(holder: Holder | None) -> dict[str, Any] | None:
    if holder is None:
        return None
    return {"id": holder.node_id, "epoch": holder.epoch}


def members_json(
    snapshot: ClusterSnapshot, now: float, endpoint: str, api: str | None
) -> dict[str, Any]:
    """C{twistednode members --json}."""
    holder = snapshot.master
    return {
        "cluster": snapshot.cluster,
        "registry": endpoint,
        "api": api,
        "index": snapshot.index,
        "master": _holder_json(holder),
        "members": [
            dict(
                record_json(m.record, now),
                createdIndex=m.created_index,
                master=holder is not None and holder.node_id == m.record.id,
            )
            for m in snapshot.members
        ],
        "ignored": [{"key": name, "reason": why} for name, why in snapshot.rejected],
    }


def _member_brief(record: MemberRecord) -> str:
    role = "client" if record.client else "eligible"
    return (
        f"{record.id} {record.address}:{record.port} "
        f"weight {weight(record.weight)} {role}"
    )


def event_line(event: WatchEvent, now: float) -> str:
    """One line of C{twistednode watch}, with its timestamp."""
    if isinstance(event, Watching):
        snapshot = event.snapshot
        count = len(snapshot.members)
        text = (
            f"watching  cluster {snapshot.cluster} from index {snapshot.index}: "
            f"{count} member{'' if count == 1 else 's'}, {_master_text(snapshot)}"
        )
    elif isinstance(event, Joined):
        text = f"joined    {_member_brief(event.record)}"
    elif isinstance(event, Changed):
        text = f"changed   {_member_brief(event.record)}"
    elif isinstance(event, Left):
        where = (
            ""
            if event.record is None
            else f" {event.record.address}:{event.record.port}"
        )
        text = f"left      {event.member_id}{where} ({event.reason})"
    elif event.holder is None:
        text = "master    none"
    else:
        text = f"master    {event.holder.node_id} (epoch {event.holder.epoch})"
    return f"{timestamp(now)}  {text}"


def _yes(value: object) -> str:
    return "yes" if value else "no"


def status_text(document: Mapping[str, Any]) -> str:
    """C{twistednode status}: a node's C{/status} document, for a terminal."""
    now = float(document.get("now") or 0.0)
    me = document.get("self") or {}
    registry = document.get("registry") or {}
    election = document.get("election") or {}
    started = me.get("startedAt")
    up = age(now - float(started)) if isinstance(started, int | float) else "-"
    lines = [
        f"node      {me.get('id')} ({me.get('hostName')}) at "
        f"{me.get('address')}:{me.get('port')}, up {up}",
        f"cluster   {document.get('cluster')}",
        f"master    {document.get('master') or 'none'}"
        + (" (this node)" if me.get("isMaster") else ""),
    ]
    mode = election.get("mode")
    parts = [f"{mode}"]
    if election.get("masterEpoch") is not None:
        parts.append(f"epoch {election['masterEpoch']}")
    if me.get("isMaster") and mode == "lease":
        parts.append(f"term valid {election.get('validFor')} s")
    for key, label in (("terms", "terms won"), ("stepDowns", "step-downs")):
        if election.get(key) is not None:
            parts.append(f"{label} {election[key]}")
    parts.append(f"eligible {_yes(me.get('isMasterEligible'))}")
    lines.append("election  " + ", ".join(parts))
    if registry.get("state") == "disabled":
        lines.append("registry  none (static peers)")
    else:
        lines.append(
            f"registry  {registry.get('state')} on {registry.get('url')} "
            f"(etcd {registry.get('api') or '?'})"
        )
        if registry.get("lastError"):
            lines.append(f"          last error: {registry['lastError']}")
    members = list(document.get("members") or [])
    lines.append(f"members   {len(members)}")
    if members:
        rows = [
            [
                str(m.get("id")),
                f"{m.get('address')}:{m.get('port')}",
                str(m.get("source")),
                "-" if m.get("weight") is None else weight(float(m["weight"])),
                f"{float(m.get('lastSeen') or 0.0):.1f}s",
                "*" if m.get("isMaster") else "",
            ]
            for m in members
        ]
        header = ["ID", "ADDRESS", "SOURCE", "WEIGHT", "LAST HELLO", "MASTER"]
        lines += ["  " + line for line in table(header, rows)]
    dropped = document.get("dropped") or {}
    if dropped:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items()))
        lines.append(f"dropped   {counts}")
    return "\n".join(lines) + "\n"
