"""Cases: wait=true: history hits, live watches, hidden keys, streams, 401."""

from __future__ import annotations

from tests.minietcd.conformance.runner import Side, case

NO_RAFT = {"X-Raft-Index": None, "X-Raft-Term": None}


@case("watch")
def watch_history_hit(s: Side) -> None:
    """waitIndex at or below the current index returns the first matching past event."""
    s.keys("PUT", "k", form={"value": "1"})
    s.keys("PUT", "k", form={"value": "2"})
    s.keys("PUT", "other", form={"value": "x"})
    r = s.watch("k", {"waitIndex": str(s.idx(1))}).event()
    s.expect(
        r, 200, action="set", node__value="1", headers={"X-Etcd-Index": str(s.idx(3))}
    )
    r = s.watch("k", {"waitIndex": str(s.idx(2))}).event()
    s.expect(r, 200, node__value="2", prevNode__value="1")
    s.check(r.header("X-Raft-Term") is not None, "a watch answer lacks X-Raft-Term")


@case("watch")
def watch_history_recursive(s: Side) -> None:
    """A recursive history watch on a dir returns the first event below it."""
    s.keys("PUT", "unrelated", form={"value": "x"})
    s.keys("PUT", "d/a/b", form={"value": "1"})
    r = s.watch("d", {"waitIndex": str(s.idx(1)), "recursive": "true"}).event()
    s.expect(r, 200, action="set", node__key=s.key("d/a/b"))


@case("watch")
def watch_history_skips_other_keys(s: Side) -> None:
    """A history scan skips other keys, and children for a non-recursive watch."""
    s.keys("PUT", "d/child", form={"value": "1"})
    s.keys("PUT", "e", form={"value": "2"})
    s.keys("PUT", "d", {"dir": "true", "prevExist": "true", "ttl": "100"})
    r = s.watch("d", {"waitIndex": str(s.idx(1))}).event()
    s.expect(r, 200, action="update", node__key=s.key("d"), node__dir=True)


@case("watch")
def watch_live_answered_by_put(s: Side) -> None:
    """A live watch sends its headers at once and its body on the next matching PUT."""
    s.keys("PUT", "k", form={"value": "1"})
    watch = s.watch("k")
    s.check(watch.headers_index() == str(s.idx(1)), "X-Etcd-Index is not the index now")
    s.check(watch.pending(), "the watch answered before any write")
    s.keys("PUT", "other", form={"value": "x"})
    s.check(watch.pending(), "the watch answered for another key")
    s.keys("PUT", "k", form={"value": "2"})
    r = watch.event()
    s.expect(r, 200, action="set", node__value="2", prevNode__value="1")
    s.check(r.body.endswith(b"}\n"), "an event does not end with a newline")


@case("watch")
def watch_missing_key_fires_on_create(s: Side) -> None:
    """Watching a key that does not exist yet fires when it is created."""
    watch = s.watch("later")
    s.keys("PUT", "later", {"prevExist": "false"}, form={"value": "now"})
    s.expect(watch.event(), 200, action="create", node__value="now")


@case("watch")
def watch_live_recursive(s: Side) -> None:
    """A recursive watch fires for a write anywhere below; a plain one does not."""
    s.keys("PUT", "d", {"dir": "true"})
    recursive = s.watch("d", {"recursive": "true"})
    plain = s.watch("d")
    s.keys("PUT", "d/x/y", form={"value": "1"})
    s.expect(recursive.event(), 200, action="set", node__key=s.key("d/x/y"))
    s.check(plain.pending(), "a non-recursive dir watch fired for a child")
    s.keys("DELETE", "d", {"recursive": "true"})
    s.expect(plain.event(), 200, action="delete", node__key=s.key("d"))


@case("watch")
def watch_fires_for_delete_of_parent(s: Side) -> None:
    """A watch on a key removed by a recursive dir delete gets the dir's event."""
    s.keys("PUT", "d/a/b", form={"value": "1"})
    watch = s.watch("d/a/b")
    s.keys("DELETE", "d", {"recursive": "true"})
    r = watch.event()
    s.expect(r, 200, action="delete", node__key=s.key("d"), node__dir=True)


@case("watch")
def watch_fires_for_cas_and_cad(s: Side) -> None:
    """compareAndSwap and compareAndDelete wake watchers with their own actions."""
    s.keys("PUT", "k", form={"value": "1"})
    watch = s.watch("k")
    s.keys("PUT", "k", {"prevValue": "nope"}, form={"value": "x"})
    s.check(watch.pending(), "a failed CAS fired a watch")
    s.keys("PUT", "k", {"prevValue": "1"}, form={"value": "2"})
    s.expect(watch.event(), 200, action="compareAndSwap")
    watch = s.watch("k")
    s.keys("DELETE", "k", {"prevValue": "2"})
    s.expect(watch.event(), 200, action="compareAndDelete")


@case("watch")
def watch_recursive_ignores_hidden_below(s: Side) -> None:
    """A recursive watch misses hidden keys below it; watching one directly works."""
    s.keys("PUT", "d", {"dir": "true"})
    recursive = s.watch("d", {"recursive": "true"})
    direct = s.watch("d/_secret")
    s.keys("PUT", "d/_secret", form={"value": "s"})
    s.expect(direct.event(), 200, action="set", node__key=s.key("d/_secret"))
    s.check(recursive.pending(), "a recursive watch saw a hidden key")
    s.keys("PUT", "d/_h/inner", form={"value": "i"})
    s.check(recursive.pending(), "a recursive watch saw a key in a hidden dir")
    s.keys("PUT", "d/visible", form={"value": "v"})
    s.expect(recursive.event(), 200, node__key=s.key("d/visible"))


@case("watch")
def watch_inside_hidden_dir(s: Side) -> None:
    """A recursive watch on a hidden dir itself sees writes inside it."""
    s.keys("PUT", "_h", {"dir": "true"})
    watch = s.watch("_h", {"recursive": "true"})
    s.keys("PUT", "_h/x", form={"value": "1"})
    s.expect(watch.event(), 200, node__key=s.key("_h/x"))


@case("watch")
def watch_future_wait_index(s: Side) -> None:
    """A waitIndex beyond the current index skips events before it."""
    s.keys("PUT", "k", form={"value": "0"})
    watch = s.watch("k", {"waitIndex": str(s.idx(3))})
    s.keys("PUT", "k", form={"value": "1"})
    s.check(watch.pending(), "fired before waitIndex")
    s.keys("PUT", "k", form={"value": "2"})
    s.expect(watch.event(), 200, node__value="2", node__modifiedIndex=s.idx(3))


@case("watch")
def watch_wait_index_zero_is_now(s: Side) -> None:
    """waitIndex=0 (what etcdctl sends) waits for the next event, like no waitIndex."""
    s.keys("PUT", "k", form={"value": "old"})
    watch = s.watch("k", {"waitIndex": "0", "recursive": "false"})
    s.check(watch.pending(), "waitIndex=0 returned history")
    s.keys("PUT", "k", form={"value": "new"})
    s.expect(watch.event(), 200, node__value="new")


@case("watch")
def watch_ignores_refresh(s: Side) -> None:
    """A refresh consumes an index but never fires a watcher (live or from history)."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "v"})
    watch = s.watch("k")
    q = {"refresh": "true", "ttl": "200", "prevExist": "true"}
    s.expect(s.keys("PUT", "k", q), 200, action="update")
    s.check(watch.pending(), "a refresh fired a watcher")
    s.keys("PUT", "k", form={"value": "w"})
    s.expect(watch.event(), 200, action="set", node__modifiedIndex=s.idx(3))
    r = s.watch("k", {"waitIndex": str(s.idx(2))}).event()
    s.expect(r, 200, action="set", node__modifiedIndex=s.idx(3))


@case("watch")
def watch_stream(s: Side) -> None:
    """stream=true sends every matching event as its own line and stays open."""
    watch = s.watch("k", {"stream": "true"})
    s.keys("PUT", "k", form={"value": "1"})
    s.expect(watch.event(), 200, node__value="1")
    s.keys("PUT", "k", form={"value": "2"})
    s.expect(watch.event(), 200, node__value="2")
    s.check(watch.pending(), "the stream ended")


@case("watch")
def watch_only_for_get(s: Side) -> None:
    """wait=true on PUT/POST/DELETE is 400/209 "wait" can only be used with GET."""
    for method in ("PUT", "POST", "DELETE"):
        r = s.keys(method, "k", {"wait": "true"}, form={"value": "1"})
        s.expect(
            r, 400, errorCode=209, cause='"wait" can only be used with GET requests'
        )
        s.expect(r, 400, index=0, headers={"X-Etcd-Index": "0", **NO_RAFT})


@case("watch")
def watch_bad_wait_index(s: Side) -> None:
    """waitIndex=-1 or x is 400/203; wait=maybe is 400/209."""
    for bad in ("-1", "x", "1.5"):
        r = s.keys("GET", "k", {"wait": "true", "waitIndex": bad})
        s.expect(r, 400, errorCode=203, cause='invalid value for "waitIndex"')
    r = s.keys("GET", "k", {"wait": "maybe"})
    s.expect(r, 400, errorCode=209, cause='invalid value for "wait"')


@case("watch")
def watch_index_outside_history_window_is_401(s: Side) -> None:
    """Only the last 1000 events are kept: an older waitIndex is HTTP 400, error 401."""
    s.keys("PUT", "k", form={"value": "first"})
    s.bulk_set("filler", 1004)
    current = s.idx(1005)
    r = s.keys("GET", "")
    s.expect(r, 200, headers={"X-Etcd-Index": str(current)})
    oldest = current - 999
    for rel in ("k", "unrelated/key"):
        r = s.keys("GET", rel, {"wait": "true", "waitIndex": str(oldest - 1)})
        s.expect(r, 400, errorCode=401, index=current, headers=NO_RAFT)
        s.expect(
            r,
            400,
            message="The event in requested index is outdated and cleared",
            cause=f"the requested history has been cleared [{oldest}/{oldest - 1}]",
        )
    r = s.watch("filler", {"waitIndex": str(oldest)}).event()
    s.expect(r, 200, action="set", node__modifiedIndex=oldest)


@case("watch")
def quirk_history_scan_ignores_hidden_filter(s: Side) -> None:
    """etcd-bug (optional): a recursive history scan returns events on hidden keys.

    Asserted per side, not compared: real etcd returns the hidden key's event, as the
    spec records; minietcd may do the same or skip it (then the visible event after it
    is the first match). The live-watch behaviour is compared in
    watch_recursive_ignores_hidden_below.
    """
    s.keys("PUT", "d/_hidden", form={"value": "h"})
    s.keys("PUT", "d/visible", form={"value": "v"})
    watch = s.watch("d", {"recursive": "true", "waitIndex": str(s.idx(1))})
    body = s.expect(watch.event(compare=False), 200, action="set")
    key = body["node"]["key"]
    if s.is_etcd:
        s.check(key == s.key("d/_hidden"), f"etcd no longer shows the quirk: {key}")
    else:
        s.check(key in (s.key("d/_hidden"), s.key("d/visible")), f"got {key}")


@case("watch")
def quirk_history_dir_delete_matches_by_string_prefix(s: Side) -> None:
    """etcd-bug (optional): in history, deleting /w matches a watch on /w2x/k.

    Asserted per side, not compared: real etcd returns the delete of the sibling dir
    whose name is a string prefix; minietcd may do the same or (correctly) keep
    waiting for an event on the watched key.
    """
    s.keys("PUT", "w2x/k", form={"value": "1"})
    s.keys("PUT", "w/k", form={"value": "2"})
    s.keys("DELETE", "w", {"recursive": "true"})
    watch = s.watch("w2x/k", {"waitIndex": str(s.idx(2))})
    if s.is_etcd:
        body = s.expect(watch.event(compare=False), 200, action="delete")
        s.check(body["node"]["key"] == s.key("w"), "etcd no longer shows the quirk")
    elif not watch.pending(0.3):
        body = s.expect(watch.event(compare=False), 200, action="delete")
        s.check(body["node"]["key"] == s.key("w"), f"unexpected event {body}")
