"""What the standalone app leaves out because PriorSync never loads it, rule by rule.

packaging/priorsync.spec applies :data:`RULES` (module exclusions and dropped
files) of the flavour it builds (:func:`flavour`: ``cpu`` by default, ``gpu``
with ``PRIORSYNC_BUNDLE_FLAVOUR=gpu``; CI builds ``cpu``). Run on a bundle built
*without* them, this file reports what each rule saves there, which is how the
savings are measured::

    python packaging/bundle_trim.py dist/priorsync

After the build, ``python packaging/bundle_trim.py --strip-debug dist/priorsync``
(packaging/build.sh runs it) removes the debugging sections that some libraries
carry (the build machine's libpython, hnswlib, the JPEG codecs) and prints what
that saved. Only DWARF debug data goes: no code, no symbol a loader needs.

The bundle's tests (tests/packaging/test_frozen.py: every kept library resolves,
match on compressed DICOM and volume files, export, doctor, viewer and demo on a
real X server) are what shows that nothing needed was cut.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FLAVOURS", "RULES", "Rule", "dropped", "excluded_modules", "flavour", "strip_debug"]

_QT = "PySide6/Qt"
FLAVOURS = ("cpu", "gpu")


@dataclass(frozen=True)
class Rule:
    """One thing the bundle leaves out.

    Attributes
    ----------
    name
        Short name, for the report.
    why
        Why PriorSync never loads it.
    modules
        Python packages left out of the analysis (PyInstaller ``excludes``).
    files
        Glob patterns of bundle paths (relative to ``_internal``) that are dropped.
    flavours
        The bundle flavours (:data:`FLAVOURS`) that apply the rule.
    """

    name: str
    why: str
    modules: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    flavours: tuple[str, ...] = FLAVOURS


RULES: tuple[Rule, ...] = (
    Rule(
        "CUDA and TensorRT providers",
        "the CPU bundle runs the model on onnxruntime's CPU provider; without these two "
        "libraries onnxruntime cannot open a CUDA session and the app uses the CPU, as on a "
        "machine without a GPU (app.ml.runtime.model.available_providers no longer lists them)",
        files=(
            "onnxruntime/capi/libonnxruntime_providers_cuda.so",
            "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
        ),
        flavours=("cpu",),
    ),
    # requests, urllib3, certifi and cryptography stay: the PACS client (DICOMweb over
    # requests, TLS with a CA file, keyring back-ends) needs them.
    Rule(
        "Qt translations",
        "PriorSync installs no QTranslator: its interface is English only",
        files=(f"{_QT}/translations/*",),
    ),
    Rule(
        "Qt platforms without a desktop",
        "the viewer runs on X11 (xcb) or Wayland, headless commands on offscreen; eglfs, "
        "linuxfb, vnc, minimal and vkkhrdisplay are for embedded screens, and the evdev/tuio "
        "input plugins for those",
        files=(
            f"{_QT}/plugins/platforms/libqeglfs.so",
            f"{_QT}/plugins/platforms/libqlinuxfb.so",
            f"{_QT}/plugins/platforms/libqminimal.so",
            f"{_QT}/plugins/platforms/libqminimalegl.so",
            f"{_QT}/plugins/platforms/libqvkkhrdisplay.so",
            f"{_QT}/plugins/platforms/libqvnc.so",
            f"{_QT}/plugins/egldeviceintegrations/*",
            f"{_QT}/plugins/generic/*",
            # Linked only by the plugins above.
            f"{_QT}/lib/libQt6EglFSDeviceIntegration.so*",
            f"{_QT}/lib/libQt6EglFsKmsSupport.so*",
            f"{_QT}/lib/libQt6Network.so*",
            "libQt6EglFSDeviceIntegration.so*",
            "libQt6EglFsKmsSupport.so*",
            "libQt6Network.so*",
        ),
    ),
    Rule(
        "Qt image formats",
        "PriorSync reads only SVG icons (the svg plugin) and writes PNG (built into Qt); "
        "medical images go through pydicom and SimpleITK, never Qt",
        files=tuple(
            f"{_QT}/plugins/imageformats/libq{fmt}.so"
            for fmt in ("gif", "icns", "ico", "jpeg", "tga", "tiff", "wbmp", "webp")
        ),
    ),
)


def flavour() -> str:
    """The flavour to build: ``$PRIORSYNC_BUNDLE_FLAVOUR`` (default ``cpu``).

    Raises
    ------
    ValueError
        For a name not in :data:`FLAVOURS`.
    """
    name = os.environ.get("PRIORSYNC_BUNDLE_FLAVOUR", "cpu").strip().lower() or "cpu"
    if name not in FLAVOURS:
        raise ValueError(f"PRIORSYNC_BUNDLE_FLAVOUR={name!r}: use one of {', '.join(FLAVOURS)}")
    return name


def _rules(which: str | None) -> list[Rule]:
    which = flavour() if which is None else which
    return [rule for rule in RULES if which in rule.flavours]


def excluded_modules(which: str | None = None) -> list[str]:
    """Every rule's Python packages, for the spec's ``excludes`` (default: :func:`flavour`)."""
    return [m for rule in _rules(which) for m in rule.modules]


def dropped(dest: str, which: str | None = None) -> Rule | None:
    """The rule that drops the bundle file ``dest`` (relative to ``_internal``), if any.

    ``which`` is the flavour (default: :func:`flavour`).
    """
    dest = dest.replace("\\", "/")
    for rule in _rules(which):
        if any(fnmatch.fnmatch(dest, pattern) for pattern in rule.files):
            return rule
    return None


def _has_debug_sections(path: Path, readelf: str) -> bool:
    proc = subprocess.run(
        [readelf, "-S", "-W", str(path)], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and ".debug_info" in proc.stdout


def strip_debug(bundle: Path) -> tuple[int, int]:
    """Remove the DWARF sections of the bundle's libraries; returns (files, bytes saved).

    Libraries that auditwheel renamed and patched (the ``*.libs`` folders of
    wheels) are left alone: rewriting a patched file is where ``strip`` has
    broken libraries before. Needs binutils (``strip``, ``readelf``); without
    them nothing is changed.
    """
    strip, readelf = shutil.which("strip"), shutil.which("readelf")
    if strip is None or readelf is None:
        print("bundle_trim: no strip/readelf (binutils): debug sections kept", file=sys.stderr)
        return 0, 0
    files = saved = 0
    internal = bundle / "_internal"
    for path in sorted(internal.rglob("*.so*")):
        rel = path.relative_to(internal).as_posix()
        if path.is_symlink() or not path.is_file() or ".libs/" in rel:
            continue
        if not _has_debug_sections(path, readelf):
            continue
        before = path.stat().st_size
        subprocess.run([strip, "--strip-debug", str(path)], check=True)
        files += 1
        saved += before - path.stat().st_size
    return files, saved


def _report(bundle: Path) -> int:
    internal = bundle / "_internal"
    if not internal.is_dir():
        print(f"bundle_trim: {bundle} holds no _internal folder", file=sys.stderr)
        return 2
    which = flavour()
    saved = {rule.name: 0 for rule in RULES}
    total = 0
    for path in internal.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        total += size
        # Every rule, whichever flavour: what each would save on this bundle.
        rule = next(
            (r for f in FLAVOURS if (r := dropped(path.relative_to(internal).as_posix(), f))),
            None,
        )
        if rule is not None:
            saved[rule.name] += size
    exe = bundle / "priorsync"
    total += exe.stat().st_size if exe.is_file() else 0
    mb = 1024 * 1024
    print(f"{bundle}: {total / mb:.1f} MB")
    for rule in RULES:
        applied = "" if which in rule.flavours else f"  (not in the {which} flavour)"
        print(f"  {rule.name:<34} {saved[rule.name] / mb:6.1f} MB in files{applied}")
    print(
        "  (rules that exclude Python packages also shrink the archive inside the priorsync "
        "executable; compare its size between builds)"
    )
    return 0


def _strip_main(bundle: Path) -> int:
    if not (bundle / "_internal").is_dir():
        print(f"bundle_trim: {bundle} holds no _internal folder", file=sys.stderr)
        return 2
    files, saved = strip_debug(bundle)
    print(f"debug sections stripped from {files} libraries: {saved / (1024 * 1024):.1f} MB saved")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--strip-debug":
        sys.exit(_strip_main(Path(args[1])))
    if len(args) != 1:
        print(
            "usage: python packaging/bundle_trim.py [--strip-debug] BUNDLE_FOLDER", file=sys.stderr
        )
        sys.exit(2)
    sys.exit(_report(Path(args[0])))
