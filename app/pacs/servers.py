"""PACS server descriptions, their URL forms, and the user's list of servers.

A server is named and configured once (Preferences, or ``priorsync pacs add``)
and stored as JSON in the user's configuration folder, without any secret:
passwords and tokens live in the system keyring (:mod:`app.pacs.credentials`).
On the command line a server may also be given as a URL::

    dimse://ORTHANC@pacs.example.org:104          (called AE @ host : port)
    dimse://ORTHANC@pacs.example.org:104?calling=ME&retrieve=move&move_port=11113
    dicomweb+https://user@pacs.example.org/dicom-web
    dicomweb+http://127.0.0.1:8042/dicom-web?auth=bearer
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from app.io.safe_write import safe_write
from app.paths import config_dir

__all__ = [
    "DEFAULT_CALLING_AE",
    "PacsOptions",
    "ServerConfig",
    "ServerConfigError",
    "ServerStore",
    "parse_server_url",
    "renamed",
    "resolve_server",
]

log = logging.getLogger(__name__)

Protocol = Literal["dimse", "dicomweb"]
AuthKind = Literal["none", "basic", "bearer"]
Retrieve = Literal["get", "move"]

DEFAULT_CALLING_AE = "PRIORSYNC"
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable chars, no backslash
_STORE_FILE = "pacs_servers.json"


class ServerConfigError(ValueError):
    """A server description or URL that cannot be used; the message says why."""


@dataclass(frozen=True)
class ServerConfig:
    """One PACS server.

    Parameters
    ----------
    name
        What the user calls it (unique in the store).
    protocol
        ``"dimse"`` (C-ECHO/C-FIND/C-GET/C-MOVE) or ``"dicomweb"`` (QIDO-RS/WADO-RS).
    host, port
        DIMSE peer address (DICOMweb takes both from ``base_url``).
    called_ae, calling_ae
        The server's AE title and ours (DIMSE).
    retrieve
        DIMSE retrieval: ``"get"`` (C-GET, one association) or ``"move"``
        (C-MOVE to our own storage SCP on ``move_port``; the server must know
        ``calling_ae`` at this machine's address and that port).
    move_port
        Port our storage SCP listens on for C-MOVE.
    base_url
        DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``.
    auth
        ``"none"``, ``"basic"`` (``username`` + keyring password) or
        ``"bearer"`` (keyring token).
    username
        For basic authentication.
    ca_file
        PEM file of certificate authorities to trust for HTTPS (default: the system's).
    timeout_s
        Seconds without an answer before a request counts as timed out.
    """

    name: str
    protocol: Protocol
    host: str = ""
    port: int = 0
    called_ae: str = ""
    calling_ae: str = DEFAULT_CALLING_AE
    retrieve: Retrieve = "get"
    move_port: int = 0
    base_url: str = ""
    auth: AuthKind = "none"
    username: str = ""
    ca_file: str = ""
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ServerConfigError(problem)

    def problem(self) -> str | None:
        """Why this description is unusable, or None."""
        if not self.name.strip():
            return "a server needs a name"
        if self.protocol not in ("dimse", "dicomweb"):
            return f"unknown protocol {self.protocol!r} (dimse or dicomweb)"
        if not self.timeout_s > 0:
            return "the timeout must be a positive number of seconds"
        if self.protocol == "dimse":
            if not self.host:
                return "a DIMSE server needs a host"
            if not 0 < self.port < 65536:
                return f"port {self.port} is not a TCP port (1-65535)"
            for label, ae in (("called", self.called_ae), ("calling", self.calling_ae)):
                if not _AE_TITLE.match(ae) or not ae.strip():
                    return f"the {label} AE title {ae!r} is not valid (1-16 printable characters)"
            if self.retrieve not in ("get", "move"):
                return f"unknown retrieval {self.retrieve!r} (get or move)"
            if self.retrieve == "move" and not 0 < self.move_port < 65536:
                return "C-MOVE needs the port of our storage SCP (move_port)"
            return None
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"the DICOMweb base URL {self.base_url!r} must start with http:// or https://"
        if self.auth not in ("none", "basic", "bearer"):
            return f"unknown authentication {self.auth!r} (none, basic or bearer)"
        if self.auth == "basic" and not self.username:
            return "basic authentication needs a user name"
        if self.ca_file and not Path(self.ca_file).is_file():
            return f"the CA file {self.ca_file} does not exist"
        return None

    @property
    def needs_secret(self) -> bool:
        """Whether a password or token must come from the keyring."""
        return self.protocol == "dicomweb" and self.auth != "none"

    def url(self) -> str:
        """The server as a URL (no secret in it), parseable by :func:`parse_server_url`."""
        if self.protocol == "dimse":
            query = f"calling={quote(self.calling_ae)}"
            if self.retrieve == "move":
                query += f"&retrieve=move&move_port={self.move_port}"
            return f"dimse://{quote(self.called_ae)}@{self.host}:{self.port}?{query}"
        parts = urlsplit(self.base_url)
        user = f"{quote(self.username)}@" if self.auth == "basic" else ""
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        url = f"dicomweb+{parts.scheme}://{user}{netloc}{parts.path}"
        return url + ("?auth=bearer" if self.auth == "bearer" else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerConfig:
        """Build from stored JSON; unknown keys are ignored, wrong types rejected."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key in ("port", "move_port"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ServerConfigError(f"{key} must be a whole number")
            elif key == "timeout_s":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ServerConfigError("timeout_s must be a number")
            elif not isinstance(value, str):
                raise ServerConfigError(f"{key} must be text")
            kwargs[key] = value
        if "name" not in kwargs or "protocol" not in kwargs:
            raise ServerConfigError("a stored server lacks its name or protocol")
        return cls(**kwargs)


def parse_server_url(url: str, name: str | None = None) -> ServerConfig:
    """A :class:`ServerConfig` from a ``dimse://`` or ``dicomweb+http(s)://`` URL.

    Raises
    ------
    ServerConfigError
        The URL is not one of the two forms, or a part of it is invalid.
    """
    parts = urlsplit(url.strip())
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        port = parts.port
    except ValueError:
        raise ServerConfigError(f"{url!r} has an invalid port") from None
    if parts.scheme == "dimse":
        if not parts.username or not parts.hostname or port is None:
            raise ServerConfigError(f"{url!r}: write a DIMSE server as dimse://AET@host:port")
        try:
            move_port = int(query.get("move_port", "0"))
        except ValueError:
            raise ServerConfigError(f"{url!r}: move_port must be a number") from None
        return ServerConfig(
            name=name or url,
            protocol="dimse",
            host=parts.hostname,
            port=port,
            called_ae=unquote(parts.username),
            calling_ae=query.get("calling", DEFAULT_CALLING_AE),
            retrieve=query.get("retrieve", "get"),  # type: ignore[arg-type]
            move_port=move_port,
            timeout_s=_timeout(query, url),
        )
    if parts.scheme in ("dicomweb+http", "dicomweb+https"):
        if not parts.hostname:
            raise ServerConfigError(
                f"{url!r}: write a DICOMweb server as dicomweb+https://host/path"
            )
        scheme = parts.scheme.split("+", 1)[1]
        netloc = parts.hostname + (f":{port}" if port else "")
        auth = query.get("auth", "basic" if parts.username else "none")
        return ServerConfig(
            name=name or url,
            protocol="dicomweb",
            base_url=f"{scheme}://{netloc}{parts.path.rstrip('/')}",
            auth=auth,  # type: ignore[arg-type]
            username=unquote(parts.username or ""),
            ca_file=query.get("ca", ""),
            timeout_s=_timeout(query, url),
        )
    raise ServerConfigError(
        f"{url!r} is not a server URL (dimse://AET@host:port or dicomweb+https://host/path)"
    )


def _timeout(query: dict[str, str], url: str) -> float:
    try:
        return float(query.get("timeout", "30"))
    except ValueError:
        raise ServerConfigError(f"{url!r}: timeout must be a number of seconds") from None


@dataclass(frozen=True)
class PacsOptions:
    """PACS preferences beside the server list.

    Parameters
    ----------
    n_priors
        How many of a patient's newest earlier CT studies to fetch by default.
    cache_max_gb
        Size bound of the local study cache (least recently used evicted).
    """

    n_priors: int = 2
    cache_max_gb: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.n_priors <= 50:
            raise ServerConfigError("the number of priors must be between 0 and 50")
        if not self.cache_max_gb > 0:
            raise ServerConfigError("the cache size must be a positive number of GB")

    @property
    def cache_max_bytes(self) -> int:
        return int(self.cache_max_gb * 1024**3)

    @classmethod
    def from_json(cls, data: object) -> PacsOptions:
        if not isinstance(data, dict):
            return cls()
        try:
            n = data.get("n_priors", cls.n_priors)
            gb = data.get("cache_max_gb", cls.cache_max_gb)
            if isinstance(n, bool) or not isinstance(n, int) or isinstance(gb, bool):
                return cls()
            return cls(n_priors=n, cache_max_gb=float(gb))
        except (ServerConfigError, TypeError, ValueError):
            return cls()


class ServerStore:
    """The user's configured servers, one JSON file (no secrets), written atomically.

    Parameters
    ----------
    path
        The file; default ``config_dir()/pacs_servers.json``.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else config_dir() / _STORE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("the PACS server list cannot be read (%s); ignoring it", type(exc).__name__)
            return {}
        return raw if isinstance(raw, dict) else {}

    def _write(self, servers: list[ServerConfig], options: PacsOptions) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {"servers": [s.to_json() for s in servers], "options": asdict(options)}, indent=1
        )
        safe_write(self.path, data.encode("utf-8"), overwrite=True)

    def load(self) -> list[ServerConfig]:
        """Every usable stored server; a damaged file or entry is skipped with a warning."""
        entries = self._read().get("servers", [])
        servers: list[ServerConfig] = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                servers.append(ServerConfig.from_json(entry))
            except (ServerConfigError, TypeError, AttributeError) as exc:
                log.warning("skipping a stored PACS server: %s", exc)
        return servers

    def save(self, servers: list[ServerConfig]) -> None:
        """Replace the stored list (the options are kept).

        Raises
        ------
        ServerConfigError
            Two servers share a name.
        app.io.safe_write.WriteError
            The file cannot be written.
        """
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ServerConfigError("two servers have the same name")
        self._write(servers, self.options())

    def options(self) -> PacsOptions:
        """The stored :class:`PacsOptions` (defaults where missing or invalid)."""
        return PacsOptions.from_json(self._read().get("options"))

    def save_options(self, options: PacsOptions) -> None:
        """Replace the stored options (the servers are kept)."""
        self._write(self.load(), options)

    def get(self, name: str) -> ServerConfig | None:
        return next((s for s in self.load() if s.name == name), None)

    def put(self, server: ServerConfig) -> None:
        """Add ``server`` or replace the one of the same name."""
        others = [s for s in self.load() if s.name != server.name]
        self.save([*others, server])

    def remove(self, name: str) -> bool:
        servers = self.load()
        kept = [s for s in servers if s.name != name]
        if len(kept) == len(servers):
            return False
        self.save(kept)
        return True


def resolve_server(text: str, store: ServerStore | None = None) -> ServerConfig:
    """A configured server by name, else ``text`` parsed as a server URL.

    Raises
    ------
    ServerConfigError
        Neither a configured name nor a valid URL.
    """
    store = store or ServerStore()
    found = store.get(text)
    if found is not None:
        return found
    if "://" in text:
        return parse_server_url(text)
    names = ", ".join(s.name for s in store.load()) or "none"
    raise ServerConfigError(f"no server named {text!r} (configured: {names}) and not a URL")


def renamed(server: ServerConfig, name: str) -> ServerConfig:
    """``server`` under another name."""
    return replace(server, name=name)
