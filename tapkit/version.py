"""The project's version: one number for the twistednode distribution, which carries
the twistednode, minietcd and tapkit packages (pyproject.toml reads it from here)."""

__version__ = "0.1.0"


def version_line(program: str) -> str:
    """What C{twistd -n PROGRAM --version} prints: our version, then Twisted's."""
    from twisted._version import __version__ as twisted_version

    return (
        f"{program} (twistednode) {__version__}, Twisted {twisted_version.public()}\n"
    )
