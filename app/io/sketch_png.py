"""Saving and loading a sketch as an RGB PNG in the lesion class colours.

A sketch file is an ordinary picture anyone can open or draw in another
program: black background and each class in its colour from
:data:`app.core.sketch.SKETCH_CLASSES`, the size of the template slice.
Loading maps exact colours back to labels; any other colour, another size or
a file that is not a PNG is refused with a message that says what is wrong
(never a guess: a sketch is a query, and a silently altered query is worse
than none). Saving is atomic and never replaces an existing file unless asked.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.core.sketch import SKETCH_CLASSES
from app.io.errors import LoadError
from app.io.safe_write import TargetExistsError, WriteError, safe_write

__all__ = [
    "PNG_SIGNATURE",
    "SketchExistsError",
    "SketchFileError",
    "decode_sketch_png",
    "encode_sketch_png",
    "labels_to_rgb",
    "load_sketch_png",
    "rgb_to_labels",
    "save_sketch_png",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A sketch is the size of a CT slice; anything far bigger is not one of ours
# and decoding it would only waste memory.
_MAX_SIDE = 8192


class SketchFileError(LoadError):
    """A sketch file that cannot be read or written; the message says why, for the user."""


class SketchExistsError(SketchFileError):
    """Saving would replace an existing file and overwriting was not allowed."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists")
        self.path = path


def labels_to_rgb(labels: np.ndarray) -> np.ndarray:
    """The sketch as ``uint8 (rows, cols, 3)`` RGB: black background, classes in their colours.

    Raises
    ------
    ValueError
        ``labels`` is not 2-D or holds a value that is no class.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a sketch is a 2-D label image, got shape {labels.shape}")
    lut = np.zeros((256, 3), dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    valid[0] = True
    for cls in SKETCH_CLASSES:
        lut[cls.value] = cls.rgb
        valid[cls.value] = True
    if labels.size and (labels.min() < 0 or labels.max() > 255 or not valid[labels].all()):
        raise ValueError("a sketch holds only 0 (background) and the class values")
    return lut[labels.astype(np.intp)]


def rgb_to_labels(rgb: np.ndarray) -> np.ndarray:
    """Labels of an RGB sketch picture; exact class colours only.

    Raises
    ------
    SketchFileError
        A pixel has a colour that is neither black nor a class colour; the
        message counts them and names one.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SketchFileError(f"a sketch picture is RGB, got an array of shape {rgb.shape}")
    code = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    labels = np.zeros(code.shape, dtype=np.uint8)
    known = code == 0
    for cls in SKETCH_CLASSES:
        r, g, b = cls.rgb
        hit = code == ((r << 16) | (g << 8) | b)
        labels[hit] = cls.value
        known |= hit
    if not known.all():
        row, col = np.argwhere(~known)[0]
        r, g, b = (int(v) for v in rgb[row, col])
        names = ", ".join(f"{c.display_name} {c.rgb}" for c in SKETCH_CLASSES)
        raise SketchFileError(
            f"the picture has {int((~known).sum())} pixels in colours that are no sketch class "
            f"(e.g. RGB ({r}, {g}, {b}) at column {col}, row {row}); a sketch uses black "
            f"for background and {names}"
        )
    return labels


def encode_sketch_png(labels: np.ndarray) -> bytes:
    """The PNG file contents of a sketch (lossless, RGB)."""
    rgb = labels_to_rgb(labels)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV wants BGR
    if not ok:
        raise SketchFileError("the sketch could not be encoded as PNG")
    return data.tobytes()


def decode_sketch_png(data: bytes, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Labels from the contents of a sketch PNG.

    Parameters
    ----------
    data
        The file's bytes.
    expected_shape
        ``(rows, cols)`` of the template slice; a picture of another size is
        refused (scaling would move the sketch off the anatomy it marks).

    Returns
    -------
    np.ndarray
        ``uint8 (rows, cols)`` labels.

    Raises
    ------
    SketchFileError
        Not a PNG, unreadable, 16-bit, translucent, another size, or holding
        colours that are no class.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise SketchFileError("the file is not a PNG picture")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None:
        raise SketchFileError("the PNG file is damaged or incomplete and cannot be read")
    if image.dtype != np.uint8:
        raise SketchFileError("the PNG has 16 bits per channel; a sketch has 8")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        alpha = image[..., 3]
        if not (alpha == 255).all():
            raise SketchFileError(
                "the PNG is partly transparent; a sketch is opaque (black background)"
            )
        image = image[..., :3]
    elif image.shape[2] != 3:
        raise SketchFileError(f"the PNG has {image.shape[2]} channels; a sketch is RGB")
    rows, cols = image.shape[:2]
    if expected_shape is not None and (rows, cols) != tuple(expected_shape):
        er, ec = expected_shape
        raise SketchFileError(
            f"the sketch is {cols}×{rows} pixels but the template slice is {ec}×{er}; "
            "a sketch must be drawn on a slice of the same size"
        )
    return rgb_to_labels(image[..., ::-1])


def load_sketch_png(path: Path | str, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a sketch PNG; see :func:`decode_sketch_png`.

    Raises
    ------
    SketchFileError
        The file is missing, unreadable or not a valid sketch; the message names it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SketchFileError(f"{path} is a folder, not a sketch PNG")
        if size > 16 * _MAX_SIDE * _MAX_SIDE:
            raise SketchFileError(f"{path} is too large to be a sketch")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SketchFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise SketchFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        return decode_sketch_png(data, expected_shape)
    except SketchFileError as exc:
        raise SketchFileError(f"{path.name}: {exc}") from None


def save_sketch_png(path: Path | str, labels: np.ndarray, overwrite: bool = False) -> Path:
    """Write the sketch to ``path`` as a PNG, atomically.

    Written by :func:`app.io.safe_write.safe_write`: no partial file is ever
    left, and a file of that name (even one that appears meanwhile) is kept.

    Raises
    ------
    SketchExistsError
        ``path`` exists and ``overwrite`` is false (the UI asks, then retries).
    SketchFileError
        It could not be written; the message says why.
    """
    data = encode_sketch_png(labels)
    try:
        return safe_write(path, data, overwrite=overwrite)
    except TargetExistsError as exc:
        raise SketchExistsError(exc.path) from None
    except WriteError as exc:
        raise SketchFileError(str(exc)) from None
