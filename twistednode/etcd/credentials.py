"""The etcd user and password a command line gives, by etcdctl's rules.

C{--etcd-user USER:PASSWORD}, or C{--etcd-user USER} with the password from
C{--etcd-password-file} (its first line, kept out of C{ps}) or from
C{$ETCDCTL_PASSWORD}. The node's command line and the C{twistednode} command both
read them here, so they accept and refuse the same things; a mistake is a
C{ValueError} whose message names the option, which they turn into a usage error.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twistednode.etcd.v3 import Credentials

#: Where etcdctl reads the password of --user USER from.
PASSWORD_VARIABLE = "ETCDCTL_PASSWORD"


def read_password(path: str) -> str:
    """The password in the file C{path}: its first line, without the newline."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ValueError(f"--etcd-password-file {path}: {reason}") from None
    if not password:
        raise ValueError(f"--etcd-password-file {path}: the first line is empty")
    return password


def credentials_from(
    user_option: str | None,
    password_file: str | None,
    api: str,
    environ: Mapping[str, str],
) -> Credentials | None:
    """The etcd v3 credentials the options give, or None when they give none.

    C{api} is the C{--etcd-api} asked for: authentication needs v3.
    """
    if user_option is None:
        if password_file is not None:
            raise ValueError("--etcd-password-file needs --etcd-user")
        return None
    from twistednode.etcd.v3 import Credentials  # only when a user is given

    if api == "v2":
        raise ValueError("--etcd-user needs the v3 API (not v2)")
    user, colon, password = user_option.partition(":")
    if not user:
        raise ValueError(
            "--etcd-user must be USER or USER:PASSWORD, not " + repr(user_option)
        )
    if colon:
        if password_file is not None:
            raise ValueError(
                "--etcd-user USER:PASSWORD and --etcd-password-file both give "
                "a password: give one"
            )
        return Credentials(user, password)
    if password_file is not None:
        return Credentials(user, read_password(password_file))
    if environ.get(PASSWORD_VARIABLE):
        return Credentials(user, environ[PASSWORD_VARIABLE])
    raise ValueError(
        f"--etcd-user {user}: no password; give USER:PASSWORD, "
        f"--etcd-password-file or ${PASSWORD_VARIABLE}"
    )
