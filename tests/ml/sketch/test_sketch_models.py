"""The sketch models wrapper: loading, pairing checks, codes, and refused sketches."""

from __future__ import annotations

import numpy as np
import pytest
from sketch_helpers import TOY_DIM, write_toy_abnormality_model, write_toy_sketch_model

from app.ml.runtime.model import ModelError
from app.ml.runtime.preprocess import prepare_slices
from app.ml.sketch.models import SketchError, SketchModels


def test_load_reads_the_contract(toy_sketch_models, toy_sketch_paths):
    import hashlib

    m = toy_sketch_models
    assert m.abnormality_dim == TOY_DIM
    assert m.classes == ("mass", "hypodense", "hyperdense")
    assert m.default_weight == 0.5
    assert m.provider == "CPUExecutionProvider"
    assert m.spec.size == 32
    abn_sha = hashlib.sha256(toy_sketch_paths[0].read_bytes()).hexdigest()
    assert m.abnormality_sha256 == abn_sha
    assert abn_sha in m.identity and m.sketch_sha256 in m.identity


def test_missing_file_says_how_to_get_one(tmp_path, toy_sketch_paths):
    with pytest.raises(ModelError, match="not found.*train-sketch"):
        SketchModels.load(tmp_path / "nope.onnx", toy_sketch_paths[1], device="cpu")


def test_corrupt_file_is_a_model_error(tmp_path, toy_sketch_paths):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match="bad.onnx"):
        SketchModels.load(toy_sketch_paths[0], bad, device="cpu")


def test_swapped_files_are_refused(toy_sketch_paths):
    abn, sk = toy_sketch_paths
    with pytest.raises(ModelError, match="needs input 'slices'"):
        SketchModels.load(sk, abn, device="cpu")


def test_mismatched_pair_is_refused(tmp_path, toy_sketch_paths):
    short = write_toy_sketch_model(tmp_path / "short.onnx", out_dim=16)
    with pytest.raises(ModelError, match="not a matching pair"):
        SketchModels.load(toy_sketch_paths[0], short, device="cpu")
    classes = write_toy_sketch_model(
        tmp_path / "classes.onnx", {"priorsync.lesion_classes": '["mass"]'}
    )
    with pytest.raises(ModelError, match="different lesion classes"):
        SketchModels.load(toy_sketch_paths[0], classes, device="cpu")


@pytest.mark.parametrize("weight", ["1.5", "abc", "-0.1"])
def test_bad_default_weight_is_refused(tmp_path, weight):
    abn = write_toy_abnormality_model(tmp_path / "a.onnx")
    sk = write_toy_sketch_model(tmp_path / "s.onnx", {"priorsync.default_weight": weight})
    with pytest.raises(ModelError, match="default_weight"):
        SketchModels.load(abn, sk, device="cpu")


def test_classes_other_than_the_sketch_classes_are_refused(tmp_path):
    # Both files agree with each other, but not with what the sketch canvas draws.
    swapped = {"priorsync.lesion_classes": '["hypodense", "mass", "hyperdense"]'}
    abn = write_toy_abnormality_model(tmp_path / "a.onnx", swapped)
    sk = write_toy_sketch_model(tmp_path / "s.onnx", swapped)
    with pytest.raises(ModelError, match=r"sketches are drawn with \['mass', 'hypodense'"):
        SketchModels.load(abn, sk, device="cpu")


def test_missing_class_metadata_is_refused(tmp_path):
    abn = write_toy_abnormality_model(tmp_path / "a.onnx", {"priorsync.lesion_classes": ""})
    sk = write_toy_sketch_model(tmp_path / "s.onnx")
    with pytest.raises(ModelError, match="lesion_classes"):
        SketchModels.load(abn, sk, device="cpu")


def test_abnormality_vectors_match_prepared_inputs(toy_sketch_models, ct_phantom):
    vol = ct_phantom(n_slices=10)
    seen = []
    codes = toy_sketch_models.abnormality_vectors(
        vol, batch_size=4, progress=lambda d, n: seen.append((d, n))
    )
    assert codes.shape == (10, TOY_DIM)
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-5)
    direct = toy_sketch_models.abnormality_inputs(
        prepare_slices(vol, [3, 7], toy_sketch_models.spec)
    )
    assert np.allclose(codes[[3, 7]], direct, atol=1e-6)
    assert seen == [(4, 10), (8, 10), (10, 10)]


def _blob(shape, center, radius, value=1):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = np.zeros(shape, dtype=np.uint8)
    out[(rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2] = value
    return out


def test_sketch_vector_is_a_unit_code_that_depends_on_place_and_class(
    toy_sketch_models, ct_phantom
):
    vol = ct_phantom(n_slices=10)
    shape = vol.voxels.shape[1:]
    left = toy_sketch_models.sketch_vector(vol, 5, _blob(shape, (32, 22), 5))
    right = toy_sketch_models.sketch_vector(vol, 5, _blob(shape, (32, 42), 5))
    other_class = toy_sketch_models.sketch_vector(vol, 5, _blob(shape, (32, 22), 5, value=2))
    assert left.shape == (TOY_DIM,)
    assert abs(np.linalg.norm(left) - 1.0) < 1e-5
    assert float(left @ right) < 0.99
    assert float(left @ other_class) < 0.99


def test_empty_sketch_is_refused(toy_sketch_models, ct_phantom):
    vol = ct_phantom(n_slices=5)
    with pytest.raises(SketchError, match="Draw the abnormality first"):
        toy_sketch_models.sketch_vector(vol, 2, np.zeros(vol.voxels.shape[1:], np.uint8))


def test_sketch_outside_the_body_is_refused(toy_sketch_models, ct_phantom):
    vol = ct_phantom(n_slices=5)
    labels = _blob(vol.voxels.shape[1:], (3, 3), 3)  # the air in a corner
    with pytest.raises(SketchError, match="outside the body"):
        toy_sketch_models.sketch_vector(vol, 2, labels)


def test_sketch_of_wrong_shape_or_labels_is_refused(toy_sketch_models, ct_phantom):
    vol = ct_phantom(n_slices=5)
    with pytest.raises(SketchError, match="draw it on the template"):
        toy_sketch_models.sketch_vector(vol, 2, np.ones((10, 10), np.uint8))
    with pytest.raises(SketchError, match="label values"):
        toy_sketch_models.sketch_vector(vol, 2, _blob(vol.voxels.shape[1:], (32, 32), 5, 7))
    with pytest.raises(SketchError, match="not in the template"):
        toy_sketch_models.sketch_vector(vol, 99, _blob(vol.voxels.shape[1:], (32, 32), 5))
    assert issubclass(SketchError, ValueError)


def test_shipped_models_follow_the_contract():
    """The shipped pair loads through the default paths and fits the anatomy model's frame."""
    from app.ml.runtime.model import EmbeddingModel
    from app.ml.sketch.models import default_sketch_model_paths

    abn, sk = default_sketch_model_paths()
    if not (abn.is_file() and sk.is_file()):
        pytest.skip("the sketch models are not in models/ (train them: priorsync train-sketch)")
    models = SketchModels.load(device="cpu")
    anatomy = EmbeddingModel.load(device="cpu")
    assert models.abnormality_dim == 64
    assert models.classes == ("mass", "hypodense", "hyperdense")
    assert 0.0 <= models.default_weight <= 1.0
    assert (models.spec.size, models.spec.pixel_mm) == (anatomy.spec.size, anatomy.spec.pixel_mm)
    assert models.spec.windows == anatomy.spec.windows


def test_sketch_classes_are_the_trained_lesion_classes():
    # The canvas draws SKETCH_CLASSES; the training inserts LESION_CLASSES and
    # writes them into the models' metadata, which the loader checks.
    from app.core.sketch import SKETCH_CLASSES
    from app.sim.lesions import LESION_CLASSES

    assert tuple(c.name for c in SKETCH_CLASSES) == LESION_CLASSES
    assert [c.value for c in SKETCH_CLASSES] == list(range(1, len(LESION_CLASSES) + 1))
