"""C{python -m twistednode COMMAND}: the C{twistednode} console script.

Internal: not part of the public API (that is what C{twistednode} exports).
"""

from twistednode.cli.main import main

if __name__ == "__main__":
    main()
