"""Cases: GET and HEAD of keys and directories, listings, hidden keys, the root."""

from __future__ import annotations

import json

from tests.minietcd.conformance.runner import Side, case

KEYS_ERROR_HEADERS = {"X-Raft-Index": None, "X-Raft-Term": None}


def _json(side: Side, body: bytes) -> dict[str, object]:
    parsed = json.loads(body)
    side.check(isinstance(parsed, dict), f"body is not a JSON object: {body!r}")
    assert isinstance(parsed, dict)
    return parsed


@case("read")
def get_missing_key(s: Side) -> None:
    """GET of a missing key is 404/100 "Key not found", cause the key, no X-Raft-*."""
    s.keys("PUT", "present", form={"value": "x"})
    r = s.keys("GET", "absent")
    s.expect(r, 404, errorCode=100, message="Key not found", cause=s.key("absent"))
    s.expect(r, 404, headers=KEYS_ERROR_HEADERS, index=s.idx(1))
    s.check(r.header("X-Etcd-Index") == str(s.idx(1)), "X-Etcd-Index != error index")
    s.check(
        r.header("X-Etcd-Cluster-Id") is not None, "no X-Etcd-Cluster-Id on an error"
    )


@case("read")
def get_missing_nested_names_first_missing(s: Side) -> None:
    """A missing nested key's 404 cause is its first missing path component."""
    s.keys("PUT", "dir/x", form={"value": "1"})
    r = s.keys("GET", "dir/nodir/a/b")
    s.expect(r, 404, errorCode=100, cause=s.key("dir/nodir"))


@case("read")
def get_file(s: Side) -> None:
    """GET of a file returns action get, its node and all four etcd headers."""
    s.keys("PUT", "k", form={"value": "hello"})
    r = s.keys("GET", "k")
    s.expect(r, 200, action="get", node__key=s.key("k"), node__value="hello")
    for name in ("X-Etcd-Index", "X-Raft-Index", "X-Raft-Term", "X-Etcd-Cluster-Id"):
        s.check(r.header(name) is not None, f"GET lacks {name}")
    s.check(r.header("Content-Type") == "application/json", "content type")
    s.check(r.body.endswith(b"}\n"), "JSON body does not end with a newline")


@case("read")
def get_empty_value_keeps_value_field(s: Side) -> None:
    """A file whose value is "" still has a value field; a dir has none."""
    s.keys("PUT", "empty", form={"value": ""})
    r = s.keys("GET", "empty")
    body = s.expect(r, 200, node__value="")
    s.check("value" in body["node"], "value field omitted for an empty file")
    s.keys("PUT", "d", query={"dir": "true"})
    body = s.expect(s.keys("GET", "d"), 200, node__dir=True)
    s.check("value" not in body["node"], "a dir has a value field")


@case("read")
def get_through_a_file(s: Side) -> None:
    """Walking through a file is 400/104 "Not a directory" naming the file."""
    s.keys("PUT", "f", form={"value": "1"})
    r = s.keys("GET", "f/child")
    s.expect(r, 400, errorCode=104, message="Not a directory", cause=s.key("f"))


@case("read")
def get_dir_lists_one_level(s: Side) -> None:
    """A dir GET lists its children one level deep; child dirs come without nodes."""
    s.keys("PUT", "d/a", form={"value": "1"})
    s.keys("PUT", "d/b", form={"value": "2"})
    s.keys("PUT", "d/sub/c", form={"value": "3"})
    body = s.expect(s.keys("GET", "d"), 200, action="get", node__dir=True)
    subs = [n for n in body["node"]["nodes"] if n.get("dir")]
    s.check(len(subs) == 1 and "nodes" not in subs[0], "child dir listed with nodes")


@case("read")
def get_dir_recursive(s: Side) -> None:
    """recursive=true lists the whole subtree."""
    s.keys("PUT", "d/a", form={"value": "1"})
    s.keys("PUT", "d/sub/c", form={"value": "3"})
    s.keys("PUT", "d/sub/deeper/e", form={"value": "5"})
    s.keys("PUT", "d/emptydir", query={"dir": "true"})
    s.expect(s.keys("GET", "d", {"recursive": "true"}), 200, action="get")


@case("read")
def get_dir_sorted(s: Side) -> None:
    """sorted=true orders children by key at every level (compared in order)."""
    for name in ("m", "b", "z", "a", "sub/y", "sub/c", "sub/q", "B", "_h"):
        s.keys("PUT", f"d/{name}", form={"value": name})
    s.keys("GET", "d", {"sorted": "true"})
    s.keys("GET", "d", {"sorted": "true", "recursive": "true"})


@case("read")
def get_empty_dir_has_no_nodes(s: Side) -> None:
    """An empty dir has no nodes field, also with recursive=true."""
    s.keys("PUT", "d", query={"dir": "true"})
    body = s.expect(s.keys("GET", "d"), 200, node__dir=True)
    s.check("nodes" not in body["node"], "an empty dir has a nodes field")
    s.keys("GET", "d", {"recursive": "true", "sorted": "true"})


@case("read")
def get_recursive_on_file(s: Side) -> None:
    """recursive=true on a file is a plain get."""
    s.keys("PUT", "f", form={"value": "v"})
    s.expect(s.keys("GET", "f", {"recursive": "true"}), 200, node__value="v")


@case("read")
def head_file(s: Side) -> None:
    """HEAD answers like GET (status and etcd headers) with no body."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("HEAD", "k")
    s.expect(r, 200)
    s.check(r.body == b"", "HEAD has a body")
    s.check(r.header("X-Raft-Index") is not None, "HEAD lacks X-Raft-Index")


@case("read")
def head_missing(s: Side) -> None:
    """HEAD of a missing key is 404 with the error headers and no body."""
    r = s.keys("HEAD", "nope")
    s.expect(r, 404, headers=KEYS_ERROR_HEADERS)
    s.check(r.body == b"", "HEAD has a body")


@case("read")
def quorum_get(s: Side) -> None:
    """quorum=true reads give the same answer as plain reads."""
    s.keys("PUT", "k", form={"value": "v"})
    s.expect(s.keys("GET", "k", {"quorum": "true"}), 200, node__value="v")
    s.expect(s.keys("GET", "nope", {"quorum": "true"}), 404, errorCode=100)


@case("read")
def trailing_slash_is_the_same_key(s: Side) -> None:
    """/v2/keys/<k>/ names the same key as /v2/keys/<k>."""
    s.keys("PUT", "w/", form={"value": "v"})
    s.expect(s.keys("GET", "w"), 200, node__key=s.key("w"))
    s.expect(s.keys("GET", "w/"), 200, node__key=s.key("w"))


@case("read")
def root_listing_shape(s: Side) -> None:
    """The root is a dir without key or indices and lists visible top-level keys."""
    s.keys("PUT", "x", form={"value": "1"})
    for target in ("/v2/keys", "/v2/keys/"):
        # The root holds every other case's keys too: asserted per side, not compared.
        r = s.request("GET", target, compare=False)
        body = s.expect(r, 200, action="get", node__dir=True)
        node = body["node"]
        for absent in ("key", "modifiedIndex", "createdIndex", "value"):
            s.check(absent not in node, f"the root node has {absent}")
        keys = [child["key"] for child in node.get("nodes", [])]
        s.check(s.key() in keys, f"{s.key()} not listed in the root")
        s.check(r.header("X-Raft-Index") is not None, "root GET lacks X-Raft-Index")


@case("read")
def hidden_keys_are_not_listed(s: Side) -> None:
    """Names starting with _ are left out of listings but readable by their key."""
    s.keys("PUT", "d/visible", form={"value": "1"})
    s.keys("PUT", "d/_hidden", form={"value": "2"})
    s.keys("PUT", "d/_hdir/inner", form={"value": "3"})
    s.keys("PUT", "d/sub/_deep", form={"value": "4"})
    s.keys("GET", "d")
    s.keys("GET", "d", {"recursive": "true"})
    s.expect(s.keys("GET", "d/_hidden"), 200, node__value="2")
    s.expect(s.keys("GET", "d/_hdir"), 200, node__dir=True)
    s.expect(s.keys("GET", "d/_hdir/inner"), 200, node__value="3")


@case("read")
def hidden_dir_only_child(s: Side) -> None:
    """A dir whose only child is hidden lists as an empty dir (no nodes)."""
    s.keys("PUT", "d/_only", form={"value": "1"})
    body = s.expect(s.keys("GET", "d"), 200, node__dir=True)
    s.check("nodes" not in body["node"], "hidden child made a nodes field")
