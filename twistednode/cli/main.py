# -*- test-case-name: tests.cli.test_main -*-
"""C{twistednode}, the console script: parse, run one command on the reactor, exit.

A mistake in the options or a failure the operator can fix is one line on stderr,
C{twistednode COMMAND: what went wrong}, and exit status 1; anything else is a bug
and prints its traceback. The reactor is Twisted's default, driven by
C{twisted.internet.task.react}.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python import usage
from twisted.python.failure import Failure

from tapkit.notls import without_tls
from twistednode.cli.commands import CommandFailed, members, new_key, status, watch
from twistednode.cli.options import Options

PROGRAM = "twistednode"
COMMANDS = {"members": members, "status": status, "watch": watch, "new-key": new_key}


def parse(argv: Sequence[str], err: IO[str]) -> Options | None:
    """The parsed options, or None once the mistake is printed."""
    config = Options()
    try:
        config.parseOptions(list(argv))
    except usage.UsageError as e:
        name = (
            PROGRAM if config.subCommand is None else f"{PROGRAM} {config.subCommand}"
        )
        err.write(f"{name}: {e} (see {name} --help)\n")
        return None
    return config


def run(
    reactor: Any, config: Options, out: IO[str], err: IO[str], http: Any = None
) -> Deferred[None]:
    """Run the chosen command; fail with C{SystemExit(1)} after printing why."""
    name = config.subCommand
    assert name is not None
    command = COMMANDS[name]
    d = Deferred.fromCoroutine(command(reactor, config.subOptions, out, http=http))

    def failed(failure: Failure) -> None:
        if failure.check(CommandFailed):
            err.write(f"{PROGRAM} {name}: {failure.getErrorMessage()}\n")
        elif failure.check(BrokenPipeError):
            return  # the reader went away (| head): nothing more to say
        elif failure.check(CancelledError):
            return  # stopped (SIGTERM, Ctrl-C): the command has cleaned up
        else:
            err.write(f"{PROGRAM} {name}: unexpected error\n{failure.getTraceback()}")
        err.flush()
        raise SystemExit(1)

    return d.addErrback(failed)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point."""
    config = parse(sys.argv[1:] if argv is None else argv, sys.stderr)
    if config is None:
        sys.exit(1)
    if not config.subOptions["uses-tls"]:
        without_tls()  # before the reactor's modules are loaded
    from twisted.internet.task import react

    react(lambda reactor: until_stopped(reactor, config))


def until_stopped(reactor: Any, config: Options) -> Deferred[None]:
    """Run the command; when the process is stopped, cancel it first and let it
    clean up before the reactor drops its connections (so C{watch} does not
    report the dropped watch as an outage)."""
    d = run(reactor, config, sys.stdout, sys.stderr)

    def stop() -> Deferred[None]:
        d.cancel()
        return d

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    return d
