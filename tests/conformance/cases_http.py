"""Cases: HTTP around the keys API: CORS, OPTIONS, 405, 404, redirects, big bodies."""

from __future__ import annotations

from tests.conformance.runner import Side, case

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Headers": "accept, content-type, authorization",
}
KEYS_ALLOW = "HEAD,GET,PUT,POST,DELETE"
PLAIN = "text/plain; charset=utf-8"
OVERSIZED_VALUE = 3 * 1024 * 1024


@case("http")
def cors_headers_on_every_response(s: Side) -> None:
    """Successes, errors, 404s, 405s and info endpoints all carry the CORS headers."""
    s.keys("PUT", "k", form={"value": "v"})
    responses = [
        s.keys("GET", "k"),
        s.keys("GET", "missing"),
        s.keys("PUT", "k", {"ttl": "x"}),
        s.keys("PATCH", "k"),
        s.request("GET", "/version"),
        s.request("GET", "/nothing/here"),
        s.request("POST", "/version"),
    ]
    for r in responses:
        s.expect(r, r.status, headers=CORS)


@case("http")
def options_on_any_path(s: Side) -> None:
    """OPTIONS on any path is 200 with the CORS headers and an empty body."""
    for target in (s.path("k"), "/v2/keys", "/version", "/v2/stats/self", "/nowhere"):
        r = s.request("OPTIONS", target)
        s.expect(r, 200, headers=CORS)
        s.check(r.body == b"", f"OPTIONS {target} has a body {r.body!r}")


@case("http")
def keys_method_not_allowed(s: Side) -> None:
    """Other methods on /v2/keys are 405 with Allow and a plain-text body."""
    for method in ("PATCH", "TRACE", "FOO"):
        r = s.keys(method, "k")
        s.expect(r, 405, headers={"Allow": KEYS_ALLOW, "Content-Type": PLAIN})
        s.check(r.body == b"Method Not Allowed\n", f"405 body {r.body!r}")
    s.expect(s.request("PATCH", "/v2/keys"), 405, headers={"Allow": KEYS_ALLOW})


@case("http")
def info_endpoints_method_not_allowed(s: Side) -> None:
    """/version and /v2/stats/* allow GET only, /v2/machines GET and HEAD."""
    for target in ("/version", "/v2/stats/self", "/v2/stats/store", "/v2/stats/leader"):
        for method in ("HEAD", "POST", "PUT", "DELETE"):
            r = s.request(method, target)
            s.expect(r, 405, headers={"Allow": "GET", "Content-Type": PLAIN})
    r = s.request("POST", "/v2/machines")
    s.expect(r, 405, headers={"Allow": "GET,HEAD"})


@case("http")
def unknown_paths_are_404(s: Side) -> None:
    """Unknown paths (also near misses of real ones) are Go's plain-text 404."""
    for target in ("/v2/keysfoo", "/v2/stats", "/v2", "/v2/", "/", "/version/", "/x"):
        r = s.request("GET", target)
        s.expect(r, 404, headers={"Content-Type": PLAIN})
        s.check(r.body == b"404 page not found\n", f"{target}: 404 body {r.body!r}")
    s.expect(s.request("PUT", "/v2/keysfoo"), 404)


@case("http")
def non_clean_paths_redirect(s: Side) -> None:
    """//, /./, /../, a trailing /. or /.. and %2E%2E redirect to the clean path."""
    base = s.path()
    s.keys("PUT", "a", form={"value": "1"})
    for raw in ("//a", "/./a", "/x/../a", "/a/.", "/%2E/a", "/b/%2E%2E/a"):
        r = s.request("GET", base + raw)
        s.expect(r, 301, headers={"Location": base + "/a"})
    s.expect(s.request("GET", base + "/a/.."), 301, headers={"Location": base})
    r = s.request("GET", base + "//a?recursive=true")
    s.expect(r, 301, headers={"Location": base + "/a?recursive=true"})
    s.expect(s.request("GET", "//v2/keys" + s.key("a")), 301)
    s.expect(s.request("GET", "/v2//keys" + s.key("a")), 301)


@case("http")
def redirect_does_not_write(s: Side) -> None:
    """A PUT, POST or DELETE to a non-clean path is redirected, not applied."""
    base = s.path()
    for method in ("PUT", "POST", "DELETE"):
        r = s.request(method, base + "//a", form={"value": "1"})
        s.expect(r, 301, headers={"Location": base + "/a"})
        s.check(r.body == b"", f"{method} redirect has a body {r.body!r}")
    r = s.request("HEAD", base + "//a")
    s.expect(r, 301, headers={"Location": base + "/a"})
    s.expect(s.keys("GET", "a"), 404, errorCode=100)


@case("http")
def encoded_slash_separates(s: Side) -> None:
    """%2F is a separator; %2F%2F is a non-clean path and redirects."""
    s.keys("PUT", "a%2Fb", form={"value": "1"})
    s.expect(s.keys("GET", "a"), 200, node__dir=True)
    s.expect(s.keys("GET", "a%2Fb%2F"), 200, node__key=s.key("a/b"))
    r = s.keys("GET", "a%2F%2Fb")
    s.expect(r, 301, headers={"Location": s.path("a/b")})


@case("http")
def oversized_body_deliberate_difference(s: Side) -> None:
    """A 3 MiB value: etcd stores it; minietcd refuses it with 413 (a deliberate limit).

    Deliberate difference, not compared: etcd v2 has no body limit, minietcd caps
    request bodies and answers 413 so a client cannot exhaust its memory.
    """
    value = "x" * OVERSIZED_VALUE
    r = s.keys("PUT", "big", form={"value": value}, compare=False)
    if s.is_etcd:
        s.expect(r, 201, action="set")
        r = s.keys("GET", "big", compare=False)
        s.check(len(r.body) > OVERSIZED_VALUE, "etcd lost the big value")
    else:
        s.expect(r, 413)
        s.expect(s.keys("GET", "big", compare=False), 404, errorCode=100)
    s.keys("PUT", "small", form={"value": "x" * 10000})
    s.expect(s.keys("GET", "small"), 200)


@case("http")
def value_of_half_a_mebibyte(s: Side) -> None:
    """A value of 512 KiB is stored and read back unchanged."""
    value = "v" * (512 * 1024)
    s.expect(s.keys("PUT", "k", form={"value": value}), 201, node__value=value)
    s.expect(s.keys("GET", "k"), 200, node__value=value)
