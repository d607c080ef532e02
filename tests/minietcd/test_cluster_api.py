"""minietcd's cluster endpoints: /version, /health, members, machines, stats."""

from __future__ import annotations

from treq import content

from tests.harness.etcdtesting import BASE, Answer, APITestCase


class ClusterEndpointTests(APITestCase):
    """/version, /health, /v2/members, /v2/machines and /v2/stats/*."""

    def test_version(self) -> None:
        """/version is etcd 3.4.23's JSON without a trailing newline."""
        answer = self.call("GET", "/version")
        self.assertEqual(answer.body, b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}')
        self.assertEqual(answer.headers["content-type"], "application/json")
        self.assertNotIn("x-etcd-cluster-id", answer.headers)

    def test_health(self) -> None:
        """/health is {"health":"true"} as text/plain, and counts a read."""
        answer = self.call("GET", "/health")
        self.assertEqual(
            (answer.body, answer.headers["content-type"]),
            (b'{"health":"true"}', "text/plain; charset=utf-8"),
        )
        self.assertEqual(self.store.stats.gets_success, 1)

    def test_members(self) -> None:
        """/v2/members lists this member with the advertised client URLs."""
        self.api.client_urls = ["http://127.0.0.1:23790"]
        answer = self.call("GET", "/v2/members")
        member = {
            "id": f"{self.api.cluster.member_id:x}",
            "name": "minietcd",
            "peerURLs": ["http://localhost:2380"],
            "clientURLs": ["http://127.0.0.1:23790"],
        }
        self.assertEqual(answer.json, {"members": [member]})
        self.assertTrue(answer.body.endswith(b"]}\n"))
        self.assertEqual(
            answer.headers["x-etcd-cluster-id"], f"{self.api.cluster.cluster_id:x}"
        )
        self.assertEqual(self.call("GET", "/v2/members/").json, {"members": [member]})
        self.assertEqual(self.call("GET", "/v2/members/leader").json, member)
        missing = self.call("GET", "/v2/members/xyz")
        self.assertEqual(
            (missing.code, missing.body), (404, b'{"message":"Not found"}')
        )

    def test_member_changes(self) -> None:
        """Member requests are checked as etcd does; add/remove 501, update 204."""
        # Updating our own peer URLs is what is done (204).
        wrong = self.call("POST", "/v2/members", b"x", form=False)
        self.assertEqual(
            (wrong.code, wrong.json["message"]),
            (415, "Bad Content-Type , accept application/json"),
        )
        self.assertEqual(
            self.member_call("POST", "", b"").json,
            {"message": "unexpected end of JSON input"},
        )
        self.assertEqual(
            self.member_call("POST", "", b"{}").json, {"message": "no valid URLs given"}
        )
        added = self.member_call("POST", "", b'{"peerURLs":["http://10.0.0.2:2380"]}')
        self.assertEqual(added.code, 501)
        own = f"{self.api.cluster.member_id:x}"
        self.assertEqual(self.call("DELETE", "/v2/members/" + own).code, 501)
        self.assertEqual(
            self.call("DELETE", "/v2/members/1234").json,
            {"message": "No such member: 1234"},
        )
        self.assertEqual(self.call("DELETE", "/v2/members/xyz").code, 404)
        self.assertEqual(self.call("DELETE", "/v2/members").code, 405)
        moved = self.member_call("PUT", own, b'{"peerURLs":["http://10.0.0.1:2380"]}')
        self.assertEqual((moved.code, moved.body), (204, b""))
        [member] = self.call("GET", "/v2/members").json["members"]
        self.assertEqual(member["peerURLs"], ["http://10.0.0.1:2380"])
        self.assertEqual(member["id"], own)
        other = self.member_call("PUT", "1234", b'{"peerURLs":["http://a:1"]}')
        self.assertEqual(other.json, {"message": "No such member: 1234"})
        bad = self.member_call("PUT", own, b'{"peerURLs":["http://a:1/path"]}')
        self.assertEqual(
            (bad.code, bad.json["message"]),
            (400, "URL must not contain a path: http://a:1/path"),
        )

    def test_member_body_nested_too_deeply(self) -> None:
        """A member body nested too deeply is a 400 saying so, as etcd's, not a 500."""
        deepest = self.member_call("POST", "", b"[" * 100_000)
        self.assertEqual(
            (deepest.code, deepest.json),
            (400, {"message": "invalid character '[' exceeded max depth"}),
        )
        deep = self.member_call("POST", "", b'{"a":' * 5_000 + b"1" + b"}" * 5_000)
        self.assertEqual(
            (deep.code, deep.json),
            (400, {"message": "json: the value is nested too deeply"}),
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    def member_call(self, method: str, member: str, body: bytes) -> Answer:
        """A members request with a JSON body."""
        response = self.successResultOf(
            self.stub.request(
                method,
                BASE + "/v2/members/" + member,
                data=body,
                headers={b"Content-Type": [b"application/json"]},
            )
        )
        return Answer(response, self.successResultOf(content(response)))

    def test_machines(self) -> None:
        """/v2/machines joins the client URLs with ", " as text/plain."""
        self.api.client_urls = ["http://a:1", "http://b:2"]
        answer = self.call("GET", "/v2/machines")
        self.assertEqual(
            (answer.body, answer.headers["content-type"]),
            (b"http://a:1, http://b:2", "text/plain; charset=utf-8"),
        )

    def test_stats(self) -> None:
        """/v2/stats/store has real counters; self and leader describe a lone leader."""
        self.call("PUT", "/v2/keys/k", b"value=v")
        self.call("GET", "/v2/keys/k")
        self.send("GET", "/v2/keys/k?wait=true")
        stats = self.call("GET", "/v2/stats/store").json
        self.assertEqual(list(stats)[:2], ["getsSuccess", "getsFail"])
        # 1 failed read at bootstrap + etcd's auth probe on each of 3 requests.
        self.assertEqual(
            (stats["getsSuccess"], stats["getsFail"], stats["setsSuccess"]), (1, 4, 3)
        )
        self.assertEqual(stats["watchers"], 1)
        self.clock.advance(61.5)
        own = self.call("GET", "/v2/stats/self").json
        self.assertEqual(
            (own["state"], own["leaderInfo"]["uptime"]), ("StateLeader", "1m1.5s")
        )
        self.assertEqual(own["leaderInfo"]["leader"], own["id"])
        self.assertEqual(
            self.call("GET", "/v2/stats/leader").json,
            {"leader": own["id"], "followers": {}},
        )
