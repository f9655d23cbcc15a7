"""Sketch PNG files: lossless round trip in the class colours, clear errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.sketch import SKETCH_CLASSES
from app.io.errors import LoadError
from app.io.sketch_png import (
    SketchExistsError,
    SketchFileError,
    decode_sketch_png,
    encode_sketch_png,
    labels_to_rgb,
    load_sketch_png,
    save_sketch_png,
)


def sample_labels(shape=(24, 32)) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:6, 3:9] = 1
    labels[10:14, 10:20] = 2
    labels[18:22, 25:30] = 3
    return labels


def write_bgr(path, bgr) -> None:
    ok, data = cv2.imencode(".png", bgr)
    assert ok
    path.write_bytes(data.tobytes())


def test_round_trip(tmp_path):
    labels = sample_labels()
    path = save_sketch_png(tmp_path / "sketch.png", labels)
    np.testing.assert_array_equal(load_sketch_png(path, labels.shape), labels)
    assert not list(tmp_path.glob(".*.part"))  # no temporary file left


def test_file_is_rgb_in_the_class_colours(tmp_path):
    labels = sample_labels()
    path = save_sketch_png(tmp_path / "sketch.png", labels)
    rgb = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert rgb.shape == (24, 32, 3)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    for cls in SKETCH_CLASSES:
        row, col = np.argwhere(labels == cls.value)[0]
        assert tuple(int(v) for v in rgb[row, col]) == cls.rgb


def test_saving_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "sketch.png"
    path.write_bytes(b"precious")
    with pytest.raises(SketchExistsError):
        save_sketch_png(path, sample_labels())
    assert path.read_bytes() == b"precious"
    save_sketch_png(path, sample_labels(), overwrite=True)
    np.testing.assert_array_equal(load_sketch_png(path), sample_labels())


def test_saving_into_a_missing_folder_says_so(tmp_path):
    with pytest.raises(SketchFileError, match="does not exist"):
        save_sketch_png(tmp_path / "nope" / "s.png", sample_labels())


def test_wrong_size_names_both_sizes(tmp_path):
    path = save_sketch_png(tmp_path / "s.png", sample_labels((24, 32)))
    with pytest.raises(SketchFileError, match=r"32×24 pixels.*template slice is 64×48"):
        load_sketch_png(path, (48, 64))


def test_unknown_colours_are_refused(tmp_path):
    bgr = labels_to_rgb(sample_labels())[..., ::-1].copy()
    bgr[5, 7] = (10, 20, 30)
    path = tmp_path / "painted.png"
    write_bgr(path, bgr)
    with pytest.raises(SketchFileError, match=r"1 pixels.*RGB \(30, 20, 10\) at column 7, row 5"):
        load_sketch_png(path)


def test_anti_aliased_edges_are_refused():
    # A near-class colour (antialiasing in a paint program) is not silently snapped.
    rgb = labels_to_rgb(sample_labels())
    rgb[2, 3] = (229, 57, 70)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    with pytest.raises(SketchFileError, match="no sketch class"):
        decode_sketch_png(data.tobytes())


def test_grey_and_opaque_rgba_pictures_load(tmp_path):
    grey = np.zeros((6, 7), np.uint8)
    assert not decode_sketch_png(cv2.imencode(".png", grey)[1].tobytes()).any()
    bgra = np.zeros((6, 7, 4), np.uint8)
    bgra[..., 3] = 255
    bgra[1, 1, :3] = SKETCH_CLASSES[1].rgb[::-1]
    labels = decode_sketch_png(cv2.imencode(".png", bgra)[1].tobytes())
    assert labels[1, 1] == 2 and labels.sum() == 2


def test_transparent_picture_is_refused():
    bgra = np.zeros((6, 7, 4), np.uint8)
    with pytest.raises(SketchFileError, match="transparent"):
        decode_sketch_png(cv2.imencode(".png", bgra)[1].tobytes())


def test_sixteen_bit_picture_is_refused():
    data = cv2.imencode(".png", np.zeros((6, 7, 3), np.uint16))[1].tobytes()
    with pytest.raises(SketchFileError, match="16 bits"):
        decode_sketch_png(data)


def test_not_a_png(tmp_path):
    path = tmp_path / "sketch.png"
    path.write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    with pytest.raises(SketchFileError, match="not a PNG"):
        load_sketch_png(path)


def test_truncated_png(tmp_path):
    data = encode_sketch_png(sample_labels())
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SketchFileError, match="damaged"):
        load_sketch_png(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SketchFileError, match="does not exist"):
        load_sketch_png(tmp_path / "none.png")
    with pytest.raises(SketchFileError, match="folder"):
        load_sketch_png(tmp_path)


def test_errors_are_load_errors():
    # Callers that already report LoadError messages handle sketch files too.
    assert issubclass(SketchFileError, LoadError)


def test_labels_that_are_no_class_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError):
        save_sketch_png(tmp_path / "s.png", np.full((3, 3), 9, np.uint8))
    assert not list(tmp_path.iterdir())
