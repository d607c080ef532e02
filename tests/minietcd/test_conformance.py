"""minietcd against real etcd 3.4: the same HTTP cases, normalised responses compared.

Each case (in C{tests/minietcd/conformance/cases_*.py}) is one test method named after
it, with
the case's docstring. A case runs under its own key prefix on one shared real etcd and
one shared minietcd per test process, both sides at once; see
L{tests.minietcd.conformance.runner} for how it runs and
L{tests.minietcd.conformance.normalise} for what
is made comparable.

To check the suite itself, C{TWISTEDNODE_CONFORMANCE_PEER=etcd} holds a second,
independent real etcd against the first instead of minietcd: every case must pass then.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from tests.minietcd.conformance import (  # noqa: F401  (importing registers the cases)
    cases_cluster,
    cases_http,
    cases_metrics,
    cases_params,
    cases_raw_target,
    cases_read,
    cases_ttl,
    cases_watch,
    cases_write,
)
from tests.minietcd.conformance.peers import candidate, reference
from tests.minietcd.conformance.runner import Case, all_cases, run_case


class _ConformanceTestCase(SynchronousTestCase):
    """Runs one registered case against real etcd and the candidate server."""

    def run_conformance(self, the_case: Case) -> None:
        run_case(the_case, reference().url, candidate())


def _method(the_case: Case) -> Callable[[_ConformanceTestCase], None]:
    def test(self: _ConformanceTestCase) -> None:
        self.run_conformance(the_case)

    test.__name__ = f"test_{the_case.name}"
    test.__doc__ = the_case.doc
    return test


def _add_cases(cls: type[_ConformanceTestCase], group: str) -> None:
    cases = all_cases([group])
    if not cases:
        raise RuntimeError(f"no conformance cases in group {group!r}")
    for the_case in cases:
        setattr(cls, f"test_{the_case.name}", _method(the_case))


class KeysReadConformanceTests(_ConformanceTestCase):
    """GET and HEAD of keys and dirs, listings, hidden keys, the root."""


class KeysWriteConformanceTests(_ConformanceTestCase):
    """PUT, POST and DELETE: set, create, update, CAS, CAD, dirs, in-order keys."""


class TTLConformanceTests(_ConformanceTestCase):
    """TTLs set, changed, removed and refreshed; expiry."""


class WatchConformanceTests(_ConformanceTestCase):
    """wait=true: history, live, recursive, hidden, stream, the 1000-event window."""


class ParameterConformanceTests(_ConformanceTestCase):
    """Query and form parsing, booleans, integers, validation order, the index."""


class HTTPConformanceTests(_ConformanceTestCase):
    """CORS, OPTIONS, 405, 404, redirects, odd paths, large requests."""


class ClusterConformanceTests(_ConformanceTestCase):
    """/version, /health, /v2/members, /v2/machines and /v2/stats/*."""


_add_cases(KeysReadConformanceTests, "read")
_add_cases(KeysWriteConformanceTests, "write")
_add_cases(TTLConformanceTests, "ttl")
_add_cases(WatchConformanceTests, "watch")
_add_cases(ParameterConformanceTests, "params")
_add_cases(HTTPConformanceTests, "http")
_add_cases(ClusterConformanceTests, "cluster")
