"""Arbitrary requests never break minietcd: no 500, no logged error, a sane store."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq import content

from minietcd.errors import EtcdError
from tests.harness.etcdtesting import BASE, FORM, APITestCase

_NAMES = [
    "value",
    "ttl",
    "dir",
    "recursive",
    "sorted",
    "wait",
    "waitIndex",
    "prevValue",
    "prevIndex",
    "prevExist",
    "refresh",
    "quorum",
    "stream",
    "noValueOnSuccess",
]
_VALUES = st.one_of(
    st.sampled_from(["", "true", "false", "1", "0", "5", "-1", "x", "%zz", "%", "T"]),
    st.text(alphabet="abc%2F_+ é;&=", max_size=6),
)
_SEGMENTS = st.one_of(
    st.sampled_from(["a", "b", "_h", "..", ".", "", "%2F", "%zz", "%ff", "é", "a+b"]),
    st.text(alphabet="ab_%2F.", max_size=4),
)


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in pairs)


class FuzzTests(APITestCase):
    """Random methods, paths, parameters and bodies."""

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"]),
        prefix=st.sampled_from(["/v2/keys", "/v2/keys/", "/v2/members/", "/v2/"]),
        segments=st.lists(_SEGMENTS, max_size=4),
        pairs=st.lists(st.tuples(st.sampled_from(_NAMES), _VALUES), max_size=5),
        body_pairs=st.lists(st.tuples(st.sampled_from(_NAMES), _VALUES), max_size=3),
        form=st.booleans(),
    )
    def test_no_request_breaks_the_server(
        self,
        method: str,
        prefix: str,
        segments: list[str],
        pairs: list[tuple[str, str]],
        body_pairs: list[tuple[str, str]],
        form: bool,
    ) -> None:
        """Any request: no 500, no logged error, root still lists, no watcher left."""
        pairs = [(n, v) for n, v in pairs if not (n == "wait" and v != "false")]
        url = BASE + prefix + "/".join(segments) + "?" + _query(pairs)
        body = _query(body_pairs).encode("utf-8")
        headers = FORM if form else {}
        response = self.successResultOf(
            self.stub.request(
                method, url, data=body, headers=headers, allow_redirects=False
            )
        )
        self.successResultOf(content(response))
        self.assertNotEqual(response.code, 500)
        self.assertEqual(self.flushLoggedErrors(), [])
        try:
            self.store.get("/", self.clock.seconds(), recursive=True)
        except EtcdError as error:
            self.fail(f"store broken: {error}")
        self.assertEqual(self.store.watcher_count, 0)
