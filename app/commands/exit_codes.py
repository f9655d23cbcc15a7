"""The exit statuses of every ``priorsync`` command (scripts may rely on them)."""

from __future__ import annotations

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILURE",
    "EXIT_INPUT",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_OUTPUT",
]

EXIT_OK = 0
# The command could not do its work: an optional extra, a data source or a
# precondition of training is missing.
EXIT_FAILURE = 1
# Bad arguments or unusable input (argparse uses 2 for its own usage errors too).
EXIT_INPUT = 2
# The model could not be loaded.
EXIT_MODEL = 3
# The result could not be written.
EXIT_OUTPUT = 4
# Interrupted by the user (Ctrl+C) or cancelled: 128 + SIGINT, as shells report it.
EXIT_CANCELLED = 130
