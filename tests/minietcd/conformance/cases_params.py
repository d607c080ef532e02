"""Cases: query and form parsing, booleans, integers, validation order, the index."""

from __future__ import annotations

from tests.minietcd.conformance.runner import Side, case

NO_RAFT = {"X-Raft-Index": None, "X-Raft-Term": None}
PARSE_ERROR_HEADERS = {"X-Etcd-Index": "0", **NO_RAFT}


@case("params")
def form_body_wins_over_query(s: Side) -> None:
    """For PUT and POST the form body's value beats the query's."""
    r = s.keys("PUT", "k", {"value": "query"}, form={"value": "body"})
    s.expect(r, 201, node__value="body")
    r = s.keys("POST", "q", {"value": "query"}, form={"value": "body"})
    s.expect(r, 201, node__value="body")
    s.expect(s.keys("PUT", "j", {"value": "query"}), 201, node__value="query")


@case("params")
def first_value_wins(s: Side) -> None:
    """A repeated parameter takes its first value, in the query and in the body."""
    s.expect(s.keys("PUT", "k", "value=one&value=two"), 201, node__value="one")
    s.expect(s.keys("PUT", "j", form="value=one&value=two"), 201, node__value="one")
    r = s.keys("PUT", "i", "ttl=100&ttl=x", form={"value": "v"})
    s.expect(r, 201, node__ttl=100)


@case("params")
def non_form_bodies_are_ignored(s: Side) -> None:
    """A body without the form content type (none, text/plain, JSON) is ignored."""
    s.expect(s.keys("PUT", "a", body="value=x"), 201, node__value="")
    r = s.keys("PUT", "b", body="value=x", content_type="text/plain")
    s.expect(r, 201, node__value="")
    r = s.keys("PUT", "c", body='{"value":"x"}', content_type="application/json")
    s.expect(r, 201, node__value="")
    r = s.keys("PUT", "d", {"value": "q"}, body="value=x", content_type="text/plain")
    s.expect(r, 201, node__value="q")
    ctype = "application/x-www-form-urlencoded; charset=utf-8"
    r = s.keys("PUT", "e", body="value=x", content_type=ctype)
    s.expect(r, 201, node__value="x")


@case("params")
def form_decoding(s: Side) -> None:
    """Form and query values are URL-decoded: + is a space, %XX a byte."""
    s.expect(s.keys("PUT", "a", "value=a+b%20c%2B"), 201, node__value="a b c+")
    r = s.keys("PUT", "b", form="value=%C3%A9+%26+%3D")
    s.expect(r, 201, node__value="\u00e9 & =")
    s.expect(s.keys("PUT", "c", form="other=1&value"), 201, node__value="")
    s.expect(s.keys("PUT", "d", "=x&&value=1&"), 201, node__value="1")


@case("params")
def bad_escape_is_210(s: Side) -> None:
    """A bad %-escape in the query or the body is 400/210 with Go's error text."""
    r = s.keys("PUT", "k", "value=%zz")
    s.expect(r, 400, errorCode=210, message="Invalid POST form", index=0)
    s.expect(r, 400, cause='invalid URL escape "%zz"', headers=PARSE_ERROR_HEADERS)
    r = s.keys("PUT", "k", form="value=a%")
    s.expect(r, 400, errorCode=210, cause='invalid URL escape "%"')
    r = s.keys("GET", "k", "recursive=%2")
    s.expect(r, 400, errorCode=210, cause='invalid URL escape "%2"')
    s.keys("GET", "k")


@case("params")
def semicolon_in_query_is_210(s: Side) -> None:
    """A ; in the query or form (Go 1.17+ ParseQuery) is 400/210."""
    r = s.keys("PUT", "k", "value=1;x=2")
    s.expect(r, 400, errorCode=210, cause="invalid semicolon separator in query")
    s.expect(s.keys("PUT", "k", form="value=1;x=2"), 400, errorCode=210)


@case("params")
def booleans_accepted(s: Side) -> None:
    """1 t T TRUE true True are true and 0 f F FALSE false False are false."""
    s.keys("PUT", "d/x/y", form={"value": "1"})
    for word in ("1", "t", "T", "TRUE", "true", "True"):
        r = s.keys("GET", "d", {"recursive": word, "sorted": word})
        s.expect(r, 200, action="get")
    for word in ("0", "f", "F", "FALSE", "false", "False"):
        s.expect(s.keys("GET", "d", {"recursive": word, "quorum": word}), 200)
    s.expect(s.keys("PUT", "e", {"dir": "T"}), 201, node__dir=True)
    s.expect(s.keys("PUT", "e", {"prevExist": "F", "dir": "1"}), 412, errorCode=105)


@case("params")
def booleans_rejected(s: Side) -> None:
    """Other words (yes, on, 2, empty) are 400/209 naming the field."""
    for name in ("recursive", "sorted", "wait", "dir", "quorum", "stream"):
        for word in ("yes", "2"):
            r = s.keys("GET", "k", {name: word})
            s.expect(r, 400, errorCode=209, message="Invalid field", index=0)
            s.expect(r, 400, cause=f'invalid value for "{name}"', headers=NO_RAFT)
    s.expect(s.keys("GET", "k", {"recursive": ""}), 400, errorCode=209)
    r = s.keys("PUT", "k", {"prevExist": "yes"})
    s.expect(r, 400, errorCode=209, cause="invalid value for prevExist")
    r = s.keys("PUT", "k", {"refresh": "on", "ttl": "5"})
    s.expect(r, 400, errorCode=209, cause="invalid value for refresh")
    r = s.keys("PUT", "k", {"noValueOnSuccess": "y"}, form={"value": "1"})
    s.expect(r, 400, errorCode=209, cause='invalid value for "noValueOnSuccess"')


@case("params")
def integers_rejected(s: Side) -> None:
    """ttl, prevIndex and waitIndex must be unsigned decimals: 202 / 203 / 203."""
    for bad in ("abc", "-1", "1.5", " ", "0x10"):
        r = s.keys("PUT", "k", {"ttl": bad}, form={"value": "v"})
        s.expect(r, 400, errorCode=202, cause='invalid value for "ttl"', index=0)
        s.expect(r, 400, message="The given TTL in POST form is not a number")
        r = s.keys("PUT", "k", {"prevIndex": bad}, form={"value": "v"})
        s.expect(r, 400, errorCode=203, cause='invalid value for "prevIndex"')
        r = s.keys("GET", "k", {"waitIndex": bad})
        s.expect(r, 400, errorCode=203, cause='invalid value for "waitIndex"')
    s.expect(s.keys("PUT", "k", {"prevIndex": ""}, form={"value": "v"}), 400)
    s.keys("GET", "k")


@case("params")
def validation_order(s: Side) -> None:
    """With several bad fields, the first check in etcd's order decides the error."""
    order = [
        ("value=%zz&prevIndex=x", 210),
        ("prevIndex=x&waitIndex=x&recursive=x", 203),
        ("waitIndex=x&recursive=x", 203),
        ("recursive=x&sorted=x&ttl=x", 209),
        ("stream=x&prevValue=&ttl=x", 209),
        ("prevValue=&ttl=x&prevExist=x", 201),
        ("noValueOnSuccess=x&ttl=x", 209),
        ("ttl=x&prevExist=x", 202),
        ("prevExist=x&refresh=x", 209),
        ("refresh=x&ttl=5", 209),
        ("refresh=true&value=v", 211),
        ("refresh=true&ttl=", 212),
    ]
    for query, code in order:
        s.expect(s.keys("PUT", "k", query), 400, errorCode=code)
    r = s.keys("GET", "k", "sorted=x&wait=x")
    s.expect(r, 400, cause='invalid value for "sorted"')
    r = s.keys("GET", "k", "wait=x&dir=x")
    s.expect(r, 400, cause='invalid value for "wait"')
    r = s.keys("GET", "k", "dir=x&quorum=x")
    s.expect(r, 400, cause='invalid value for "dir"')
    r = s.keys("GET", "k", "quorum=x&stream=x")
    s.expect(r, 400, cause='invalid value for "quorum"')


@case("params")
def empty_ttl_and_unknown_params(s: Side) -> None:
    """ttl= means no TTL; unknown parameters are ignored."""
    r = s.keys("PUT", "k", {"ttl": "", "colour": "blue", "x": ""}, form={"value": "v"})
    body = s.expect(r, 201, node__value="v")
    s.check("ttl" not in body["node"], "ttl= gave a TTL")
    s.expect(s.keys("GET", "k", {"whatever": "1"}), 200, node__value="v")


@case("params")
def which_operations_advance_the_index(s: Side) -> None:
    """Successful writes and refreshes move X-Etcd-Index; reads or failures do not."""
    s.keys("PUT", "k", {"ttl": "100"}, form={"value": "1"})
    steps = [
        ("GET", "k", {}, 1),
        ("HEAD", "k", {}, 1),
        ("GET", "k", {"quorum": "true"}, 1),
        ("PUT", "k", {"prevValue": "nope"}, 1),
        ("PUT", "k", {"prevExist": "false"}, 1),
        ("DELETE", "missing", {}, 1),
        ("PUT", "k/under", {}, 1),
        ("PUT", "k", {"ttl": "x"}, 1),
        ("PUT", "k", {"refresh": "true", "ttl": "100", "prevExist": "true"}, 2),
        ("PUT", "k", {"prevExist": "true"}, 3),
        ("PUT", "k", {"prevValue": ""}, 3),
        ("POST", "q", {}, 4),
        ("PUT", "d", {"dir": "true"}, 5),
        ("DELETE", "d", {"dir": "true"}, 6),
        ("DELETE", "k", {"prevIndex": str(s.idx(99))}, 6),
        ("DELETE", "k", {}, 7),
    ]
    for method, rel, query, offset in steps:
        r = s.keys(method, rel, query)
        index = r.header("X-Etcd-Index")
        if index != "0":
            s.check(index == str(s.idx(offset)), f"{method} {rel} {query}: {index}")
    s.keys("GET", "")


@case("params")
def integer_edge_forms(s: Side) -> None:
    """Leading zeros are accepted; a sign or a value beyond 64 bits is rejected."""
    r = s.keys("PUT", "k", {"ttl": "0100"}, form={"value": "v"})
    s.expect(r, 201, node__ttl=100)
    s.expect(s.keys("PUT", "k", {"ttl": "+5"}), 400, errorCode=202)
    s.expect(s.keys("PUT", "k", {"ttl": str(2**64)}), 400, errorCode=202)
    s.expect(s.keys("PUT", "k", {"prevIndex": str(2**64)}), 400, errorCode=203)
    s.expect(s.keys("GET", "k", {"waitIndex": "+1", "wait": "true"}), 400)
    # The largest uint64 is a valid prevIndex. Not compared: the normaliser would make
    # it relative to each server's own base index.
    r = s.keys("PUT", "k", {"prevIndex": str(2**64 - 1)}, compare=False)
    s.expect(r, 412, errorCode=101, cause=f"[{2**64 - 1} != {s.idx(1)}]")
