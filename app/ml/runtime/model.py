"""Running the ONNX slice-embedding model (onnxruntime, CUDA when present, else CPU).

The model file is read once: its bytes give both the session and the sha256
that identifies the model everywhere (index caches, ``priorsync match`` output),
so a cache can never be paired with a different model that happens to share
a file name.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from app.core.volume import Volume
from app.ml.runtime.preprocess import InputSpec, prepare_slices
from app.paths import models_dir

if TYPE_CHECKING:  # imported where a session is opened, not at import time
    import onnxruntime as ort

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddingModel",
    "ModelError",
    "OpenedModel",
    "available_providers",
    "choose_providers",
    "default_model_path",
    "embed_in_batches",
    "open_model_file",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "priorsync-embed.onnx"
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_INPUT = "slices"
# Provider libraries onnxruntime opens on demand. A build still names a provider
# whose library was left out (the standalone app's CPU flavour drops these two).
_PROVIDER_LIBRARIES = {
    _CUDA: "onnxruntime_providers_cuda",
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
}
_OUTPUTS = ("embedding", "features")


class ModelError(Exception):
    """The embedding model is missing, unreadable or not a PriorSync model."""


def default_model_path() -> Path:
    """The shipped model: ``PRIORSYNC_MODEL`` if set, else ``models_dir()/priorsync-embed.onnx``."""
    env = os.environ.get("PRIORSYNC_MODEL")
    return Path(env) if env else models_dir() / DEFAULT_MODEL_NAME


def available_providers() -> list[str]:
    """onnxruntime's execution providers whose libraries are installed.

    ``onnxruntime.get_available_providers()`` names what the build was compiled
    with, also when a provider's library is missing beside it.
    """
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"

    def installed(provider: str) -> bool:
        library = _PROVIDER_LIBRARIES.get(provider)
        return library is None or any(capi.glob(f"*{library}.*"))

    return [p for p in ort.get_available_providers() if installed(p)]


def choose_providers(available: Sequence[str], device: str = "auto") -> list[str]:
    """Execution providers to request, best first.

    Parameters
    ----------
    available
        What this onnxruntime offers (:func:`available_providers`).
    device
        ``"auto"`` (CUDA when the build has it, else CPU), ``"cpu"`` or ``"cuda"``.
        ``PRIORSYNC_DEVICE`` sets it from the environment.

    Raises
    ------
    ModelError
        ``device="cuda"`` with a build that lacks CUDA.
    """
    device = device.lower()
    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"unknown device {device!r}: use auto, cpu or cuda")
    has_cuda = _CUDA in available
    if device == "cuda" and not has_cuda:
        raise ModelError(
            "CUDA was requested but this onnxruntime has no CUDA support "
            "(install onnxruntime-gpu in place of onnxruntime)"
        )
    if device != "cpu" and has_cuda:
        # CPU stays listed: onnxruntime runs on it any node CUDA cannot.
        return [_CUDA, _CPU]
    return [_CPU]


def _cpu_threads() -> int:
    """Intra-op threads: the physical cores, at most 8 (more rarely helps a small CNN)."""
    env = os.environ.get("PRIORSYNC_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except Exception:  # psutil can fail in odd containers; the logical count is fine.
        cores = os.cpu_count() or 1
    return max(1, min(int(cores), 8))


@dataclass
class _Loaded:
    session: ort.InferenceSession
    provider: str


def _open_session(data: bytes, providers: list[str], path: Path) -> _Loaded:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _cpu_threads()
    # One graph, run sequentially: inter-op parallelism only adds contention on few cores.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Worker threads that keep spinning after a run steal the cores from the
    # numpy/cv2 work that follows each query (saliency, repaint): measured
    # 28-30 ms per saliency pair with spinning, 9-19 ms without.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: onnxruntime's warnings are not for users
    if providers[0] == _CUDA:
        # The CUDA build on a machine without a GPU (or without CUDA/cuDNN
        # libraries) prints an error and a warning from C++ straight to stderr
        # before falling back to the CPU; the fallback is reported below instead.
        ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        if providers[0] == _CUDA:
            # A CUDA build without a usable device/driver: the CPU still works.
            log.warning("CUDA session failed (%s); using the CPU", type(exc).__name__)
            return _open_session(data, [_CPU], path)
        raise ModelError(f"cannot load the model {path}: not a valid ONNX model ({exc})") from None
    finally:
        if providers[0] == _CUDA:
            ort.set_default_logger_severity(3)
    # onnxruntime silently drops CUDA when no device is present: report the truth.
    provider = session.get_providers()[0]
    if providers[0] == _CUDA and provider != _CUDA:
        log.info("CUDA is not usable here (no GPU, driver or CUDA libraries); using the CPU")
    return _Loaded(session, provider)


@dataclass
class OpenedModel:
    """An ONNX model file opened and checked by :func:`open_model_file`.

    Attributes
    ----------
    path
        The file.
    sha256
        Hex sha256 of its bytes: the model's identity.
    session
        The onnxruntime ``InferenceSession``.
    provider
        Execution provider actually in use.
    metadata
        The model's custom metadata props.
    """

    path: Path
    sha256: str
    session: ort.InferenceSession
    provider: str
    metadata: dict[str, str]


def open_model_file(
    path: Path,
    device: str | None,
    *,
    kind: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    missing_hint: str,
) -> OpenedModel:
    """Read, hash and open an ONNX model file, checking its input and output names.

    Shared by every PriorSync model (slice embedding, abnormality, sketch) so
    all report problems the same way.

    Parameters
    ----------
    path
        The ONNX file.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; ``PRIORSYNC_DEVICE`` or ``"auto"`` when ``None``.
    kind
        What the model is, for messages (``"embedding model"``).
    inputs, outputs
        Names the graph must have.
    missing_hint
        What the user can do when the file is absent.

    Raises
    ------
    ModelError
        Missing, unreadable, empty, not ONNX, or without the named inputs/outputs.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path} ({missing_hint})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file {path}: {exc.strerror}") from None
    if not data:
        raise ModelError(f"the model file {path} is empty")
    sha = hashlib.sha256(data).hexdigest()
    providers = choose_providers(
        available_providers(), device or os.environ.get("PRIORSYNC_DEVICE", "auto")
    )
    loaded = _open_session(data, providers, path)
    session = loaded.session
    have_in = {i.name for i in session.get_inputs()}
    have_out = {o.name for o in session.get_outputs()}
    if not set(inputs) <= have_in or not set(outputs) <= have_out:
        needs = f"input {inputs[0]!r}" if len(inputs) == 1 else f"inputs {list(inputs)}"
        raise ModelError(
            f"{path} is not a PriorSync {kind}: it needs {needs} and "
            f"outputs {list(outputs)}, it has {sorted(have_in)} -> {sorted(have_out)}"
        )
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return OpenedModel(path, sha, session, loaded.provider, meta)


class EmbeddingModel:
    """A loaded slice-embedding model.

    Use :meth:`load`; the constructor is internal.

    Attributes
    ----------
    path
        The model file.
    name
        Model name (metadata ``priorsync.name`` and ``priorsync.version``, else the file stem).
    sha256
        Hex sha256 of the model file: its identity.
    provider
        Execution provider in use (``"CUDAExecutionProvider"`` or ``"CPUExecutionProvider"``).
    spec
        The input the model expects (:class:`~app.ml.runtime.preprocess.InputSpec`).
    embedding_dim
        Length of an embedding.
    metadata
        All custom metadata props of the model.
    """

    def __init__(
        self,
        path: Path,
        sha256: str,
        session: ort.InferenceSession,
        provider: str,
        metadata: dict[str, str],
    ) -> None:
        self.path = path
        self.sha256 = sha256
        self._session = session
        self.provider = provider
        self.metadata = metadata
        try:
            self.spec = InputSpec.from_metadata(metadata)
        except ValueError as exc:
            raise ModelError(f"{path} is not a PriorSync embedding model: {exc}") from None
        base = metadata.get("priorsync.name") or path.stem
        version = metadata.get("priorsync.version", "")
        self.name = f"{base}-{version}" if version and version not in base else base
        out_shape = {o.name: o.shape for o in session.get_outputs()}
        dim = out_shape["embedding"][-1]
        if not isinstance(dim, int):
            dim = int(metadata.get("priorsync.embedding_dim", "0") or 0)
        self.embedding_dim = int(dim)

    @classmethod
    def load(cls, path: Path | str | None = None, device: str | None = None) -> EmbeddingModel:
        """Load a model file (the shipped one when ``path`` is ``None``).

        Parameters
        ----------
        path
            ONNX file; :func:`default_model_path` when ``None``.
        device
            ``"auto"``, ``"cpu"`` or ``"cuda"``; ``PRIORSYNC_DEVICE`` or ``"auto"`` when ``None``.

        Raises
        ------
        ModelError
            Missing, unreadable, corrupt, or lacking the PriorSync inputs/outputs/metadata.
        """
        opened = open_model_file(
            Path(path) if path is not None else default_model_path(),
            device,
            kind="embedding model",
            inputs=(_INPUT,),
            outputs=_OUTPUTS,
            missing_hint=(
                "reinstall PriorSync, or train one with `priorsync train`, "
                "or point PRIORSYNC_MODEL at an .onnx file"
            ),
        )
        model = cls(opened.path, opened.sha256, opened.session, opened.provider, opened.metadata)
        log.info("model %s (%s) on %s", model.name, opened.sha256[:12], model.provider)
        return model

    @property
    def identity(self) -> str:
        """``"<name> sha256:<hash>"``: what ``priorsync match`` reports as the model."""
        return f"{self.name} sha256:{self.sha256}"

    # -- inference -------------------------------------------------------------
    def _run(self, batch: np.ndarray, with_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        names = list(_OUTPUTS) if with_features else [_OUTPUTS[0]]
        out = self._session.run(names, {_INPUT: batch})
        emb = np.asarray(out[0], dtype=np.float32)
        # Re-normalise: cheap, and makes inner products cosines even if an
        # exported graph drifts by a rounding error.
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, 1e-12)
        feats = np.asarray(out[1], dtype=np.float32) if with_features else None
        return emb, feats

    def embed_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` of already prepared inputs ``(N, C, S, S)``."""
        return self._run(np.ascontiguousarray(inputs, dtype=np.float32), False)[0]

    @overload
    def embed_slices(
        self,
        volume: Volume,
        indices: Sequence[int] | np.ndarray,
        with_features: Literal[False] = False,
    ) -> np.ndarray: ...

    @overload
    def embed_slices(
        self, volume: Volume, indices: Sequence[int] | np.ndarray, with_features: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def embed_slices(
        self,
        volume: Volume,
        indices: Sequence[int] | np.ndarray,
        with_features: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Embed some slices of a volume (one batch).

        Parameters
        ----------
        volume
            Display-oriented volume.
        indices
            Slice indices.
        with_features
            Also return the last convolutional feature maps ``(N, K, h, w)``.

        Returns
        -------
        np.ndarray or (np.ndarray, np.ndarray)
            L2-normalised embeddings ``(N, D)`` float32 [, feature maps].
        """
        batch = prepare_slices(volume, np.asarray(indices, dtype=np.intp), self.spec)
        emb, feats = self._run(batch, with_features)
        if feats is not None:
            return emb, feats
        return emb

    def embed_volume(
        self,
        volume: Volume,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed every slice of a volume.

        Parameters
        ----------
        volume
            Display-oriented volume.
        batch_size
            Slices per inference call (memory vs. call overhead).
        progress
            Called with ``(slices_done, n_slices)`` after each batch.

        Returns
        -------
        np.ndarray
            ``(n_slices, D)`` float32, L2-normalised.
        """
        return embed_in_batches(
            volume,
            self.embedding_dim,
            self.embed_slices,
            batch_size,
            progress,
        )


def embed_in_batches(
    volume: Volume,
    dim: int,
    embed: Callable[[Volume, np.ndarray], np.ndarray],
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``embed(volume, indices) -> (len(indices), dim)`` over every slice, in batches.

    Parameters
    ----------
    volume
        The series whose slices are coded.
    dim
        Length of one code.
    embed
        Codes of a batch of slice indices of ``volume``.
    batch_size
        Slices per call (memory vs. call overhead).
    progress
        Called with ``(slices_done, n_slices)`` after each batch.

    Returns
    -------
    np.ndarray
        ``(n_slices, dim)`` float32.
    """
    n = volume.n_slices
    out = np.empty((n, dim), dtype=np.float32)
    batch_size = max(1, int(batch_size))
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        out[idx] = embed(volume, idx)
        if progress is not None:
            progress(int(idx[-1]) + 1, n)
    return out
