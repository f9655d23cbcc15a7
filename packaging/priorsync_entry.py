"""Entry script of the standalone (PyInstaller) build: the ``priorsync`` command line.

PyInstaller needs a script file to freeze; this one only hands over to
``app.cli:main``, the same function the ``priorsync`` console script of a pip
install calls, so the frozen app and the installed one behave alike.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
