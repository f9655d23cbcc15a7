"""What goes wrong talking to a PACS, as exceptions whose message is for the user.

Messages name the server and the fault, never a patient identifier (the
patient ID a user searched for is theirs to see, but messages reach the log).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BadInstances",
    "CacheFailed",
    "PacsError",
    "ServerRefused",
    "ServerUnreachable",
    "StudyNotFound",
    "TlsFailed",
    "TransferCancelled",
    "TransferIncomplete",
    "TransferTimedOut",
]


class PacsError(Exception):
    """Any PACS fault; ``str(error)`` is one line for the user."""


class ServerUnreachable(PacsError):
    """Nothing answers at the server's address (down, wrong host or port)."""


class ServerRefused(PacsError):
    """The server answered but refused the association (e.g. wrong AE title)."""


class AuthenticationFailed(PacsError):
    """Wrong or missing credentials (HTTP 401/403)."""


class TlsFailed(PacsError):
    """The TLS handshake or certificate check failed."""


class TransferTimedOut(PacsError):
    """The server stopped answering in the middle of a request."""


class StudyNotFound(PacsError):
    """The study (or a part of it) is not, or no longer, on the server."""


class TransferIncomplete(PacsError):
    """Fewer instances arrived than the server announced."""


class BadInstances(PacsError):
    """What arrived is not a usable CT study (corrupt, or no CT images)."""


class CacheFailed(PacsError):
    """The local study cache could not be written (full, read-only)."""


class TransferCancelled(PacsError):
    """The user cancelled the transfer."""
