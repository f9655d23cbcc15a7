"""Training pieces: the pair sampler, the loss, augmentation, the loop's determinism."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.runtime.preprocess import InputSpec
from app.ml.train.anatomy.data import ScanSlices, SliceBank, build_bank

torch = pytest.importorskip("torch", reason="the training tests need PyTorch (the train extra)")

from app.ml.train.anatomy.data import PairSampler  # noqa: E402
from app.ml.train.anatomy.loop import TrainConfig, snapshot_steps, train  # noqa: E402
from app.ml.train.anatomy.loss import batch_top1_error_mm, soft_target_contrastive_loss  # noqa: E402
from app.ml.train.anatomy.model import NetConfig  # noqa: E402
from app.ml.train.common.augment import augment  # noqa: E402

SPEC = InputSpec(size=32, pixel_mm=12.8)


def toy_bank(n_volumes: int = 2, scans: int = 3, seed: int = 0) -> SliceBank:
    """Scans whose images encode their level: a bar whose position follows z."""
    rng = np.random.default_rng(seed)
    out = []
    for v in range(n_volumes):
        for _ in range(scans):
            spacing = rng.uniform(1.0, 5.0)
            z = np.arange(rng.uniform(0, 10), 120, spacing, dtype=np.float32)
            images = np.zeros((len(z), 3, 32, 32), dtype=np.uint8)
            for k, level in enumerate(z):
                row = int(level / 120 * 28)
                images[k, :, row : row + 4, 4 + 8 * v : 12 + 8 * v] = 200
            out.append(ScanSlices(v, images, z))
    return SliceBank([f"v{v}" for v in range(n_volumes)], out)


def test_sampler_pairs_are_close_and_groups_share_a_volume() -> None:
    bank = toy_bank()
    sampler = PairSampler(bank, np.random.default_rng(0), groups=4, per_group=6, window_mm=20)
    batch = sampler.sample()
    n = 24
    assert batch.images.shape == (2 * n, 3, 32, 32)
    # Anchor i and positive n+i: same volume, different scans, level within half a slice.
    assert np.array_equal(batch.volume[:n], batch.volume[n:])
    assert np.all(batch.scan[:n] != batch.scan[n:])
    assert np.all(np.abs(batch.z[:n] - batch.z[n:]) <= 2.5 + 1e-5)
    for g in range(4):
        members = slice(6 * g, 6 * g + 6)
        assert len(set(batch.volume[members])) == 1
        assert np.ptp(batch.z[members]) <= 40 + 1e-5


def test_sampler_is_deterministic() -> None:
    bank = toy_bank()
    a = PairSampler(bank, np.random.default_rng(3)).sample()
    b = PairSampler(bank, np.random.default_rng(3)).sample()
    assert np.array_equal(a.images, b.images) and np.array_equal(a.z, b.z)


def test_region_first_sampling_gives_each_region_an_equal_share() -> None:
    # One chest volume, one abdomen volume and ten head-and-neck ones.
    bank = toy_bank(n_volumes=12, scans=2)
    regions = ["chest", "abdomen"] + ["head-neck"] * 10
    sampler = PairSampler(bank, np.random.default_rng(0), groups=8, per_group=2, regions=regions)
    drawn = np.concatenate([sampler.sample().volume[:16:2] for _ in range(300)])
    share = {
        r: np.mean(np.isin(drawn, [i for i, x in enumerate(regions) if x == r])) for r in regions
    }
    for r in ("chest", "abdomen", "head-neck"):
        assert share[r] == pytest.approx(1 / 3, abs=0.05)
    # Without regions, the head-and-neck volumes take most groups.
    plain = PairSampler(bank, np.random.default_rng(0), groups=8, per_group=2)
    drawn = np.concatenate([plain.sample().volume[:16:2] for _ in range(300)])
    assert np.mean(drawn >= 2) > 0.75
    with pytest.raises(ValueError, match="regions given"):
        PairSampler(bank, np.random.default_rng(0), regions=["chest"])


def test_loss_rewards_ranking_by_level() -> None:
    z = torch.tensor([0.0, 10.0, 20.0, 30.0, 0.5, 10.5, 20.5, 30.5])
    vol = torch.zeros(8, dtype=torch.long)
    angle = z / 40.0 * torch.pi  # embeddings on a circle: order follows z
    good = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    bad = good[torch.tensor([0, 2, 1, 3, 6, 5, 4, 7])]
    kw = {"sigma_mm": 1.0, "temperature": 0.05}
    assert soft_target_contrastive_loss(good, z, vol, **kw) < 0.5
    assert soft_target_contrastive_loss(bad, z, vol, **kw) > 2.0
    scan = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert float(batch_top1_error_mm(good, z, vol, scan)) == pytest.approx(0.5)
    assert float(batch_top1_error_mm(bad, z, vol, scan)) > 5.0


def test_augment_is_seeded_and_in_range() -> None:
    images = torch.from_numpy(toy_bank().scans[0].images[:8])
    a = augment(images, SPEC, torch.Generator().manual_seed(1))
    b = augment(images, SPEC, torch.Generator().manual_seed(1))
    c = augment(images, SPEC, torch.Generator().manual_seed(2))
    assert a.dtype == torch.float32 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # Perturbed, not destroyed.
    assert float((a - images.float() / 255).abs().mean()) < 0.1


def tiny_config(steps: int, seed: int = 0) -> TrainConfig:
    return TrainConfig(
        seed=seed,
        steps=steps,
        groups=2,
        per_group=4,
        warmup_steps=2,
        net=NetConfig(widths=(4, 8, 8, 8), embedding_dim=8),
    )


def test_training_is_reproducible_and_resumes_exactly(tmp_path) -> None:
    bank = toy_bank()
    torch.set_num_threads(1)
    a = train(tiny_config(6), bank, SPEC)
    b = train(tiny_config(6), bank, SPEC)
    for (k, va), vb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    # Stop after 3 steps, then resume to 6: the same weights as one run of 6.
    stopped = train(tiny_config(6), bank, SPEC, run_dir=tmp_path, stop_at=3)
    assert stopped.steps_done == 3
    c = train(tiny_config(6), bank, SPEC, run_dir=tmp_path, resume=True)
    for (k, va), vc in zip(
        a.model.state_dict().items(), c.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(va, vc, msg=k)
    assert (tmp_path / "metrics.jsonl").read_text().strip()
    # Resumed with nothing left to train: the weights and figures of the finished run.
    again = train(tiny_config(6), bank, SPEC, run_dir=tmp_path, resume=True)
    assert again.steps_done == 6
    for va, vd in zip(
        c.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vd)
    assert again.final_loss == pytest.approx(c.final_loss, abs=1e-4)
    assert again.steps_per_s > 0


def test_region_sampling_run_keeps_snapshots_and_resumes_exactly(tmp_path) -> None:
    import dataclasses

    bank = toy_bank(n_volumes=3)
    regions = ["chest", "head-neck", "head-neck"]
    cfg = dataclasses.replace(tiny_config(6), sampling="region")
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="region sampling needs"):
        train(cfg, bank, SPEC)
    whole = train(cfg, bank, SPEC, regions=regions)
    train(cfg, bank, SPEC, run_dir=tmp_path, stop_at=4, regions=regions, snapshot_every=2)
    assert snapshot_steps(tmp_path) == [2, 4]
    resumed = train(
        cfg, bank, SPEC, run_dir=tmp_path, resume=True, regions=regions, snapshot_every=2
    )
    assert snapshot_steps(tmp_path) == [2, 4, 6]
    for va, vb in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(va, vb)
    last = torch.load(tmp_path / "snapshots" / "step-000006.pt", weights_only=False)
    for va, vb in zip(last["model"].values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb)


def test_bank_is_cached_and_rebuilt_when_corrupt(tmp_path) -> None:
    from app.core.volume import Geometry, Volume

    calls = {"sim": 0}

    def load_source(name: str) -> Volume:
        vox = np.full((6, 40, 40), -1000, dtype=np.int16)
        vox[:, 10:30, 10:30] = 40
        return Volume(vox, Geometry((0, 0, 0), (4.0, 4.0, 5.0), np.eye(3)))

    class Scan:
        def __init__(self, volume: Volume) -> None:
            self.volume = volume
            self.source_z = volume.slice_z[::-1].copy()  # levels may come in any order

    def simulate(source: Volume, rng: np.random.Generator) -> Scan:
        calls["sim"] += 1
        return Scan(source)

    kwargs = {"load_source": load_source, "simulate": simulate, "cache_dir": tmp_path}
    bank = build_bank(["a", "b"], 2, 0, SPEC, **kwargs)
    assert len(bank.scans) == 6 and calls["sim"] == 4
    assert all(np.all(np.diff(s.z) > 0) for s in bank.scans)
    again = build_bank(["a", "b"], 2, 0, SPEC, **kwargs)
    assert calls["sim"] == 4  # from the cache
    assert np.array_equal(again.scans[3].images, bank.scans[3].images)
    (cached,) = tmp_path.glob("bank-*.npz")
    cached.write_bytes(b"not a zip")
    build_bank(["a", "b"], 2, 0, SPEC, **kwargs)
    assert calls["sim"] == 8
    # Scans per volume may differ by volume; such a bank has its own cache entry.
    uneven = build_bank(["a", "b"], {"a": 3, "b": 1}.__getitem__, 0, SPEC, **kwargs)
    assert [len(uneven.scans_of(v)) for v in (0, 1)] == [4, 2]
    assert calls["sim"] == 12
    assert len(list(tmp_path.glob("bank-*.npz"))) == 2
    assert not list(tmp_path.glob("*.parts"))  # parts are dropped once the bank is whole


def test_an_interrupted_bank_build_resumes_at_the_next_volume(tmp_path) -> None:
    from app.core.volume import Geometry, Volume

    made: list[str] = []

    def load_source(name: str) -> Volume:
        if name == "c" and len(made) < 100:
            raise KeyboardInterrupt  # the first build stops at volume "c"
        vox = np.full((6, 40, 40), -1000, dtype=np.int16)
        vox[:, 10:30, 10:30] = 40 if name == "a" else 400
        return Volume(vox, Geometry((0, 0, 0), (4.0, 4.0, 5.0), np.eye(3)))

    class Scan:
        def __init__(self, volume: Volume, shift: float) -> None:
            self.volume = volume
            self.source_z = volume.slice_z + shift

    def simulate(source: Volume, rng: np.random.Generator) -> Scan:
        made.append("scan")
        return Scan(source, float(rng.uniform(0, 10)))

    kwargs = {"load_source": load_source, "simulate": simulate, "cache_dir": tmp_path}
    with pytest.raises(KeyboardInterrupt):
        build_bank(["a", "b", "c"], 2, 0, SPEC, **kwargs)
    assert len(made) == 4 and len(list(tmp_path.glob("*.parts/*.npz"))) == 2
    made.extend(["x"] * 100)  # let "c" load now
    bank = build_bank(["a", "b", "c"], 2, 0, SPEC, **kwargs)
    assert len(made) == 106  # only "c" was simulated again
    # The same bank as one uninterrupted build.
    whole = build_bank(["a", "b", "c"], 2, 0, SPEC, **{**kwargs, "cache_dir": None})
    assert [s.volume_index for s in bank.scans] == [s.volume_index for s in whole.scans]
    for mine, ref in zip(bank.scans, whole.scans, strict=True):
        np.testing.assert_array_equal(mine.z, ref.z)
        np.testing.assert_array_equal(mine.images, ref.images)


@pytest.mark.parametrize(
    "flag",
    [
        "--steps=0",
        "--bank-scans=0",
        "--threads=0",
        "--eval-pairs=-1",
        "--bank-scans-openkbp=0",
        "--snapshot-every=0",
    ],
)
def test_train_command_rejects_bad_numbers(flag: str, capsys) -> None:
    import argparse

    from app.commands import train as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args([flag])) == 2
    assert "must be at least" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        ["--export-step=0"],
        ["--steps=1000", "--export-step=1500"],
        ["--steps=1000", "--snapshot-every=250", "--export-step=300"],
    ],
)
def test_train_command_rejects_an_export_step_without_a_snapshot(flags, capsys) -> None:
    import argparse

    from app.commands import train as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(flags)) == 2
    assert "not a step whose weights the run keeps" in capsys.readouterr().err


@pytest.mark.slow  # three ONNX exports
def test_checkpoint_is_chosen_on_validation_pairs(tmp_path) -> None:
    import json

    from app.ml.train.anatomy.choose import ValidationPair, choose_snapshot, load_snapshot
    from app.ml.train.anatomy.export import export_onnx

    bank = toy_bank(n_volumes=2, scans=2)
    torch.set_num_threads(1)
    result = train(tiny_config(4), bank, SPEC, run_dir=tmp_path, snapshot_every=2)
    a, b = bank.scans[0], bank.scans[1]
    covered = (a.z >= b.z[0]) & (a.z <= b.z[-1])
    pairs = [ValidationPair("v0", "standard", a.images, b.images, b.z, a.z.copy(), covered)]

    def export(model, path):
        return export_onnx(model, SPEC, path, name="t", version="0", training_data="toy")

    reference = export(result.model, tmp_path / "reference.onnx")
    choice = choose_snapshot(tmp_path, pairs, export, reference=reference)
    assert set(choice.scores) == {2, 4, -1}
    assert choice.step in (2, 4)
    assert choice.scores[choice.step]["mean"] == min(choice.scores[s]["mean"] for s in (2, 4))
    # The last snapshot is the finished run's network: it scores as the reference does.
    assert choice.scores[4]["mean"] == pytest.approx(choice.scores[-1]["mean"], abs=1e-6)
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["chosen_step"] == choice.step
    again = load_snapshot(tmp_path / "snapshots" / "step-000004.pt")
    for va, vb in zip(again.state_dict().values(), result.model.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb)
    with pytest.raises(ValueError, match="no weight snapshot"):
        choose_snapshot(tmp_path / "empty", pairs, export)
