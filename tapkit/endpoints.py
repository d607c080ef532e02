# -*- test-case-name: tests.tapkit.test_endpoints -*-
"""Listener options of the twistd plugins: a bare port, or a Twisted endpoint string."""

from __future__ import annotations

from twisted.python import usage

#: What an endpoint looks like, for the usage error about one that is not.
ENDPOINT_FORMS = (
    "PORT (on 127.0.0.1), tcp:PORT:interface=ADDR (0.0.0.0 for every interface) "
    "or ssl:PORT:interface=ADDR:privateKey=KEY.pem:certKey=CERT.pem"
)


def local_port(text: str) -> str | None:
    """C{tcp:PORT:interface=127.0.0.1} if C{text} is a bare port number, else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    return f"tcp:{int(text)}:interface=127.0.0.1"


def stream_endpoint(option: str, text: str) -> str:
    """The endpoint string that C{text}, given to C{option}, stands for.

    A bare port listens on 127.0.0.1 only. Anything else must be an endpoint that
    C{serverFromString} parses, or this raises a one-line L{usage.UsageError}
    naming C{option}. Call it after L{tapkit.notls.without_tls} has had its say:
    C{twisted.internet.endpoints} loads C{twisted.internet.ssl}.
    """
    port = local_port(text)
    if port is not None:
        if int(text) > 65535:
            raise usage.UsageError(f"{option} {text}: a port is 0-65535")
        return port
    from twisted.internet.endpoints import serverFromString

    try:
        # Parsing only: no parser of Twisted's own uses the reactor before listen().
        serverFromString(None, text)
    except OSError as e:
        # An ssl: endpoint reads its key and certificate as it is parsed.
        where = f"{e.filename}: " if e.filename else ""
        raise usage.UsageError(
            f"{option} {text!r}: cannot read {where}{e.strerror or e} (an ssl: "
            "endpoint reads privateKey=FILE and certKey=FILE, server.pem if not given)"
        ) from None
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise usage.UsageError(
            f"{option} {text!r} is not an endpoint ({e}); use {ENDPOINT_FORMS}"
        ) from None
    return text
