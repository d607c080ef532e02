"""Cases: PUT (set, create, update, CAS), POST (in-order keys), DELETE and CAD."""

from __future__ import annotations

from tests.minietcd.conformance.runner import Side, case

NO_RAFT = {"X-Raft-Index": None, "X-Raft-Term": None}


# -- set -----------------------------------------------------------------------------


@case("write")
def set_new_key_is_201(s: Side) -> None:
    """PUT of a new key is 201 action set, at the next index, with X-Raft-* headers."""
    r = s.keys("PUT", "k", form={"value": "v"})
    s.expect(r, 201, action="set", node__value="v", node__modifiedIndex=s.idx(1))
    s.expect(
        r, 201, node__createdIndex=s.idx(1), headers={"X-Etcd-Index": str(s.idx(1))}
    )
    s.check(r.header("X-Raft-Term") is not None, "write lacks X-Raft-Term")


@case("write")
def set_existing_key_is_200_with_prev_node(s: Side) -> None:
    """PUT over a file is 200, replaces it (new createdIndex) and returns prevNode."""
    s.keys("PUT", "k", form={"value": "one"})
    r = s.keys("PUT", "k", form={"value": "two"})
    s.expect(r, 200, action="set", prevNode__value="one", node__createdIndex=s.idx(2))


@case("write")
def set_creates_parent_dirs(s: Side) -> None:
    """Intermediate dirs created by a write get that write's index."""
    s.keys("PUT", "a/b/c/d", form={"value": "deep"})
    s.expect(s.keys("GET", "a/b"), 200, node__dir=True, node__createdIndex=s.idx(1))
    s.keys("GET", "", {"recursive": "true"})


@case("write")
def set_without_value_is_empty_string(s: Side) -> None:
    """PUT with no value at all stores the empty string."""
    s.expect(s.keys("PUT", "k"), 201, node__value="")
    s.expect(s.keys("GET", "k"), 200, node__value="")


@case("write")
def set_dir_true_makes_dir(s: Side) -> None:
    """dir=true creates a dir and ignores any value."""
    r = s.keys("PUT", "d", query={"dir": "true"}, form={"value": "ignored"})
    body = s.expect(r, 201, action="set", node__dir=True)
    s.check("value" not in body["node"], "dir has a value")


@case("write")
def set_onto_dir_is_403(s: Side) -> None:
    """PUT of a value, or of dir=true, onto an existing dir is 403/102 Not a file."""
    s.keys("PUT", "d/child", form={"value": "1"})
    s.expect(
        s.keys("PUT", "d", form={"value": "x"}), 403, errorCode=102, cause=s.key("d")
    )
    s.expect(s.keys("PUT", "d", query={"dir": "true"}), 403, errorCode=102)
    s.keys("PUT", "e", query={"dir": "true"})
    s.expect(
        s.keys("PUT", "e", form={"value": "x"}), 403, errorCode=102, headers=NO_RAFT
    )


@case("write")
def set_dir_over_file(s: Side) -> None:
    """dir=true over a file replaces it with a dir: 200 set, the file as prevNode."""
    s.keys("PUT", "f", form={"value": "v"})
    s.expect(
        s.keys("PUT", "f", query={"dir": "true"}), 200, action="set", node__dir=True
    )


@case("write")
def set_under_a_file_is_104(s: Side) -> None:
    """Writing below a file is 400/104 naming the file; nothing changes."""
    s.keys("PUT", "f", form={"value": "v"})
    r = s.keys("PUT", "f/x/y", form={"value": "1"})
    s.expect(r, 400, errorCode=104, message="Not a directory", cause=s.key("f"))
    s.expect(s.keys("POST", "f", form={"value": "1"}), 400, errorCode=104)
    s.expect(s.keys("GET", "f"), 200, node__value="v")


@case("write")
def root_is_read_only(s: Side) -> None:
    """PUT or DELETE of the root is 400/107 with cause "/"; POST to the root is not."""
    for target in ("/v2/keys", "/v2/keys/"):
        r = s.request("PUT", target, form={"value": "x"})
        s.expect(r, 400, errorCode=107, message="Root is read only", cause="/")
        r = s.request("DELETE", target, query={"recursive": "true"})
        s.expect(r, 400, errorCode=107, cause="/")
        s.expect(s.request("PUT", target, query={"dir": "true"}), 400, errorCode=107)
    s.keys("GET", "")


@case("write")
def no_value_on_success(s: Side) -> None:
    """noValueOnSuccess=true shrinks set/create/update/CAS answers, not deletes."""
    q = {"noValueOnSuccess": "true"}
    s.expect(s.keys("PUT", "k", q, form={"value": "1"}), 201, action="set")
    r = s.keys("PUT", "k", {**q, "prevExist": "true"}, form={"value": "2"})
    s.check(r.body == b'{"action":"update"}\n', f"update body {r.body!r}")
    s.keys("PUT", "c", {**q, "prevExist": "false"}, form={"value": "1"})
    s.keys("PUT", "k", {**q, "prevValue": "2"}, form={"value": "3"})
    s.keys("PUT", "k", {**q, "prevValue": "nope"}, form={"value": "4"})
    s.keys("POST", "queue", q, form={"value": "1"})
    s.expect(s.keys("DELETE", "k", q), 200, action="delete", prevNode__value="3")
    r = s.keys("DELETE", "c", {**q, "prevValue": "1"})
    s.expect(r, 200, action="compareAndDelete", prevNode__value="1")


@case("write")
def unicode_and_escaped_json(s: Side) -> None:
    """Keys and values keep UTF-8; <, > and & come back escaped as JSON does in Go."""
    value = "caf\u00e9 <b> & \u2603"
    r = s.keys("PUT", "%C3%A9t%C3%A9", form={"value": value})
    s.expect(r, 201, node__key=s.key("\u00e9t\u00e9"), node__value=value)
    r = s.keys("GET", "%C3%A9t%C3%A9")
    s.check(b"\\u003cb\\u003e \\u0026" in r.body, f"<>& not escaped: {r.body!r}")
    s.check("caf\u00e9".encode() in r.body, f"non-ASCII escaped: {r.body!r}")


@case("write")
def control_bytes_and_invalid_utf8(s: Side) -> None:
    """NUL, tab, U+2028 and invalid UTF-8 survive a write as Go's JSON writes them."""
    form = "value=a%00b%FF%FEc%E2%80%A8d%09e%0Af%7F"
    r = s.keys("PUT", "v", form=form)
    s.expect(r, 201, node__value="a\x00b\ufffd\ufffdc\u2028d\te\nf\x7f")
    raw = b'"a\\u0000b\\ufffd\\ufffdc\\u2028d\\te\\nf\x7f"'
    s.check(raw in r.body, f"escaping differs from Go's: {r.body!r}")
    r = s.keys("PUT", "k%FFz", form={"value": "1"})
    s.expect(r, 201, node__key=s.key("k\ufffdz"))
    s.keys("GET", "", {"recursive": "true"})


@case("write")
def percent_decoding_of_key_paths(s: Side) -> None:
    """The path is percent-decoded: %20, %3F, %2F (a real separator); + and & stay."""
    s.expect(s.keys("PUT", "a%20b", form={"value": "1"}), 201, node__key=s.key("a b"))
    s.expect(s.keys("PUT", "q%3Fx", form={"value": "2"}), 201, node__key=s.key("q?x"))
    s.expect(s.keys("PUT", "p%2Fq", form={"value": "3"}), 201, node__key=s.key("p/q"))
    s.expect(s.keys("GET", "p/q"), 200, node__value="3")
    s.expect(s.keys("PUT", "x+y&z", form={"value": "4"}), 201, node__key=s.key("x+y&z"))
    s.keys("GET", "", {"recursive": "true"})


@case("write")
def long_key(s: Side) -> None:
    """A key of 3000 characters works like any other."""
    name = "k" * 3000
    s.expect(s.keys("PUT", name, form={"value": "long"}), 201, node__key=s.key(name))
    s.expect(s.keys("GET", name), 200, node__value="long")


# -- create and update (prevExist) ---------------------------------------------------


@case("write")
def create_with_prev_exist_false(s: Side) -> None:
    """prevExist=false creates (201 create); a second one is 412/105 and no write."""
    r = s.keys("PUT", "k", {"prevExist": "false"}, form={"value": "1"})
    s.expect(r, 201, action="create")
    r = s.keys("PUT", "k", {"prevExist": "false"}, form={"value": "2"})
    s.expect(r, 412, errorCode=105, message="Key already exists", cause=s.key("k"))
    s.expect(r, 412, index=s.idx(1), headers=NO_RAFT)
    s.expect(s.keys("GET", "k"), 200, node__value="1")


@case("write")
def create_ignores_prev_value_and_index(s: Side) -> None:
    """With prevExist=false, prevValue and prevIndex are ignored: it is a create."""
    r = s.keys(
        "PUT", "k", {"prevExist": "false", "prevValue": "zz"}, form={"value": "1"}
    )
    s.expect(r, 201, action="create")
    q = {"prevExist": "false", "prevIndex": str(s.idx(1))}
    s.expect(s.keys("PUT", "k", q, form={"value": "2"}), 412, errorCode=105)


@case("write")
def create_dir_like_mkdir(s: Side) -> None:
    """dir=true&prevExist=false (etcdctl mkdir) creates a dir; again is 412/105."""
    q = {"dir": "true", "prevExist": "false"}
    s.expect(s.keys("PUT", "d", q), 201, action="create", node__dir=True)
    s.expect(s.keys("PUT", "d", q), 412, errorCode=105, cause=s.key("d"))


@case("write")
def update_with_prev_exist_true(s: Side) -> None:
    """prevExist=true updates: 200 update, createdIndex kept, prevNode returned."""
    s.keys("PUT", "k", form={"value": "1"})
    r = s.keys("PUT", "k", {"prevExist": "true"}, form={"value": "2"})
    s.expect(r, 200, action="update", node__createdIndex=s.idx(1), prevNode__value="1")
    s.expect(r, 200, node__modifiedIndex=s.idx(2))


@case("write")
def update_missing_key_is_404(s: Side) -> None:
    """prevExist=true on a missing key is 404/100."""
    s.keys("PUT", "present", form={"value": "1"})
    r = s.keys("PUT", "nope", {"prevExist": "true"}, form={"value": "1"})
    s.expect(r, 404, errorCode=100, cause=s.key("nope"))


@case("write")
def update_dir_changes_only_ttl(s: Side) -> None:
    """Updating a dir with a value is 403/102; with only a TTL it is allowed."""
    s.keys("PUT", "d", {"dir": "true"})
    r = s.keys("PUT", "d", {"prevExist": "true"}, form={"value": "x"})
    s.expect(r, 403, errorCode=102)
    r = s.keys("PUT", "d", {"prevExist": "true", "dir": "true", "ttl": "100"})
    s.expect(r, 200, action="update", node__dir=True, node__ttl=100)
    r = s.keys("PUT", "d", {"prevExist": "true", "dir": "true", "ttl": ""})
    s.expect(r, 200, action="update", prevNode__ttl=100)


@case("write")
def update_with_dir_flag_on_a_file(s: Side) -> None:
    """dir=true&prevExist=true on a file updates it to an empty file, not a dir."""
    s.keys("PUT", "f", form={"value": "1"})
    r = s.keys("PUT", "f", {"dir": "true", "prevExist": "true"})
    s.expect(r, 200, action="update", node__value="", prevNode__value="1")
    r = s.keys("PUT", "f", {"dir": "true", "prevValue": "1"})
    s.expect(r, 412, errorCode=101, cause="[1 != ]")
    s.expect(s.keys("GET", "f"), 200, node__value="")


# -- compareAndSwap ------------------------------------------------------------------


@case("write")
def cas_prev_value_success(s: Side) -> None:
    """prevValue matching is compareAndSwap: 200, createdIndex kept, prevNode."""
    s.keys("PUT", "k", form={"value": "one"})
    r = s.keys("PUT", "k", {"prevValue": "one"}, form={"value": "two"})
    s.expect(r, 200, action="compareAndSwap", node__value="two", prevNode__value="one")
    s.expect(r, 200, node__createdIndex=s.idx(1), node__modifiedIndex=s.idx(2))


@case("write")
def cas_prev_value_failure(s: Side) -> None:
    """A prevValue mismatch is 412/101 with cause [given != actual]; no write."""
    s.keys("PUT", "k", form={"value": "one"})
    r = s.keys("PUT", "k", {"prevValue": "two"}, form={"value": "three"})
    s.expect(r, 412, errorCode=101, message="Compare failed", cause="[two != one]")
    s.expect(r, 412, index=s.idx(1), headers=NO_RAFT)


@case("write")
def cas_prev_index_success(s: Side) -> None:
    """prevIndex equal to modifiedIndex swaps."""
    s.keys("PUT", "k", form={"value": "one"})
    q = {"prevIndex": str(s.idx(1))}
    s.expect(s.keys("PUT", "k", q, form={"value": "two"}), 200, action="compareAndSwap")


@case("write")
def cas_prev_index_failure(s: Side) -> None:
    """A prevIndex mismatch is 412/101 with cause [given != modifiedIndex]."""
    s.keys("PUT", "k", form={"value": "one"})
    s.keys("PUT", "k", form={"value": "two"})
    r = s.keys("PUT", "k", {"prevIndex": str(s.idx(1))}, form={"value": "3"})
    s.expect(r, 412, errorCode=101, cause=f"[{s.idx(1)} != {s.idx(2)}]")


@case("write")
def cas_both_conditions_fail(s: Side) -> None:
    """Both prevValue and prevIndex wrong: both pairs in the cause."""
    s.keys("PUT", "k", form={"value": "one"})
    q = {"prevValue": "x", "prevIndex": str(s.idx(5))}
    r = s.keys("PUT", "k", q, form={"value": "3"})
    s.expect(r, 412, errorCode=101, cause=f"[x != one] [{s.idx(5)} != {s.idx(1)}]")
    q = {"prevValue": "one", "prevIndex": str(s.idx(5))}
    r = s.keys("PUT", "k", q, form={"value": "3"})
    s.expect(r, 412, errorCode=101, cause=f"[{s.idx(5)} != {s.idx(1)}]")
    q = {"prevValue": "x", "prevIndex": str(s.idx(1))}
    s.expect(s.keys("PUT", "k", q, form={"value": "3"}), 412, cause="[x != one]")
    q = {"prevValue": "one", "prevIndex": str(s.idx(1))}
    s.expect(s.keys("PUT", "k", q, form={"value": "3"}), 200, action="compareAndSwap")


@case("write")
def cas_on_missing_and_on_dir(s: Side) -> None:
    """CAS on a missing key is 404/100, on a dir 403/102."""
    s.expect(s.keys("PUT", "nope", {"prevValue": "a"}, form={"value": "b"}), 404)
    s.keys("PUT", "d", {"dir": "true"})
    r = s.keys("PUT", "d", {"prevValue": "a"}, form={"value": "b"})
    s.expect(r, 403, errorCode=102, cause=s.key("d"))


@case("write")
def cas_with_prev_exist_true(s: Side) -> None:
    """prevExist=true plus prevValue is a compareAndSwap, not an update."""
    s.keys("PUT", "k", form={"value": "1"})
    r = s.keys("PUT", "k", {"prevExist": "true", "prevValue": "1"}, form={"value": "2"})
    s.expect(r, 200, action="compareAndSwap")
    r = s.keys("PUT", "k", {"prevExist": "true", "prevValue": "1"}, form={"value": "3"})
    s.expect(r, 412, errorCode=101, cause="[1 != 2]")


@case("write")
def prev_index_zero_is_a_plain_set(s: Side) -> None:
    """prevIndex=0 means no prevIndex: the PUT is a set."""
    s.keys("PUT", "k", form={"value": "1"})
    r = s.keys("PUT", "k", {"prevIndex": "0"}, form={"value": "2"})
    s.expect(r, 200, action="set")


@case("write")
def empty_prev_value_is_201(s: Side) -> None:
    """prevValue= (empty) is 400/201 "PrevValue is Required in POST form"."""
    s.keys("PUT", "k", form={"value": "1"})
    r = s.keys("PUT", "k", {"prevValue": ""}, form={"value": "2"})
    s.expect(r, 400, errorCode=201, message="PrevValue is Required in POST form")
    s.expect(r, 400, cause='"prevValue" cannot be empty', index=0)
    s.expect(r, 400, headers={"X-Etcd-Index": "0", **NO_RAFT})


# -- POST ----------------------------------------------------------------------------


@case("write")
def post_creates_in_order_keys(s: Side) -> None:
    """POST creates <dir>/<%020d index> (201 create); names increase with the index."""
    r1 = s.keys("POST", "queue", form={"value": "first"})
    s.expect(r1, 201, action="create", node__key=s.key(f"queue/{s.idx(1):020d}"))
    s.keys("PUT", "other", form={"value": "x"})
    r2 = s.keys("POST", "queue", form={"value": "second"})
    s.expect(r2, 201, node__key=s.key(f"queue/{s.idx(3):020d}"))
    s.keys("GET", "queue", {"sorted": "true"})


@case("write")
def post_in_order_dir_and_ttl(s: Side) -> None:
    """POST with dir=true makes an in-order dir; POST takes a ttl too."""
    s.expect(s.keys("POST", "q", {"dir": "true"}), 201, action="create", node__dir=True)
    s.expect(
        s.keys("POST", "q", {"ttl": "100"}, form={"value": "t"}), 201, node__ttl=100
    )
    s.keys("GET", "q", {"sorted": "true", "recursive": "true"})


@case("write")
def post_ignores_prev_conditions(s: Side) -> None:
    """POST is always a create: prevExist and prevValue are ignored."""
    r = s.keys("POST", "q", {"prevExist": "true"}, form={"value": "1"})
    s.expect(r, 201, action="create")
    r = s.keys("POST", "q", {"prevValue": "zz", "prevIndex": "7"}, form={"value": "2"})
    s.expect(r, 201, action="create", node__value="2")


@case("write")
def post_to_an_existing_file_is_104(s: Side) -> None:
    """POST under a file is 400/104 naming the file."""
    s.keys("PUT", "f", form={"value": "v"})
    s.expect(
        s.keys("POST", "f", form={"value": "x"}), 400, errorCode=104, cause=s.key("f")
    )


# -- DELETE --------------------------------------------------------------------------


@case("write")
def delete_file(s: Side) -> None:
    """DELETE of a file: action delete, node without value, prevNode with it."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("DELETE", "k")
    body = s.expect(r, 200, action="delete", node__modifiedIndex=s.idx(2))
    s.check("value" not in body["node"], "deleted node has a value")
    s.expect(r, 200, prevNode__value="v", node__createdIndex=s.idx(1))
    s.expect(s.keys("GET", "k"), 404, errorCode=100)


@case("write")
def delete_missing_is_404(s: Side) -> None:
    """DELETE of a missing key is 404/100 and writes nothing."""
    s.expect(s.keys("DELETE", "nope"), 404, errorCode=100, cause=s.key(), index=s.base)
    s.keys("PUT", "present", form={"value": "1"})
    r = s.keys("DELETE", "nope")
    s.expect(r, 404, errorCode=100, cause=s.key("nope"), index=s.idx(1))


@case("write")
def delete_dir_needs_dir_true(s: Side) -> None:
    """An empty dir needs dir=true to be deleted, else 403/102."""
    s.keys("PUT", "d", {"dir": "true"})
    s.expect(s.keys("DELETE", "d"), 403, errorCode=102, message="Not a file")
    r = s.keys("DELETE", "d", {"dir": "true"})
    s.expect(r, 200, action="delete", node__dir=True, prevNode__dir=True)


@case("write")
def delete_non_empty_dir_needs_recursive(s: Side) -> None:
    """A non-empty dir is 403/108 without recursive=true; recursive deletes the tree."""
    s.keys("PUT", "d/a/b", form={"value": "1"})
    s.keys("PUT", "d/c", form={"value": "2"})
    r = s.keys("DELETE", "d", {"dir": "true"})
    s.expect(r, 403, errorCode=108, message="Directory not empty", cause=s.key("d"))
    r = s.keys("DELETE", "d", {"recursive": "true"})
    body = s.expect(r, 200, action="delete", node__dir=True)
    s.check("nodes" not in body["prevNode"], "prevNode of a dir delete lists children")
    s.expect(s.keys("GET", "d/a/b"), 404, errorCode=100, cause=s.key("d"))


@case("write")
def delete_file_with_dir_flag(s: Side) -> None:
    """A file is deleted even with dir=true or recursive=true."""
    s.keys("PUT", "f", form={"value": "1"})
    s.keys("PUT", "g", form={"value": "1"})
    s.expect(s.keys("DELETE", "f", {"dir": "true"}), 200, action="delete")
    s.expect(s.keys("DELETE", "g", {"recursive": "true"}), 200, action="delete")


@case("write")
def cad_prev_value(s: Side) -> None:
    """DELETE with prevValue: mismatch 412/101, match compareAndDelete."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("DELETE", "k", {"prevValue": "w"})
    s.expect(r, 412, errorCode=101, cause="[w != v]")
    r = s.keys("DELETE", "k", {"prevValue": "v"})
    s.expect(r, 200, action="compareAndDelete", prevNode__value="v")


@case("write")
def cad_prev_index(s: Side) -> None:
    """DELETE with prevIndex: mismatch 412/101, match compareAndDelete."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("DELETE", "k", {"prevIndex": str(s.idx(9))})
    s.expect(r, 412, errorCode=101, cause=f"[{s.idx(9)} != {s.idx(1)}]")
    r = s.keys("DELETE", "k", {"prevIndex": str(s.idx(1))})
    s.expect(r, 200, action="compareAndDelete")


@case("write")
def cad_on_missing_and_on_dir(s: Side) -> None:
    """compareAndDelete of a missing key is 404/100, of a dir 403/102."""
    s.expect(s.keys("DELETE", "nope", {"prevValue": "x"}), 404, errorCode=100)
    s.keys("PUT", "d", {"dir": "true"})
    s.expect(s.keys("DELETE", "d", {"prevValue": "x"}), 403, errorCode=102)
    s.expect(s.keys("DELETE", "d", {"prevIndex": str(s.idx(1))}), 403, errorCode=102)


@case("write")
def delete_body_is_not_parsed(s: Side) -> None:
    """A form body on DELETE is ignored: prevValue there does not make it a CAD."""
    s.keys("PUT", "k", form={"value": "v"})
    r = s.keys("DELETE", "k", form={"prevValue": "other"})
    s.expect(r, 200, action="delete")
