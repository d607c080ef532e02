"""Cases: non-ASCII bytes sent raw in the request target, as node-etcd sends keys.

A target is sent as UTF-8, and a surrogate escape as the one byte it stands for
(see L{tests.minietcd.conformance.http.Connection.send}): C{"café"} goes out as
C{caf\\xc3\\xa9} (what node-etcd sends for PUT and POST), C{"caf\\udce9"} as
C{caf\\xe9} (Latin-1, what it sends for GET and DELETE). etcd takes those bytes as the
key, the same key as their percent-encoded form; a key that is not UTF-8 shows as
U+FFFD in JSON.
"""

from __future__ import annotations

from tests.minietcd.conformance.runner import Side, case

LATIN1 = "caf\udce9"
UTF8 = "café"
#: How etcd's JSON shows the Latin-1 key (its byte 0xE9 is not UTF-8).
LATIN1_SHOWN = "caf\ufffd"
NO_CORS = {"Access-Control-Allow-Origin": None}
PLAIN = "text/plain; charset=utf-8"


@case("write")
def raw_utf8_key_put_get_delete(s: Side) -> None:
    """A raw UTF-8 key is the same key as its %-encoded form, for PUT, GET, DELETE."""
    r = s.keys("PUT", UTF8, form={"value": "1"})
    s.expect(r, 201, action="set", node__key=s.key(UTF8))
    s.expect(s.keys("GET", UTF8), 200, node__value="1")
    s.expect(s.keys("GET", "caf%C3%A9"), 200, node__key=s.key(UTF8))
    s.expect(s.keys("GET", "caf%E9"), 404, errorCode=100)
    s.expect(s.keys("PUT", UTF8, {"prevValue": "1"}, form={"value": "2"}), 200)
    s.expect(s.keys("DELETE", UTF8), 200, action="delete", prevNode__value="2")
    s.expect(s.keys("GET", "caf%C3%A9"), 404, errorCode=100)


@case("write")
def raw_latin1_key_put_get_delete(s: Side) -> None:
    """A raw Latin-1 key is kept byte for byte; its JSON shows U+FFFD for the byte."""
    r = s.keys("PUT", LATIN1, form={"value": "lat"})
    s.expect(r, 201, action="set", node__key=s.key(LATIN1_SHOWN))
    s.expect(s.keys("GET", "caf%E9"), 200, node__value="lat")
    s.expect(s.keys("GET", UTF8), 404, errorCode=100, cause=s.key(UTF8))
    s.expect(s.keys("GET", LATIN1), 200, node__value="lat")
    s.expect(s.keys("DELETE", LATIN1), 200, action="delete")
    r = s.keys("GET", LATIN1)
    s.expect(r, 404, errorCode=100, cause=s.key(LATIN1_SHOWN))


@case("write")
def raw_bytes_in_query_and_post(s: Side) -> None:
    """Raw bytes in the query are a raw value; POST under a raw dir names a child."""
    r = s.keys("PUT", "k", f"value={UTF8}")
    s.expect(r, 201, node__value=UTF8)
    r = s.keys("PUT", "l", f"value={LATIN1}")
    s.expect(r, 201, node__value=LATIN1_SHOWN)
    r = s.keys("POST", f"{UTF8}/queue", form={"value": "job"})
    s.expect(r, 201, action="create", node__value="job")


@case("read")
def raw_keys_in_listings(s: Side) -> None:
    """Listings show raw keys by their bytes, sorted as bytes with sorted=true."""
    for rel in (f"d/{UTF8}", f"d/{LATIN1}", "d/中文", "d/a", "d/sub/\udcff"):
        s.keys("PUT", rel, form={"value": "v"})
    s.expect(s.keys("GET", "d"), 200, node__dir=True)
    s.expect(s.keys("GET", "d", {"recursive": "true"}), 200, node__dir=True)
    # Byte order: a < é (C3 A9) < U+E000 (EE 80 80) < FF, as JSON also sorts them.
    for rel in ("e/a", f"e/{UTF8}", "e/\ue000", "e/\udcff"):
        s.keys("PUT", rel, form={"value": "v"})
    s.expect(s.keys("GET", "e", {"sorted": "true"}), 200, node__dir=True)


@case("watch")
def watch_raw_key_answered_by_write(s: Side) -> None:
    """A watch on a raw key fires for a write of that key raw or %-encoded."""
    watch = s.watch(LATIN1)
    s.keys("PUT", UTF8, form={"value": "other"})
    s.check(watch.pending(), "a watch on the Latin-1 key fired for the UTF-8 one")
    s.keys("PUT", LATIN1, form={"value": "1"})
    r = watch.event()
    s.expect(r, 200, action="set", node__key=s.key(LATIN1_SHOWN), node__value="1")
    watch = s.watch(UTF8)
    s.keys("PUT", "caf%C3%A9", form={"value": "2"})
    s.expect(watch.event(), 200, node__key=s.key(UTF8), prevNode__value="other")


@case("watch")
def recursive_watch_sees_raw_child(s: Side) -> None:
    """A recursive watch on a raw dir fires for a raw child's create and delete."""
    s.keys("PUT", UTF8, {"dir": "true"})
    watch = s.watch(UTF8, {"recursive": "true"})
    s.keys("PUT", f"{UTF8}/{LATIN1}", {"prevExist": "false"}, form={"value": "x"})
    r = watch.event()
    s.expect(r, 200, action="create", node__key=s.key(f"{UTF8}/{LATIN1_SHOWN}"))
    r = s.watch(UTF8, {"recursive": "true", "waitIndex": str(s.idx(2))}).event()
    s.expect(r, 200, action="create")


@case("http")
def control_bytes_in_target_are_400(s: Side) -> None:
    """A control byte or DEL anywhere in the target is Go's bare 400, not handled."""
    for rel in ("a\x01", "a\x7f", "a\tb", f"{UTF8}\x7f", "a?value=\x00", "a?x=\x1b"):
        r = s.request("PUT", s.path(rel), form={"value": "1"})
        s.expect(r, 400, headers={"Content-Type": PLAIN, **NO_CORS})
        s.check(r.body == b"400 Bad Request", f"{rel!r}: body {r.body!r}")
    s.expect(s.keys("GET", "a"), 404, errorCode=100)


@case("http")
def raw_bytes_in_redirect(s: Side) -> None:
    """A redirect escapes raw bytes of the path as %XX, and of the query as %xx."""
    r = s.request("GET", s.path() + f"//{UTF8}?x={LATIN1}")
    location = s.path("caf%C3%A9") + "?x=caf%e9"
    s.expect(r, 301, headers={"Location": location})
    r = s.request("PUT", s.path() + f"/x/../{LATIN1}", form={"value": "1"})
    s.expect(r, 301, headers={"Location": s.path("caf%E9")})
