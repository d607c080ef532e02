"""Cases: /metrics answers every method as etcd's promhttp handler does.

The metrics themselves differ (etcd has many minietcd has not), so each answer is
reduced to what must agree: status, content type, CORS, and whether the body is
empty or holds the text format with the store's watcher gauge.
"""

from __future__ import annotations

from tests.minietcd.conformance.http import Response
from tests.minietcd.conformance.runner import Side, case

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
WATCHERS = b"# TYPE etcd_debugging_store_watchers gauge\n"


def _summary(r: Response) -> dict[str, object]:
    return {
        "status": r.status,
        "content-type": r.header("Content-Type"),
        "cors": r.header("Access-Control-Allow-Origin"),
        "empty": r.body == b"",
        "watchers gauge": WATCHERS in r.body,
    }


@case("cluster")
def metrics_any_method(s: Side) -> None:
    """GET, HEAD, POST, PUT, DELETE, PATCH on /metrics: 200, text format; HEAD bare."""
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        r = s.request(method, "/metrics", compare=False)
        s.record(f"{method} /metrics", _summary(r))
    s.expect(s.request("GET", "/metrics", compare=False), 200)
    for target in ("/metrics?x=1", "/metrics/", "//metrics"):
        r = s.request("GET", target, compare=False)
        s.record(f"GET {target}", {**_summary(r), "location": r.header("Location")})
