"""Sketch-query training: batches, loss, a short deterministic run, ONNX export, shipped models."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from app.ml.runtime.preprocess import InputSpec, window_channels
from app.paths import models_dir
from app.sim.lesions import LESION_CLASSES, insert_lesion_2d, random_lesion_mask_2d
from app.sim.sketches import sketch_from_mask

torch = pytest.importorskip("torch", reason="the training tests need PyTorch (the train extra)")
ort = pytest.importorskip("onnxruntime", reason="the export tests need onnxruntime")

from app.ml.train.sketch.data import (  # noqa: E402
    HUBank,
    LesionBatchSampler,
    SketchDataConfig,
)
from app.ml.train.sketch.export import export_encoder, sketch_metadata  # noqa: E402
from app.ml.train.sketch.loop import SketchTrainConfig, train_sketch  # noqa: E402
from app.ml.train.sketch.loss import (  # noqa: E402
    sketch_contrastive_loss,
    sketch_image_targets,
)
from app.ml.train.sketch.model import (  # noqa: E402
    AbnormalityNet,
    EncoderConfig,
    SketchNet,
    abnormality_config,
    sketch_config,
)

SPEC = InputSpec(size=64, pixel_mm=6.4)
DATA = SketchDataConfig(bases=4, diameter_mm=(25.0, 60.0))


def body_slice(size: int, pixel_mm: float, seed: int) -> np.ndarray:
    """Model-frame HU slice: fat rim, 50 HU organ block, two lungs, 8 HU noise, varying size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    half_w = rng.uniform(150, 190) / pixel_mm  # body half-width (mm -> px)
    half_h = half_w * rng.uniform(0.7, 0.85)
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    hu[((x - c) / half_w) ** 2 + ((y - c) / half_h) ** 2 <= 1] = -100.0
    hu[((x - c) / (0.88 * half_w)) ** 2 + ((y - c) / (0.85 * half_h)) ** 2 <= 1] = 50.0
    for side in (-1, 1):
        lung = ((x - c - side * 0.45 * half_w) / (0.33 * half_w)) ** 2 + (
            (y - c + 0.2 * half_h) / (0.45 * half_h)
        ) ** 2 <= 1
        hu[lung] = -850.0
    return hu + rng.normal(0, 8, hu.shape).astype(np.float32) * (hu > -950)


def toy_bank(n: int = 12) -> HUBank:
    images = np.stack([body_slice(SPEC.size, SPEC.pixel_mm, s) for s in range(n)])
    return HUBank(["toy"], np.rint(images).astype(np.int16), np.zeros(n, dtype=np.int64))


def tiny_config(steps: int) -> SketchTrainConfig:
    return SketchTrainConfig(
        seed=3,
        steps=steps,
        warmup_steps=2,
        lr=3e-3,
        data=DATA,
        abnormality=abnormality_config(SPEC.size),
        sketch=sketch_config(SPEC.size),
    )


NO_BASE_AUGMENT = dataclasses.replace(
    DATA,
    base_rotation_deg=0.0,
    base_scale=0.0,
    base_shift_px=0.0,
    base_flip=0.0,
    washout_probability=0.0,
)


def test_base_slices_are_augmented_before_lesions_are_placed() -> None:
    bank = toy_bank()
    batch = LesionBatchSampler(bank, np.random.default_rng(0), SPEC, DATA).sample()
    b = DATA.bases
    plain = window_channels(bank.images[batch.image_base[b : 2 * b]].astype(np.float32), SPEC)
    # The clean slots show moved/rotated bodies, not the bank's own pixels...
    assert not np.allclose(batch.images[b : 2 * b], plain, atol=0.02)
    # ...and every lesion still sits on the body of its (augmented) image.
    soft = batch.images[:, 1]
    for slot in [*range(b), *range(2 * b, 3 * b)]:
        inside = batch.image_mask[slot] >= 0.5
        assert inside.any()
        assert np.mean(batch.images[b + slot % b, 0][inside] > 0.0) > 0.9
    assert soft.shape[0] == 3 * b


def test_batch_layout_pairs_each_sketch_with_its_lesion() -> None:
    bank = toy_bank()
    batch = LesionBatchSampler(bank, np.random.default_rng(0), SPEC, NO_BASE_AUGMENT).sample()
    b = DATA.bases
    assert batch.images.shape == (3 * b, 3, 64, 64) and batch.images.dtype == np.float32
    assert batch.sketches.shape == (2 * b, 3, 64, 64)
    # Images b..2b-1 are the lesion-free bases, exactly as windowed from the bank.
    clean = window_channels(bank.images[batch.image_base[b : 2 * b]].astype(np.float32), SPEC)
    assert np.array_equal(batch.images[b : 2 * b], clean)
    assert np.all(batch.image_class[b : 2 * b] == 0)
    assert np.all(batch.image_class[:b] > 0) and np.all(batch.image_class[2 * b :] > 0)
    for j, owner in enumerate(batch.sketch_image):
        cls = batch.image_class[owner]
        assert batch.sketch_class[j] == cls
        coverage = batch.sketches[j]
        assert coverage[cls - 1].sum() > 0
        assert coverage.sum() == pytest.approx(coverage[cls - 1].sum())  # only its class
        # The sketch lies near its lesion: within the jitter plus the scale error.
        rows, cols = np.nonzero(coverage[cls - 1] > 0.5)
        if len(rows):
            gap = math.dist((rows.mean(), cols.mean()), batch.image_centre[owner]) * 6.4
            assert gap <= DATA.jitter_mm + 0.5 * batch.image_diameter[owner] + 6.4
        # The lesion image differs from its clean base.
        base_slot = b + owner % b
        assert np.abs(batch.images[owner] - batch.images[base_slot]).max() > 0.02
    again = LesionBatchSampler(bank, np.random.default_rng(0), SPEC, NO_BASE_AUGMENT).sample()
    assert np.array_equal(again.images, batch.images)
    assert np.array_equal(again.sketches, batch.sketches)


def test_loss_rewards_sketches_near_their_own_images() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(9, 16, generator=gen), dim=1)
    owner = torch.tensor([0, 1, 2, 6, 7, 8])
    classes = torch.tensor([1, 2, 3, 0, 0, 0, 1, 2, 3])
    centre = torch.rand(9, 2, generator=gen) * 60
    diameter = torch.full((9,), 20.0)
    targets = sketch_image_targets(
        owner, classes[owner], centre[owner], diameter[owner], classes, centre, diameter
    )
    assert torch.all(targets[torch.arange(6), owner] == 1)
    assert torch.all(targets[:, 3:6] == 0)  # lesion-free images are never targets
    good = images[owner]
    bad = images[torch.tensor([3, 4, 5, 3, 4, 5])]  # sketches look like clean images
    assert sketch_contrastive_loss(good, images, targets, temperature=0.05) < 0.5
    assert sketch_contrastive_loss(bad, images, targets, temperature=0.05) > 2.0


def _run(tmp_path, steps: int):
    run_dir = tmp_path / f"run{steps}-{len(list(tmp_path.iterdir()))}"
    result = train_sketch(tiny_config(steps), toy_bank(), SPEC, run_dir=run_dir, log_every=6)
    losses = [
        json.loads(line)["loss"]
        for line in (run_dir / "sketch-metrics.jsonl").read_text().splitlines()
    ]
    return result, losses


@pytest.mark.slow
def test_short_training_is_deterministic_and_learns(tmp_path) -> None:
    torch.set_num_threads(1)  # one thread: exact repeatability and no contention on busy CI
    a, losses = _run(tmp_path, 24)
    b, _ = _run(tmp_path, 24)
    for net_a, net_b in ((a.abnormality, b.abnormality), (a.sketch, b.sketch)):
        for pa, pb in zip(net_a.state_dict().values(), net_b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb)
    assert losses[-1] < losses[0] - 0.1


def test_a_finished_run_resumed_reports_its_last_figures(tmp_path) -> None:
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    cfg = tiny_config(4)
    first = train_sketch(cfg, toy_bank(), SPEC, run_dir=run_dir, log_every=2)
    again = train_sketch(cfg, toy_bank(), SPEC, run_dir=run_dir, log_every=2, resume=True)
    assert again.steps_done == 4
    for name in ("abnormality", "sketch"):
        for pa, pb in zip(
            getattr(first, name).state_dict().values(),
            getattr(again, name).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(pa, pb)  # nothing left to train: the checkpoint's weights
    # Rounded as logged, not NaN: the summary of a resumed run keeps its figures.
    assert again.final_loss == pytest.approx(first.final_loss, abs=1e-4)
    assert again.final_top1 == pytest.approx(first.final_top1, abs=1e-3)
    assert again.steps_per_s > 0


def _metadata(name: str) -> dict[str, str]:
    return sketch_metadata(
        name=name,
        spec=SPEC,
        embedding_dim=64,
        train_command="priorsync train-sketch --seed 3",
        training_data="toy",
        default_weight=0.4,
    )


@pytest.mark.parametrize(
    ("net", "input_name"),
    [(AbnormalityNet(abnormality_config(64)), "slices"), (SketchNet(sketch_config(64)), "sketch")],
)
def test_export_matches_pytorch(tmp_path, net, input_name: str) -> None:
    torch.manual_seed(0)
    net.train()
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding is exercised
        net(torch.rand(8, 3, 64, 64))
    net.eval()
    path = export_encoder(
        net, tmp_path / "m.onnx", input_name=input_name, metadata=_metadata("x"), doc="toy"
    )
    x = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [input_name]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    (got,) = session.run(["embedding"], {input_name: x})
    np.testing.assert_allclose(got, expected, atol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["priorsync.default_weight"] == "0.40"
    assert json.loads(meta["priorsync.lesion_classes"]) == list(LESION_CLASSES)
    assert InputSpec.from_metadata(meta) == SPEC


# --------------------------------------------------------------------------- shipped models

ABN_PATH = models_dir() / "priorsync-abnormality.onnx"
SKETCH_PATH = models_dir() / "priorsync-sketch.onnx"
REQUIRED_KEYS = (
    "priorsync.name",
    "priorsync.version",
    "priorsync.embedding_dim",
    "priorsync.input_size",
    "priorsync.pixel_mm",
    "priorsync.windows",
    "priorsync.lesion_classes",
    "priorsync.train_command",
    "priorsync.training_data",
    "priorsync.default_weight",
)


@pytest.fixture(scope="module")
def shipped():
    if not (ABN_PATH.is_file() and SKETCH_PATH.is_file()):
        pytest.skip("the sketch models are not in models/ (train them: priorsync train-sketch)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    make = lambda p: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])  # noqa: E731
    return make(ABN_PATH), make(SKETCH_PATH)


def test_shipped_models_have_the_contract_io_and_metadata(shipped) -> None:
    for session, input_name, name in zip(
        shipped, ("slices", "sketch"), ("priorsync-abnormality", "priorsync-sketch"), strict=True
    ):
        (inp,) = session.get_inputs()
        (out,) = session.get_outputs()
        assert (inp.name, inp.shape[1:]) == (input_name, [3, 128, 128])
        assert (out.name, out.shape[1]) == ("embedding", 64)
        meta = session.get_modelmeta().custom_metadata_map
        assert all(k in meta for k in REQUIRED_KEYS)
        assert meta["priorsync.name"] == name and meta["priorsync.version"] == "1.0"
        assert meta["priorsync.embedding_dim"] == "64"
        assert InputSpec.from_metadata(meta) == InputSpec()
        assert 0.0 <= float(meta["priorsync.default_weight"]) <= 1.0
        assert json.loads(meta["priorsync.lesion_classes"]) == list(LESION_CLASSES)
    weights = {s.get_modelmeta().custom_metadata_map["priorsync.default_weight"] for s in shipped}
    assert len(weights) == 1  # both carry the same slider default


@pytest.mark.parametrize(
    ("kind", "centre"), [("mass", (52, 46)), ("hypodense", (80, 64)), ("hyperdense", (78, 75))]
)
def test_shipped_sketch_prefers_the_slice_with_its_lesion(shipped, kind, centre) -> None:
    abn, skn = shipped
    spec = InputSpec()
    rng = np.random.default_rng(1)
    wins = 0
    for seed in range(4):
        hu = body_slice(spec.size, spec.pixel_mm, seed)
        mask = random_lesion_mask_2d(hu.shape, centre, 30 / spec.pixel_mm, rng)
        with_lesion = insert_lesion_2d(hu, mask, kind, rng)
        slices = window_channels(np.stack([with_lesion, hu]), spec)
        (codes,) = abn.run(["embedding"], {"slices": slices})
        drawn = sketch_from_mask(mask >= 0.5, rng, pixel_mm=spec.pixel_mm)
        sketch = np.zeros((1, 3, spec.size, spec.size), dtype=np.float32)
        sketch[0, LESION_CLASSES.index(kind)] = drawn
        (query,) = skn.run(["embedding"], {"sketch": sketch})
        scores = codes @ query[0]
        wins += scores[0] > scores[1]
    assert wins >= 3  # the slice showing the sketched lesion ranks above its clean twin


def test_abnormality_cells_see_a_neighbourhood_not_the_whole_slice() -> None:
    config = abnormality_config()
    assert config.receptive_field() == 43  # 138 mm at 3.2 mm per pixel, of a 128 px slice
    assert EncoderConfig(convs_per_stage=2).receptive_field() == 91
    # The receptive field is what the network really has: pixels just beyond
    # it change nothing in a cell, pixels just within it do.
    torch.manual_seed(0)
    net = AbnormalityNet(config).eval()
    x = torch.zeros(1, 3, 128, 128)
    far, near = x.clone(), x.clone()
    far[0, :, 22:30, 0:8] = 1.0  # just beyond the 21 px the corner cell reaches
    near[0, :, 14:22, 0:8] = 1.0  # just within it
    with torch.no_grad():
        corner = net.forward_with_maps(x)[1][0, :, 0, 0]
        assert torch.equal(net.forward_with_maps(far)[1][0, :, 0, 0], corner)
        assert not torch.equal(net.forward_with_maps(near)[1][0, :, 0, 0], corner)
    assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_washout_unenhances_vessels_and_organs_only() -> None:
    from app.ml.train.sketch.data import washout_contrast

    hu = np.array([-1000, -100, 20, 250, 450, 1200], dtype=np.float32)
    out = washout_contrast(hu, keep=0.0, level_hu=40.0)
    np.testing.assert_array_equal(out[[0, 1, 2, 5]], hu[[0, 1, 2, 5]])  # air, fat, water, bone
    np.testing.assert_allclose(out[[3, 4]], [40.0, 40.0])  # enhanced vessel, aorta
    np.testing.assert_array_equal(washout_contrast(hu, keep=1.0), hu)
    half = washout_contrast(hu, keep=0.5, level_hu=40.0)
    assert half[3] == pytest.approx(145.0)
