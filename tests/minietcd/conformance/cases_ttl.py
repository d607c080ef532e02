"""Cases: TTLs set, changed, removed and refreshed; ttl=0; expiry as expire events."""

from __future__ import annotations

import time

from tests.minietcd.conformance.runner import Side, case

EXPIRY_WAIT = 5.0


@case("ttl")
def ttl_set_gives_expiration_and_ttl(s: Side) -> None:
    """ttl=N gives the node an expiration and ttl=N, also when read back."""
    r = s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    body = s.expect(r, 201, node__ttl=100)
    s.check("expiration" in body["node"], "no expiration with a ttl")
    s.expect(s.keys("GET", "k"), 200, node__ttl=100)
    s.keys("GET", "", {"recursive": "true"})


@case("ttl")
def ttl_changed_by_set(s: Side) -> None:
    """A set with another ttl replaces the TTL; prevNode shows the old one."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"ttl": "200"}, form={"value": "v"})
    s.expect(r, 200, node__ttl=200, prevNode__ttl=100)


@case("ttl")
def ttl_removed_by_set_without_ttl(s: Side) -> None:
    """A plain set without ttl leaves the node without a TTL."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    body = s.expect(s.keys("PUT", "k", form={"value": "w"}), 200, prevNode__ttl=100)
    s.check("ttl" not in body["node"] and "expiration" not in body["node"], "TTL kept")


@case("ttl")
def ttl_removed_by_empty_ttl_update(s: Side) -> None:
    """ttl= (empty) with prevExist=true removes the TTL; ttl= on a set means none."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"ttl": "", "prevExist": "true"}, form={"value": "v"})
    body = s.expect(r, 200, action="update", prevNode__ttl=100)
    s.check("expiration" not in body["node"], "TTL kept by ttl=")
    body = s.expect(s.keys("PUT", "j", {"ttl": ""}, form={"value": "v"}), 201)
    s.check("expiration" not in body["node"], "ttl= gave a TTL")


@case("ttl")
def update_and_cas_without_ttl_remove_it(s: Side) -> None:
    """update and compareAndSwap without ttl remove an existing TTL."""
    s.keys("PUT", "u", {"ttl": "100"}, form={"value": "1"})
    s.keys("PUT", "c", {"ttl": "100"}, form={"value": "1"})
    r = s.keys("PUT", "u", {"prevExist": "true"}, form={"value": "2"})
    s.check("ttl" not in s.expect(r, 200)["node"], "update kept the TTL")
    r = s.keys("PUT", "c", {"prevValue": "1"}, form={"value": "2"})
    s.check("ttl" not in s.expect(r, 200)["node"], "compareAndSwap kept the TTL")
    r = s.keys("PUT", "c", {"prevValue": "2", "ttl": "50"}, form={"value": "3"})
    s.expect(r, 200, action="compareAndSwap", node__ttl=50)


@case("ttl")
def refresh_with_prev_exist(s: Side) -> None:
    """refresh=true&prevExist=true: action update, value and createdIndex kept."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "200", "prevExist": "true"})
    s.expect(r, 200, action="update", node__value="v", node__ttl=200)
    s.expect(r, 200, node__createdIndex=s.idx(1), node__modifiedIndex=s.idx(2))
    s.expect(s.keys("GET", "k"), 200, node__value="v", node__ttl=200)


@case("ttl")
def refresh_without_prev_exist(s: Side) -> None:
    """refresh=true alone goes through set: action set, 200, new createdIndex."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "300"})
    s.expect(r, 200, action="set", node__value="v", node__createdIndex=s.idx(2))


@case("ttl")
def refresh_of_a_key_without_ttl(s: Side) -> None:
    """Refreshing a key that had no TTL gives it one and keeps its value."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "100", "prevExist": "true"})
    s.expect(r, 200, action="update", node__value="v", node__ttl=100)


@case("ttl")
def refresh_with_prev_value(s: Side) -> None:
    """refresh with prevValue is a compareAndSwap that keeps the value."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "50", "prevValue": "v"})
    s.expect(r, 200, action="compareAndSwap", node__value="v", node__ttl=50)
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "50", "prevValue": "w"})
    s.expect(r, 412, errorCode=101, cause="[w != v]")


@case("ttl")
def refresh_of_missing_key_is_404(s: Side) -> None:
    """refresh of a missing key is 404/100 with or without prevExist."""
    s.keys("PUT", "present", form={"value": "1"})
    s.expect(s.keys("PUT", "nope", {"refresh": "true", "ttl": "5"}), 404, errorCode=100)
    q = {"refresh": "true", "ttl": "5", "prevExist": "true"}
    s.expect(s.keys("PUT", "nope", q), 404, errorCode=100, cause=s.key("nope"))


@case("ttl")
def refresh_errors(s: Side) -> None:
    """refresh with a value is 400/211; without a ttl (or ttl=) 400/212."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "5"}, form={"value": "x"})
    s.expect(r, 400, errorCode=211, message="Value provided on refresh", index=0)
    s.expect(r, 400, cause="A value was provided on a refresh")
    r = s.keys("PUT", "k", {"refresh": "true", "prevExist": "true"})
    s.expect(r, 400, errorCode=212, message="A TTL must be provided on refresh")
    s.expect(r, 400, cause="No TTL value set", headers={"X-Etcd-Index": "0"})
    s.expect(s.keys("PUT", "k", {"refresh": "true", "ttl": ""}), 400, errorCode=212)
    r = s.keys("PUT", "k", {"refresh": "true", "ttl": "5"}, form={"value": ""})
    s.expect(r, 200, action="set", node__value="v")


@case("ttl")
def ttl_zero(s: Side) -> None:
    """ttl=0 gives an expiration of now and no ttl field."""
    body = s.expect(s.keys("PUT", "k", {"ttl": "0"}, form={"value": "v"}), 201)
    s.check("expiration" in body["node"] and "ttl" not in body["node"], "ttl=0 shape")


@case("ttl")
def ttl_on_dir(s: Side) -> None:
    """A dir takes a TTL; its children have none of their own."""
    s.expect(s.keys("PUT", "d", {"dir": "true", "ttl": "100"}), 201, node__ttl=100)
    s.keys("PUT", "d/child", form={"value": "c"})
    s.keys("GET", "d", {"recursive": "true"})


@case("ttl")
def key_expiry_is_an_expire_event(s: Side) -> None:
    """A ttl=1 key expires: watchers get an expire event (also from history)."""
    s.keys("PUT", "k", {"ttl": "1"}, form={"value": "v"})
    watch = s.watch("k", {"waitIndex": str(s.idx(2))})
    r = watch.event(EXPIRY_WAIT)
    body = s.expect(r, 200, action="expire", node__key=s.key("k"))
    s.check(body["node"].get("modifiedIndex") == s.idx(2), "expire index")
    s.check("value" not in body["node"], "expired node has a value")
    s.check(body["prevNode"].get("value") == "v", "prevNode lacks the value")
    s.expect(s.keys("GET", "k"), 404, errorCode=100, index=s.idx(2))
    r = s.watch("k", {"waitIndex": str(s.idx(2))}).event()
    s.expect(r, 200, action="expire", headers={"X-Etcd-Index": str(s.idx(2))})


@case("ttl")
def dir_expiry_reaches_watchers_inside(s: Side) -> None:
    """A ttl=1 dir expires with its subtree; watchers on keys inside get its event."""
    s.keys("PUT", "d", {"dir": "true", "ttl": "1"})
    s.keys("PUT", "d/a/b", form={"value": "1"})
    inside = s.watch("d/a/b")
    on_dir = s.watch("d")
    recursive = s.watch("", {"recursive": "true"})
    s.check(inside.pending(), "a watch answered before any event")
    deadline = time.monotonic() + EXPIRY_WAIT
    for watch in (inside, on_dir, recursive):
        r = watch.event(max(0.1, deadline - time.monotonic()))
        s.expect(r, 200, action="expire", node__key=s.key("d"), node__dir=True)
    s.expect(s.keys("GET", "d/a/b"), 404, errorCode=100, cause=s.key("d"))
