"""Tests for twistednode.registry.v2 over a scripted etcd v2 (StubTreq, Clock)."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import CancelledError, Deferred

from tests.etcd.test_v2 import HOLD, Answer, ClientTestCase, error, node, ok
from twistednode.registry.backend import (
    BackendError,
    BackendUnavailable,
    Change,
    Entry,
    HistoryLost,
    Listing,
    RecordExists,
    RecordMissing,
    RegistryBackend,
    WatchEnded,
    WatchTimedOut,
)
from twistednode.registry.v2 import EtcdV2Backend


class EtcdV2BackendTests(ClientTestCase):
    """The v2 backend maps keys answers onto the registry's values and errors."""

    def setUp(self) -> None:
        super().setUp()
        self.backend: RegistryBackend = EtcdV2Backend(self.client)

    def test_create(self) -> None:
        """create returns the createdIndex; an existing key is RecordExists."""
        self.etcd.answers.append(ok("create", node("/m/a", "v", 11), 11))
        self.assertEqual(self.successResultOf(self.backend.create("/m/a", "v", 10)), 11)
        self.etcd.answers.append(error(412, 105, "Key already exists", "/m/a", 11))
        self.failureResultOf(self.backend.create("/m/a", "v", 10), RecordExists)

    def test_replace_and_refresh_missing(self) -> None:
        """replace and refresh of a vanished key fail with RecordMissing."""
        self.etcd.answers.append(error(404, 100, "Key not found", "/m/a", 12))
        self.failureResultOf(self.backend.replace("/m/a", "v", 10), RecordMissing)
        self.etcd.answers.append(error(404, 100, "Key not found", "/m/a", 12))
        self.failureResultOf(self.backend.refresh("/m/a", 10), RecordMissing)

    def test_replace_keeps_created_index(self) -> None:
        """replace answers the key's (kept) createdIndex."""
        self.etcd.answers.append(
            ok("update", {**node("/m/a", "v2", 4), "modifiedIndex": 13}, 13)
        )
        self.assertEqual(
            self.successResultOf(self.backend.replace("/m/a", "v2", 10)), 4
        )

    def test_delete_missing_is_fine(self) -> None:
        """Deleting a key that is already gone succeeds."""
        self.etcd.answers.append(error(404, 100, "Key not found", "/m/a", 12))
        self.successResultOf(self.backend.delete("/m/a"))

    def test_list(self) -> None:
        """list gives the children's relative names, values and the listing index."""
        listing = node(
            "/m", None, 3, nodes=[node("/m/a", "1", 4), node("/m/sub", None, 6)]
        )
        self.etcd.answers.append(ok("get", listing, index=20))
        self.assertEqual(
            self.successResultOf(self.backend.list("/m")),
            Listing((Entry("a", "1", 4, 4), Entry("sub", None, 6, 6)), 20),
        )

    def test_list_missing_directory(self) -> None:
        """A directory that does not exist lists as empty at etcd's current index."""
        self.etcd.answers.append(error(404, 100, "Key not found", "/twistednode", 30))
        self.assertEqual(self.successResultOf(self.backend.list("/m")), Listing((), 30))

    def test_list_without_index(self) -> None:
        """A listing without X-Etcd-Index cannot be watched from: BackendError."""
        answer = ok("get", node("/m", None, 3))
        answer.index = None
        self.etcd.answers.append(answer)
        self.failureResultOf(self.backend.list("/m"), BackendError)

    def test_watch_changes(self) -> None:
        """Watch events map to put/deleted/expired changes with their indices."""
        events = [
            ok("create", node("/m/a", "v", 21)),
            ok("delete", {"key": "/m/a", "modifiedIndex": 22, "createdIndex": 21}),
            ok("expire", {"key": "/m/b", "modifiedIndex": 23, "createdIndex": 9}),
            ok(
                "expire",
                {"key": "/m", "dir": True, "modifiedIndex": 24, "createdIndex": 3},
            ),
        ]
        self.etcd.answers.extend(events)
        got = [self.successResultOf(self.backend.watch("/m", i, 5)) for i in range(4)]
        self.assertEqual(
            got,
            [
                [Change("put", "a", "v", 21, 21)],
                [Change("deleted", "a", None, 21, 22)],
                [Change("expired", "b", None, 9, 23)],
                [Change("expired", "", None, 3, 24)],
            ],
        )
        self.assertEqual(self.etcd.seen[0].args["recursive"], "true")

    def test_one_stream_serves_every_change(self) -> None:
        """Changes arriving on one open stream serve call after call, with no new
        request per change."""
        self.etcd.answers.append(HOLD)  # answered with X-Etcd-Index 7
        first = self.backend.watch("/m", 8, 60)
        self.stub.flush()
        self.assertEqual(self.etcd.seen[0].args["stream"], "true")
        self.etcd.held[0].write(
            ok("set", node("/m/a", "v", 8)).body
            + ok("delete", {"key": "/m/a", "modifiedIndex": 9, "createdIndex": 8}).body
        )
        self.stub.flush()
        got: list[Change] = []
        watching: Deferred[Sequence[Change]] = first
        while len(got) < 2:
            batch = self.successResultOf(watching)
            got.extend(batch)
            if len(got) < 2:
                watching = self.backend.watch("/m", got[-1].index + 1, 60)
        self.assertEqual(
            got, [Change("put", "a", "v", 8, 8), Change("deleted", "a", None, 8, 9)]
        )
        waiting = self.backend.watch("/m", 10, 60)
        self.stub.flush()
        self.assertNoResult(waiting)
        self.assertEqual(len(self.etcd.seen), 1, "one request for every change")
        self.assertEqual(self.etcd.gone, [])
        waiting.cancel()
        self.failureResultOf(waiting, CancelledError)

    def test_watch_of_one_child(self) -> None:
        """With only=, the stream watches that key (not recursively): its changes
        keep their name, and the directory's own expiry is reported as ""."""
        self.etcd.answers.append(HOLD)
        d = self.backend.watch("/m", 8, 60, only="master")
        self.stub.flush()
        self.assertEqual(self.etcd.seen[0].path, "/v2/keys/m/master")
        self.assertEqual(self.etcd.seen[0].args["recursive"], "false")
        self.etcd.held[0].write(
            ok("create", node("/m/master", "me", 8)).body
            + ok("expire", {"key": "/m", "dir": True, "modifiedIndex": 9}).body
        )
        self.stub.flush()
        first = self.successResultOf(d)
        got: list[Change] = list(first)
        if len(got) < 2:
            more = self.successResultOf(self.backend.watch("/m", 9, 60, only="master"))
            got.extend(more)
        self.assertEqual(
            got,
            [Change("put", "master", "me", 8, 8), Change("expired", "", None, 0, 9)],
        )
        self.assertEqual(len(self.etcd.seen), 1)

    def test_event_from_the_history_ends_the_stream(self) -> None:
        """etcd 3.4 sends nothing after an event found in its history (at or below
        the answer's X-Etcd-Index): that stream is closed, the next opened after it."""
        self.etcd.answers.extend([HOLD, HOLD])  # both with X-Etcd-Index 7
        first = self.backend.watch("/m", 5, 60)
        self.stub.flush()
        self.etcd.held[0].write(ok("set", node("/m/a", "v", 6)).body)
        self.stub.flush()
        self.assertEqual(self.successResultOf(first), [Change("put", "a", "v", 6, 6)])
        self.assertEqual(len(self.etcd.gone), 1, "the spent stream was closed")
        second = self.backend.watch("/m", 7, 60)
        self.stub.flush()
        self.assertEqual(self.etcd.seen[1].args["waitIndex"], "7")
        self.etcd.held[1].write(ok("set", node("/m/b", "v", 8)).body)
        self.stub.flush()
        self.assertEqual(self.successResultOf(second), [Change("put", "b", "v", 8, 8)])
        self.assertEqual(len(self.etcd.gone), 1, "a live event leaves it open")
        third = self.backend.watch("/m", 9, 60)
        third.cancel()
        self.failureResultOf(third, CancelledError)

    def test_quiet_watch_goes_on_from_where_etcd_answered(self) -> None:
        """After a timeout with no event, asking again from the old index opens
        the next stream after the index the last one was answered with: nothing
        up to there concerned it, and a quiet key's watch would otherwise fall
        out of etcd's history (error 401) while other keys change."""
        for index in range(3):  # every stream answered with X-Etcd-Index 7
            self.etcd.answers.append(HOLD)
            d = self.backend.watch("/m", 2, 5, only="master")
            self.stub.flush()
            self.clock.advance(5)
            self.stub.flush()
            self.failureResultOf(d, WatchTimedOut)
            self.assertEqual(len(self.etcd.gone), index + 1, "the stream was closed")
        self.assertEqual([s.args["waitIndex"] for s in self.etcd.seen], ["2", "8", "8"])

    def test_bad_stream_line_ends_the_watch(self) -> None:
        """A line that is not an etcd event ends the watch with WatchEnded."""
        self.etcd.answers.append(HOLD)
        d = self.backend.watch("/m", 8, 60)
        self.stub.flush()
        self.etcd.held[0].write(b'{"errorCode": 300, "message": "x", "index": 8}\n')
        self.stub.flush()
        failure = self.failureResultOf(d, WatchEnded)
        self.assertIn("bad watch event", str(failure.value))

    def test_watch_skips_unrelated_prefix(self) -> None:
        """An event etcd's history scan matched by raw prefix is skipped."""
        self.etcd.answers.append(ok("set", node("/m2/x", "v", 30)))
        self.etcd.answers.append(ok("set", node("/m/x", "v", 31)))
        changes = self.successResultOf(self.backend.watch("/m", 29, 5))
        self.assertEqual(changes, [Change("put", "x", "v", 31, 31)])
        self.assertEqual(self.etcd.seen[1].args["waitIndex"], "31")

    def test_watch_outcomes(self) -> None:
        """401, an empty 200, a timeout and no member map to distinct errors."""
        self.etcd.answers.append(error(400, 401, "outdated", "[1/2]", 2000))
        self.failureResultOf(self.backend.watch("/m", 2, 5), HistoryLost)
        self.etcd.answers.append(Answer(200, b""))
        self.failureResultOf(self.backend.watch("/m", 2, 5), WatchEnded)
        self.etcd.answers.append(HOLD)
        d = self.backend.watch("/m", 2, 5)
        self.stub.flush()
        self.clock.advance(5)
        self.failureResultOf(d, WatchTimedOut)
        self.http.down.update({"one", "two"})
        self.failureResultOf(self.backend.watch("/m", 2, 5), BackendUnavailable)

    def test_endpoint(self) -> None:
        """The backend reports the URL in use."""
        self.assertEqual(self.backend.endpoint, "http://one:2379")

    def test_watch_follows_the_client_to_another_member(self) -> None:
        """A long-poll waiting on a member the client has left (a refresh moved on
        after a request timeout: the member hangs) ends with WatchEnded at once,
        and its request is dropped."""
        self.etcd.answers.append(HOLD)
        watch = self.backend.watch("/m", 2, 60)
        self.stub.flush()
        self.etcd.answers.extend([HOLD, ok("update", node("/m/a", "v", 12), 12)])
        refresh = self.backend.refresh("/m/a", 10)
        self.stub.flush()
        self.assertNoResult(watch)
        self.clock.advance(self.client.request_timeout)
        self.stub.flush()
        self.successResultOf(refresh)
        self.assertEqual([s.host for s in self.etcd.seen], ["one", "one", "two"])
        failure = self.failureResultOf(watch, WatchEnded)
        self.assertIn(
            "moved from http://one:2379 to http://two:2379", str(failure.value)
        )
        self.assertEqual(len(self.etcd.gone), 2, "both requests to one were dropped")

    def test_watch_on_the_member_in_use_goes_on(self) -> None:
        """Calls answered by the member a watch waits on leave the watch alone."""
        self.etcd.answers.append(HOLD)
        watch = self.backend.watch("/m", 2, 60)
        self.stub.flush()
        self.etcd.answers.append(ok("update", node("/m/a", "v", 12), 12))
        self.successResultOf(self.backend.refresh("/m/a", 10))
        self.assertNoResult(watch)
        watch.cancel()
        self.failureResultOf(watch, CancelledError)

    def test_cancel_passes_through(self) -> None:
        """Cancelling a backend watch fails it with CancelledError, not an error."""
        self.etcd.answers.append(HOLD)
        d = self.backend.watch("/m", 2, 5)
        self.stub.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
