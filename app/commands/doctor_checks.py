"""The checks behind ``priorsync doctor``: each one looks at one part of this machine.

A check is a function without arguments that returns a list of :class:`Finding`.
It never raises for what it is looking for (a missing package, no display, a
corrupt model are findings), and it never imports Qt: the Qt check runs
:func:`app.ui.shell.qt_probe.qt_probe` in a child process (``priorsync doctor --qt-probe``), so a
machine without a display or without Qt's system libraries gets a finding,
not a crash.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

__all__ = [
    "Finding",
    "cache_findings",
    "decoder_findings",
    "model_findings",
    "onnxruntime_findings",
    "package_findings",
    "pacs_findings",
    "pacs_server_findings",
    "python_findings",
    "qt_findings",
]

MIN_PYTHON = (3, 11)
QT_PROBE_TIMEOUT_S = 30.0
_GPU_QUERY_TIMEOUT_S = 10.0
# The checkout's folder, when PriorSync runs from one (scripts/ beside app/).
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report.

    Attributes
    ----------
    label
        What was looked at (``"numpy"``, ``"JPEG 2000"``).
    value
        What was found, in words (a version, a path, a size, a reason).
    ok
        Whether it is there and works.
    needed
        Whether PriorSync needs it (``False``: an optional extra, or information).
        Only findings that are needed and not ok make the doctor exit 1.
    fix
        The command (or step) that fixes a finding that is not ok.
    """

    label: str
    value: str
    ok: bool = True
    needed: bool = True
    fix: str | None = None


def _pip(requirement: str) -> str:
    """The command that installs ``requirement`` into the running environment."""
    if getattr(sys, "frozen", False):
        return "rebuild the standalone app: bash packaging/build.sh"
    return f"{sys.executable} -m pip install '{requirement}'"


def _system_deps_fix() -> str:
    script = _REPO / "scripts" / "system-deps.sh"
    if script.is_file():
        return f"bash {script}"
    return "install the Debian packages Qt needs (listed in PriorSync's scripts/system-deps.sh)"


# -- Python and packages ----------------------------------------------------------


def python_findings() -> list[Finding]:
    """The interpreter's version (PriorSync needs 3.11 or newer) and where it is."""
    version = ".".join(str(v) for v in sys.version_info[:3])
    where = "standalone app" if getattr(sys, "frozen", False) else sys.executable
    ok = sys.version_info[:2] >= MIN_PYTHON
    return [
        Finding(
            "Python",
            f"{version} ({where})",
            ok=ok,
            fix=None if ok else "install Python 3.11 or newer and run bash scripts/demo.sh",
        )
    ]


@dataclass(frozen=True)
class _Package:
    requirement: str  # as in pyproject.toml: "name>=min[,...]"
    module: str  # what is imported
    dists: tuple[str, ...] = ()  # other distribution names that provide the module
    needed: bool = True
    purpose: str = ""

    @property
    def dist(self) -> str:
        return self.requirement.split(">=")[0].split("==")[0].split(",")[0].strip()

    @property
    def minimum(self) -> str | None:
        if ">=" not in self.requirement:
            return None
        return self.requirement.split(">=")[1].split(",")[0].strip()


# The runtime dependencies of pyproject.toml (tests/commands/test_doctor.py keeps
# the two lists equal), then the optional extras.
PACKAGES: tuple[_Package, ...] = (
    _Package("PySide6-Essentials>=6.8,!=6.12.0", "PySide6", ("PySide6",)),
    _Package("pyqtgraph>=0.13.7", "pyqtgraph"),
    _Package("pydicom>=3.0", "pydicom"),
    _Package("pylibjpeg>=2.0", "pylibjpeg"),
    _Package("pylibjpeg-libjpeg>=2.1", "libjpeg"),
    _Package("pylibjpeg-openjpeg>=2.3", "openjpeg"),
    _Package("pylibjpeg-rle>=2.0", "rle"),
    _Package("SimpleITK>=2.3", "SimpleITK"),
    _Package("numpy>=1.26", "numpy"),
    _Package("hnswlib>=0.8", "hnswlib"),
    _Package("opencv-python-headless>=4.9", "cv2", ("opencv-python",)),
    _Package("onnxruntime>=1.17", "onnxruntime", ("onnxruntime-gpu",)),
    _Package("platformdirs>=4", "platformdirs"),
    _Package("psutil>=5.9", "psutil"),
    _Package("onnx>=1.16", "onnx"),
    _Package("pynetdicom>=3.0", "pynetdicom"),
    _Package("dicomweb-client>=0.60", "dicomweb_client"),
    _Package("keyring>=25", "keyring"),
    _Package("requests>=2.31", "requests"),
    _Package("torch==2.13.0", "torch", needed=False, purpose="train extra"),
    _Package("captum>=0.7", "captum", needed=False, purpose="train extra"),
    _Package("pyinstaller>=6.10", "PyInstaller", needed=False, purpose="package extra"),
)


def _release(version: str) -> tuple[int, ...]:
    """Leading numeric release parts (``"2.1.0rc1"`` -> ``(2, 1, 0)``) for a minimum check."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def _installed_version(package: _Package) -> str | None:
    """The installed version, ``""`` when present but unversioned, ``None`` when absent."""
    for dist in (package.dist, *package.dists):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    # A frozen app may carry the module without its metadata.
    try:
        found = importlib.util.find_spec(package.module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return None
    if package.module == "PySide6":
        return ""  # never imported here: the Qt check reports its version
    try:
        module = importlib.import_module(package.module)
    except Exception:  # a broken package is reported as absent with its fix
        return None
    return str(getattr(module, "__version__", ""))


def package_findings() -> list[Finding]:
    """Each dependency's installed version, or what installs it."""
    findings = []
    for package in PACKAGES:
        version = _installed_version(package)
        label = package.dist if not package.purpose else f"{package.dist} ({package.purpose})"
        if version is None:
            findings.append(
                Finding(
                    label,
                    "not installed",
                    ok=False,
                    needed=package.needed,
                    fix=_pip(package.requirement),
                )
            )
            continue
        minimum = package.minimum
        too_old = bool(version) and minimum is not None and _release(version) < _release(minimum)
        findings.append(
            Finding(
                label,
                (version or "present") + (f" (PriorSync needs >= {minimum})" if too_old else ""),
                ok=not too_old,
                needed=package.needed,
                fix=_pip(package.requirement) if too_old else None,
            )
        )
    return findings


# -- Qt ---------------------------------------------------------------------------


def _probe_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, "doctor", "--qt-probe"]
    return [sys.executable, "-m", "app.cli", "doctor", "--qt-probe"]


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _run_qt_probe(platform: str | None) -> tuple[dict[str, object] | None, str]:
    """The probe's report, or ``None`` and the last line Qt printed when it failed."""
    env = dict(os.environ)
    if platform is not None:
        env["QT_QPA_PLATFORM"] = platform
    if not getattr(sys, "frozen", False):
        # The child must import this very `app`, wherever it was started from.
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO), *filter(None, [env.get("PYTHONPATH")])])
    try:
        proc = subprocess.run(
            _probe_command(),
            env=env,
            capture_output=True,
            text=True,
            timeout=QT_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"Qt did not start within {QT_PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return None, f"cannot run the Qt check: {exc.strerror}"
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1]), ""
        except (ValueError, IndexError):
            pass
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    # Qt's own first complaint names the cause ("could not connect to display",
    # "xcb-cursor0 ... is needed"); the abort line after it says nothing more.
    useful = [ln for ln in lines if "qt.qpa" in ln or "needed" in ln or "Error" in ln]
    reason = (useful or lines or [f"exit status {proc.returncode}"])[0]
    return None, reason[:200]


def qt_findings() -> list[Finding]:
    """Qt's platform plugin (does a window open here?) and OpenGL, checked in a child process."""
    display = _has_display()
    forced = os.environ.get("QT_QPA_PLATFORM")
    # Without a display only a headless start can be checked: it still loads Qt
    # and its libraries, and headless commands (match, export, eval) need no more.
    platform = None if (display or forced) else "offscreen"
    report, reason = _run_qt_probe(platform)
    findings: list[Finding] = []
    if report is None:
        findings.append(
            Finding(
                "Qt platform plugin",
                f"{forced or platform or 'default'}: cannot start ({reason})",
                ok=False,
                fix=_system_deps_fix()
                if "connect to display" not in reason
                else "run PriorSync in a desktop session (or set QT_QPA_PLATFORM=offscreen)",
            )
        )
        return findings
    findings.append(
        Finding("Qt", f"Qt {report.get('qt')}, PySide6 {report.get('pyside6')}", needed=True)
    )
    findings.append(Finding("Qt platform plugin", str(report.get("platform"))))
    if not display and not forced:
        findings.append(
            Finding(
                "display",
                "none: the viewer needs a desktop session; match, export and eval run headless",
                ok=False,
                needed=False,
                fix="run `priorsync demo` in a desktop session",
            )
        )
    if "opengl_import" in report:
        findings.append(
            Finding(
                "OpenGL",
                f"Qt's OpenGL modules do not load ({report['opengl_import']})",
                ok=False,
                fix=_system_deps_fix(),
            )
        )
    elif report.get("opengl"):
        # The probe's JSON gives [GL_VENDOR, GL_RENDERER, GL_VERSION] as strings.
        vendor, renderer, version = (str(v) for v in cast(list[object], report["opengl"]))
        findings.append(Finding("OpenGL", f"{version} ({renderer}, {vendor})"))
    else:
        # pyqtgraph paints with Qt's raster engine: a missing GL context costs nothing.
        findings.append(
            Finding(
                "OpenGL",
                "libraries load, no context on this platform (the viewer paints without it)",
                needed=False,
            )
        )
    return findings


# -- onnxruntime and the GPU ------------------------------------------------------


def _gpus_seen() -> list[str]:
    """NVIDIA GPUs the driver reports (nvidia-smi, else /proc), empty when none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            proc = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=_GPU_QUERY_TIMEOUT_S,
                check=False,
            )
            names = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
            if proc.returncode == 0 and names:
                return names
        except (OSError, subprocess.TimeoutExpired):
            pass
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def onnxruntime_findings() -> list[Finding]:
    """onnxruntime's execution providers and whether a GPU is there to use."""
    try:
        import onnxruntime  # noqa: F401 - only whether it imports at all
    except Exception as exc:  # reported, with the fix, by package_findings too
        return [Finding("onnxruntime", f"cannot import ({exc})", ok=False, fix=_pip("onnxruntime"))]
    from app.ml.runtime.model import available_providers

    providers = available_providers()
    gpus = _gpus_seen()
    has_cuda = "CUDAExecutionProvider" in providers
    findings = [
        Finding(
            "execution providers",
            ", ".join(p.removesuffix("ExecutionProvider") for p in providers) or "none",
            ok="CPUExecutionProvider" in providers,
            fix=None if "CPUExecutionProvider" in providers else _pip("onnxruntime"),
        )
    ]
    if gpus and not has_cuda:
        findings.append(
            Finding(
                "GPU",
                f"{', '.join(gpus)} seen, but this onnxruntime has no CUDA provider (runs on CPU)",
                ok=False,
                needed=False,
                fix=(
                    # The standalone app's CPU flavour leaves the CUDA provider out.
                    "build the standalone app's GPU flavour: "
                    "PRIORSYNC_BUNDLE_FLAVOUR=gpu bash packaging/build.sh"
                    if getattr(sys, "frozen", False)
                    else f"{sys.executable} -m pip uninstall -y onnxruntime && "
                    f"{sys.executable} -m pip install onnxruntime-gpu"
                ),
            )
        )
    elif gpus:
        findings.append(Finding("GPU", f"{', '.join(gpus)} (CUDA provider available)"))
    else:
        findings.append(
            Finding(
                "GPU",
                "none seen: the models run on the CPU"
                + (" (the CUDA provider falls back to it)" if has_cuda else ""),
                needed=False,
            )
        )
    return findings


# -- DICOM decoders ---------------------------------------------------------------

# Transfer syntaxes the runtime dependencies promise to open (pyproject.toml:
# pydicom's native ones and the pylibjpeg decoders); others are reported only.
_PYLIBJPEG = "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle"
NEEDED_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)


def decoder_findings() -> list[Finding]:
    """For each transfer syntax pydicom knows, whether a pixel-data decoder is available."""
    try:
        from pydicom.pixels import decoders
        from pydicom.pixels.decoders.base import Decoder
    except Exception as exc:
        return [Finding("pydicom", f"cannot import ({exc})", ok=False, fix=_pip("pydicom>=3.0"))]
    # name -> decoder, e.g. "JPEG2000LosslessDecoder": the name is pydicom's UID keyword.
    found = sorted(
        ((name, obj) for name, obj in vars(decoders).items() if isinstance(obj, Decoder)),
        key=lambda item: str(item[1].UID),
    )
    findings = []
    for name, decoder in found:
        uid = str(decoder.UID)
        needed = uid in NEEDED_TRANSFER_SYNTAXES
        keyword = name.removesuffix("Decoder")
        if decoder.is_available:
            plugins = ", ".join(decoder.available_plugins)
            findings.append(Finding(keyword, plugins or "native", needed=needed))
        else:
            missing = "; ".join(decoder.missing_dependencies) or "no plugin"
            findings.append(
                Finding(
                    keyword,
                    f"no decoder ({missing})",
                    ok=False,
                    needed=needed,
                    fix=_pip(_PYLIBJPEG).replace("'", ""),
                )
            )
    return findings


# -- models -----------------------------------------------------------------------


def _short(identity: str) -> str:
    """``name sha256:<64 hex>`` shortened to 12 hex digits for the screen."""
    name, _, sha = identity.partition(" sha256:")
    return f"{name} sha256:{sha[:12]}…" if sha else identity


def model_findings() -> list[Finding]:
    """The shipped models: found, opened on the CPU, named and hashed (as match reports them)."""
    from app.ml.runtime.model import EmbeddingModel, ModelError
    from app.ml.sketch.models import SketchModels
    from app.paths import models_dir

    fix = (
        "reinstall PriorSync (bash scripts/demo.sh), or point PRIORSYNC_MODELS_DIR "
        f"at a folder with the models (looked in {models_dir()})"
    )
    findings = []
    try:
        model = EmbeddingModel.load(device="cpu")
        findings.append(Finding("anatomy model", f"{_short(model.identity)} ({model.path})"))
    except ModelError as exc:
        findings.append(Finding("anatomy model", str(exc), ok=False, fix=fix))
    try:
        sketch = SketchModels.load(device="cpu")
        for part in sketch.identity.split(", "):
            findings.append(Finding("sketch-query model", _short(part)))
    except ModelError as exc:
        findings.append(Finding("sketch-query models", str(exc), ok=False, fix=fix))
    return findings


# -- caches and demo data ---------------------------------------------------------


def _size_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # unreachable, for the type checker


def cache_findings() -> list[Finding]:
    """The cache folder (writable?), the size of each cache in it, and the demo's CT."""
    from app.paths import cache_dir
    from app.sim.sources import available_sources

    env_fix = "export PRIORSYNC_CACHE_DIR=/a/writable/folder"
    try:
        root = cache_dir()
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-"):
            pass
    except OSError as exc:
        where = os.environ.get("PRIORSYNC_CACHE_DIR") or "the user cache folder"
        return [
            Finding("cache", f"{where} is not writable ({exc.strerror})", ok=False, fix=env_fix)
        ]
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    sizes = {p.name: _size_bytes(p) for p in children}
    findings = [Finding("cache", f"{root} ({_human(sum(sizes.values()))})")]
    findings += [Finding(f"  {name}", _human(n), needed=False) for name, n in sizes.items()]
    local = available_sources(["chest-angio"])
    if local:
        findings.append(Finding("demo CT", "chest-angio is here: the demo needs no download"))
    else:
        has_pip = importlib.util.find_spec("pip") is not None
        findings.append(
            Finding(
                "demo CT",
                "fetched on the first `priorsync demo` (pip download totalsegmentator==2.18.0)"
                if has_pip
                else "absent, and pip is not there to fetch it",
                ok=has_pip,
                fix=None if has_pip else f"{sys.executable} -m ensurepip",
            )
        )
    return findings


# -- PACS ---------------------------------------------------------------------------


def pacs_findings() -> list[Finding]:
    """Whether PACS support is installed; server checks are registered beside it."""
    try:
        importlib.import_module("app.pacs")
    except ModuleNotFoundError as exc:
        if exc.name not in ("app.pacs", "app"):
            return [Finding("PACS", f"PACS support does not load ({exc})", ok=False, needed=False)]
        return [Finding("PACS", "no PACS support installed", needed=False)]
    except Exception as exc:  # a broken optional package is a finding, not a crash
        return [Finding("PACS", f"PACS support does not load ({exc})", ok=False, needed=False)]
    return pacs_server_findings()


def pacs_server_findings() -> list[Finding]:
    """Each configured PACS server: does it answer an echo (C-ECHO or a QIDO-RS request)?

    Servers are optional, so an unreachable one is reported but never makes the
    doctor fail. Patient data is never asked for: an echo carries none.
    """
    from app.pacs.backend import open_backend
    from app.pacs.errors import PacsError
    from app.pacs.servers import ServerConfigError, ServerStore

    try:
        servers = ServerStore().load()
    except (OSError, ServerConfigError) as exc:
        return [Finding("PACS servers", f"settings unreadable ({exc})", ok=False, needed=False)]
    if not servers:
        return [
            Finding(
                "PACS servers",
                "none configured",
                needed=False,
                fix="priorsync pacs add NAME URL (or Preferences in the viewer)",
            )
        ]
    findings = []
    for server in servers:
        try:
            with open_backend(server) as backend:
                backend.echo()
        except (PacsError, ServerConfigError, OSError) as exc:
            findings.append(
                Finding(
                    f"PACS {server.name}",
                    f"not reachable: {str(exc).splitlines()[0]}",
                    ok=False,
                    needed=False,
                    fix=f"priorsync pacs echo {server.name}",
                )
            )
        else:
            findings.append(
                Finding(f"PACS {server.name}", f"answers ({server.url()})", needed=False)
            )
    return findings
