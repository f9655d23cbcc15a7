"""Passwords and tokens of PACS servers: in the system keyring, never in settings or logs.

Where no keyring backend is available (a headless machine, CI), a secret can
be given for the session through the environment variable
``PRIORSYNC_PACS_SECRET`` (used for every server that needs one); nothing is
ever written to a plain file.
"""

from __future__ import annotations

import logging
import os

import keyring
import keyring.errors
from keyring.backends import fail

from app.pacs.errors import AuthenticationFailed
from app.pacs.servers import ServerConfig

__all__ = [
    "ENV_SECRET",
    "KeyringUnavailable",
    "delete_secret",
    "get_secret",
    "keyring_available",
    "require_secret",
    "set_secret",
]

log = logging.getLogger(__name__)

SERVICE = "priorsync-pacs"
ENV_SECRET = "PRIORSYNC_PACS_SECRET"


class KeyringUnavailable(RuntimeError):
    """No system keyring to keep a secret in; the message says what to do instead."""


def _account(server: ServerConfig) -> str:
    # The server's name and user: one secret per (server, user) pair.
    return f"{server.name}\n{server.username}"


def keyring_available() -> bool:
    """Whether a real keyring backend (not keyring's 'fail' backend) is configured."""
    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring) and backend.priority > 0


def get_secret(server: ServerConfig) -> str | None:
    """The server's password or token from the keyring (else ``PRIORSYNC_PACS_SECRET``)."""
    if keyring_available():
        try:
            secret = keyring.get_password(SERVICE, _account(server))
        except keyring.errors.KeyringError as exc:
            log.warning("the keyring could not be read: %s", type(exc).__name__)
            secret = None
        if secret:
            return secret
    return os.environ.get(ENV_SECRET) or None


def require_secret(server: ServerConfig) -> str:
    """:func:`get_secret`, or :class:`AuthenticationFailed` naming where to put one."""
    secret = get_secret(server)
    if secret is None:
        where = (
            "save it in Preferences or with 'priorsync pacs add --password-stdin'"
            if keyring_available()
            else f"no system keyring is available: set {ENV_SECRET} for this session"
        )
        raise AuthenticationFailed(f"{server.name}: no password or token is stored ({where})")
    return secret


def set_secret(server: ServerConfig, secret: str) -> None:
    """Keep ``secret`` for ``server`` in the system keyring.

    Raises
    ------
    KeyringUnavailable
        No keyring backend is available, or it refused the secret.
    """
    if not keyring_available():
        raise KeyringUnavailable(
            f"no system keyring is available to keep the secret; set {ENV_SECRET} instead"
        )
    try:
        keyring.set_password(SERVICE, _account(server), secret)
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailable(f"the keyring refused the secret ({type(exc).__name__})") from None


def delete_secret(server: ServerConfig) -> None:
    """Forget ``server``'s secret (nothing happens when none is stored)."""
    if not keyring_available():
        return
    try:
        keyring.delete_password(SERVICE, _account(server))
    except keyring.errors.PasswordDeleteError:
        pass
    except keyring.errors.KeyringError as exc:
        log.warning("the keyring could not forget a secret: %s", type(exc).__name__)
