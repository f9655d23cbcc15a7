"""What the standalone app leaves out because PriorSync never loads it, rule by rule.

packaging/priorsync.spec applies :data:`RULES` (module exclusions and dropped
files). Run on a bundle built *without* them, this file reports what each rule
saves there, which is how the savings are measured::

    python packaging/bundle_trim.py dist/priorsync

The bundle's tests (tests/packaging/test_frozen.py: every kept library resolves,
match on compressed DICOM and volume files, export, doctor, viewer and demo on a
real X server) are what shows that nothing needed was cut.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RULES", "Rule", "dropped", "excluded_modules"]

_QT = "PySide6/Qt"


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
    """

    name: str
    why: str
    modules: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


RULES: tuple[Rule, ...] = (
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


def excluded_modules() -> list[str]:
    """Every rule's Python packages, for the spec's ``excludes``."""
    return [m for rule in RULES for m in rule.modules]


def dropped(dest: str) -> Rule | None:
    """The rule that drops the bundle file ``dest`` (relative to ``_internal``), if any."""
    dest = dest.replace("\\", "/")
    for rule in RULES:
        if any(fnmatch.fnmatch(dest, pattern) for pattern in rule.files):
            return rule
    return None


def _report(bundle: Path) -> int:
    internal = bundle / "_internal"
    if not internal.is_dir():
        print(f"bundle_trim: {bundle} holds no _internal folder", file=sys.stderr)
        return 2
    saved = {rule.name: 0 for rule in RULES}
    total = 0
    for path in internal.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        total += size
        rule = dropped(path.relative_to(internal).as_posix())
        if rule is not None:
            saved[rule.name] += size
    exe = bundle / "priorsync"
    total += exe.stat().st_size if exe.is_file() else 0
    mb = 1024 * 1024
    print(f"{bundle}: {total / mb:.1f} MB")
    for rule in RULES:
        print(f"  {rule.name:<34} {saved[rule.name] / mb:6.1f} MB in files")
    print(
        "  (rules that exclude Python packages also shrink the archive inside the priorsync "
        "executable; compare its size between builds)"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python packaging/bundle_trim.py BUNDLE_FOLDER", file=sys.stderr)
        sys.exit(2)
    sys.exit(_report(Path(sys.argv[1])))
