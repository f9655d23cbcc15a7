"""``priorsync pacs ...``: configure PACS servers, test them, search and fetch studies.

SERVER is a configured server's name or a URL (``dimse://AET@host:port``,
``dicomweb+https://user@host/path``). Exit codes: 0 done, 2 bad input or a
server/cache fault (one line on stderr saying which).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from app.commands.exit_codes import EXIT_INPUT, EXIT_OK

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    p = sub.add_parser("echo", help="check that a server answers (C-ECHO or a QIDO-RS request)")
    p.add_argument("server", metavar="SERVER")

    p = sub.add_parser("find", help="list a patient's studies on a server")
    p.add_argument("server", metavar="SERVER")
    p.add_argument("--patient", metavar="ID", default="", help="patient ID")
    p.add_argument("--name", default="", help="patient name (DICOM form, * wildcards: DOE*)")
    p.add_argument("--accession", default="", help="accession number")
    p.add_argument("--from", dest="date_from", default="", metavar="YYYYMMDD")
    p.add_argument("--to", dest="date_to", default="", metavar="YYYYMMDD")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("fetch", help="retrieve a study's CT series into a folder")
    p.add_argument("server", metavar="SERVER")
    p.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to copy it to")

    p = sub.add_parser("add", help="configure a server (a password goes to the system keyring)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("url", metavar="URL", help="dimse://AET@host:port or dicomweb+https://...")
    p.add_argument("--ca-file", default="", help="CA certificates (PEM) to trust for HTTPS")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password or bearer token from standard input into the keyring",
    )

    sub.add_parser("list", help="list the configured servers")

    p = sub.add_parser("remove", help="forget a configured server and its stored secret")
    p.add_argument("name", metavar="NAME")


def _error(message: str) -> int:
    print(f"priorsync pacs: {message}", file=sys.stderr)
    return EXIT_INPUT


def run(args: argparse.Namespace) -> int:
    from app.pacs.errors import PacsError
    from app.pacs.servers import ServerConfigError

    try:
        return _ACTIONS[args.pacs_command](args)
    except (PacsError, ServerConfigError) as exc:
        return _error(str(exc))


def _backend(args: argparse.Namespace):
    from app.pacs.backend import open_backend
    from app.pacs.servers import resolve_server

    return open_backend(resolve_server(args.server))


def _echo(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        backend.echo()
        print(f"{backend.server.name}: the server answers")
    return EXIT_OK


def _find(args: argparse.Namespace) -> int:
    from app.pacs.records import StudyQuery

    try:
        query = StudyQuery(
            patient_id=args.patient,
            patient_name=args.name,
            accession=args.accession,
            date_from=args.date_from,
            date_to=args.date_to,
        )
    except ValueError as exc:
        return _error(str(exc))
    if query.is_empty():
        return _error("give at least one of --patient, --name, --accession, --from, --to")
    with _backend(args) as backend:
        studies = sorted(backend.find_studies(query), key=lambda s: s.sort_key, reverse=True)
    if args.json:
        print(json.dumps([s.to_json() for s in studies], indent=1))
        return EXIT_OK
    if not studies:
        print("no studies found")
        return EXIT_OK
    print(
        f"{'date':<10}  {'modalities':<10}  {'series':>6}  {'images':>6}  description / study UID"
    )
    for s in studies:
        n_series = "" if s.n_series is None else str(s.n_series)
        n_images = "" if s.n_instances is None else str(s.n_instances)
        mods = "/".join(s.modalities)
        print(f"{s.display_date:<10}  {mods:<10}  {n_series:>6}  {n_images:>6}  {s.description}")
        print(f"{'':<10}  {'':<10}  {'':>6}  {'':>6}  {s.study_uid}")
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    from app.pacs.cache import StudyCache
    from app.pacs.retrieve import fetch_study

    out: Path = args.out
    if out.exists() and not out.is_dir():
        return _error(f"{out} is not a folder")
    with _backend(args) as backend:
        last = [-1]

        def progress(done: int, total: int) -> None:
            percent = 100 * done // max(total, 1)
            if percent >= last[0] + 10 or done == total:
                last[0] = percent
                print(f"\rfetching: {done}/{total} images", end="", file=sys.stderr)

        result = fetch_study(backend, args.study, StudyCache(), progress)
        print(file=sys.stderr)
    target = out / result.study.study_uid
    if target.exists():
        return _error(f"{target} already exists; choose another --out folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Copied whole into a temporary sibling, then renamed: never a half study in DIR.
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".priorsync-fetch-"))
        try:
            for series in result.study.series_folders:
                shutil.copytree(series, tmp / series.name)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        from app.io.safe_write import describe_os_error

        return _error(f"cannot write to {out}: {describe_os_error(exc)}")
    source = "the local cache" if result.from_cache else backend.server.name
    print(
        f"{result.study.n_instances} images in {len(result.study.series_folders)} CT series "
        f"from {source} -> {target}"
    )
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from app.pacs.credentials import KeyringUnavailable, set_secret
    from app.pacs.servers import ServerStore, parse_server_url

    server = parse_server_url(args.url, name=args.name)
    if args.ca_file:
        server = replace(server, ca_file=str(Path(args.ca_file).resolve()))
    if args.password_stdin:
        if not server.needs_secret:
            return _error("this server takes no password (add user@ or ?auth=bearer to the URL)")
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            return _error("no password on standard input")
        try:
            set_secret(server, secret)
        except KeyringUnavailable as exc:
            return _error(str(exc))
    ServerStore().put(server)
    print(f"{server.name}: {server.url()}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from app.pacs.servers import ServerStore

    servers = ServerStore().load()
    if not servers:
        print("no servers configured (priorsync pacs add NAME URL)")
    for s in servers:
        print(f"{s.name}: {s.url()}")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from app.pacs.credentials import delete_secret
    from app.pacs.servers import ServerStore

    store = ServerStore()
    server = store.get(args.name)
    if server is None:
        return _error(f"no server named {args.name!r}")
    delete_secret(server)
    store.remove(args.name)
    print(f"{args.name}: removed")
    return EXIT_OK


_ACTIONS = {
    "echo": _echo,
    "find": _find,
    "fetch": _fetch,
    "add": _add,
    "list": _list,
    "remove": _remove,
}
