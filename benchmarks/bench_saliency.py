"""Similarity saliency: do the maps mean something, and how fast are they?

On simulated follow-up pairs (a slice of a simulated follow-up scan and the
slice of the source volume at the same true anatomical level), this prints:

* randomisation check: correlation between the maps of the shipped model and
  those of the same architecture with random weights (Adebayo et al. 2018); a
  map that survives randomisation explains the image, not the model. Goal < 0.5.
* deletion check: the similarity drop when the prior slice's most salient
  region (10 % of the body) is filled with soft tissue (40 HU), against the
  least salient region and the top of a random smooth map of the same size.
* speed on the CPU, per pair, against the plain ONNX forward of the two slices
  measured in the same run: maps + upsampling + blending from cached features,
  and end to end with the two forwards (goal <= 20 ms).

It also writes a picture of one pair with its overlays (``--png``).

Needs the shared CT data (holdout volumes) and, for the randomised model,
PyTorch (the train extra).

Run: ``.venv/bin/python benchmarks/bench_saliency.py [--pairs 8] [--repeats 30]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.core.imaging import PRESETS, window_to_uint8  # noqa: E402
from app.core.volume import Volume  # noqa: E402
from app.ml.evaluation.saliency_metrics import deletion_drops, map_correlation  # noqa: E402
from app.ml.runtime.model import EmbeddingModel, default_model_path  # noqa: E402
from app.ml.saliency.gradcam import (  # noqa: E402
    SimilaritySaliency,
    blend_overlay,
    body_mask_on_input,
    to_slice_grid,
)

Pair = tuple[Volume, int, Volume, int]


def simulated_pairs(source: str, n: int, seed: int) -> list[Pair]:
    """``n`` (follow-up slice, prior slice at the same true level) pairs from one source."""
    from app.sim.followup import SIM_PRESETS, identity_scan, simulate_followup, true_correspondence
    from app.sim.sources import load_source

    src = load_source(source)
    current = simulate_followup(src, SIM_PRESETS["standard"], np.random.default_rng(seed))
    prior = identity_scan(src)
    prior_z, covered = true_correspondence(current, prior)
    rows = np.flatnonzero(covered)
    pick = rows[np.linspace(0, len(rows) - 1, n + 2).round().astype(int)[1:-1]]  # skip the ends
    z = prior.volume.slice_z
    return [(current.volume, int(i), src, int(np.argmin(np.abs(z - prior_z[i])))) for i in pick]


def random_weights_model(model: EmbeddingModel, seed: int, folder: Path) -> EmbeddingModel:
    """The same architecture freshly initialised (as training starts), exported to ONNX."""
    import json

    import torch

    from app.ml.train.anatomy.export import export_onnx
    from app.ml.train.anatomy.model import EmbeddingNet, NetConfig

    arch = json.loads(model.metadata["priorsync.architecture"])
    arch["widths"] = tuple(arch["widths"])
    torch.manual_seed(seed)
    net = EmbeddingNet(NetConfig(**arch)).eval()
    path = folder / f"random-{seed}.onnx"
    export_onnx(net, model.spec, path, name="random", version=str(seed), training_data="none")
    return EmbeddingModel.load(path, device="cpu")


def rank(a: np.ndarray) -> np.ndarray:
    """Ranks of the values (for Spearman correlation, as in Adebayo et al.)."""
    flat = a.ravel()
    out = np.empty(flat.size)
    out[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return out.reshape(a.shape)


def timed_ms(fns: dict[str, object], repeats: int) -> dict[str, tuple[float, float]]:
    """(median, minimum) wall time in ms of each function.

    The functions take turns within every repeat, so load from other processes
    on a shared machine hits them alike and their ratios stay meaningful; the
    minimum is the least disturbed run.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {n: (1e3 * statistics.median(t), 1e3 * min(t)) for n, t in times.items()}


def write_png(sal: SimilaritySaliency, pair: Pair, path: Path) -> None:
    """Query and prior slice, each plain and with its overlay, in one image."""
    import cv2

    qv, qi, mv, mi = pair
    maps = sal.pair_maps(qv, qi, mv, mi)
    tiles = []
    for volume, index, map01, label in [
        (qv, qi, maps.query, f"follow-up slice {qi}"),
        (mv, mi, maps.match, f"prior slice {mi}"),
    ]:
        grey = window_to_uint8(volume.voxels[index], PRESETS["lung"])
        overlay = blend_overlay(grey, to_slice_grid(map01, volume, index, sal.spec), "inferno", 0.6)
        row = np.hstack([cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), overlay])
        row = cv2.resize(row, (1024, 512), interpolation=cv2.INTER_AREA)
        cv2.putText(row, label, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
        tiles.append(row)
    image = np.vstack(tiles)
    cv2.putText(
        image,
        f"similarity {maps.similarity:.3f}",
        (522, 28),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.8,
        (255, 255, 0),
        2,
    )
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--pairs", type=int, default=8, help="pairs per source volume")
    parser.add_argument("--sources", nargs="*", default=None, help="default: local holdouts")
    parser.add_argument("--random-seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--png", type=Path, default=Path("/tmp/saliency_pair.png"))
    args = parser.parse_args()

    from app.sim.roles import bodies
    from app.sim.sources import available_sources

    sources = args.sources or available_sources(bodies("validation", openkbp=False))
    if not sources:
        print("no holdout CT volume is available locally (shared data); nothing to measure")
        return 1
    model = EmbeddingModel.load(args.model, device="cpu")
    sal = SimilaritySaliency(model)
    print(f"model {model.name} ({model.sha256[:12]}), grid exact={sal.grid.exact}")
    pairs = [p for i, s in enumerate(sources) for p in simulated_pairs(s, args.pairs, seed=i)]
    print(f"{len(pairs)} simulated pairs from {', '.join(sources)}")

    # -- randomisation ------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        randoms = [
            SimilaritySaliency(random_weights_model(model, seed, Path(tmp)))
            for seed in range(args.random_seeds)
        ]
        whole, ranks, body, undefined = [], [], [], 0
        for qv, qi, mv, mi in pairs:
            ours = sal.pair_maps(qv, qi, mv, mi)
            for other in randoms:
                theirs = other.pair_maps(qv, qi, mv, mi)
                for a, b, v, i in [
                    (ours.query, theirs.query, qv, qi),
                    (ours.match, theirs.match, mv, mi),
                ]:
                    c = map_correlation(a, b)
                    if np.isnan(c):
                        undefined += 1
                        continue
                    whole.append(c)
                    ranks.append(map_correlation(rank(a), rank(b)))
                    body.append(map_correlation(a, b, body_mask_on_input(v, i, sal.spec)))
        print(
            f"randomisation: mean correlation of trained vs random-weights maps over {len(whole)} "
            f"map pairs (goal < 0.5): inside the body {np.nanmean(body):.3f} "
            f"(sd {np.nanstd(body):.3f}); whole image {np.mean(whole):.3f} "
            f"(sd {np.std(whole):.3f}), Spearman {np.mean(ranks):.3f}. {undefined} more where "
            f"the random model's map is empty (undefined; whole image "
            f"{np.mean(whole + [0.0] * undefined):.3f} if counted as 0)"
        )

        # -- deletion --------------------------------------------------------------------
        for label, s in [("trained", sal), ("random weights", randoms[0])]:
            res = [deletion_drops(s, *p, rng=np.random.default_rng(k)) for k, p in enumerate(pairs)]
            most = np.array([r.drop_most for r in res])
            least = np.array([r.drop_least for r in res])
            rand = np.array([r.drop_random for r in res])
            print(
                f"deletion ({label}): mean similarity {np.mean([r.similarity for r in res]):.3f}; "
                f"mean drop most-salient {most.mean():.4f}, least-salient {least.mean():.4f}, "
                f"random region {rand.mean():.4f}; most > least in {(most > least).sum()}/"
                f"{len(res)}, most > random in {(most > rand).sum()}/{len(res)}"
            )

    # -- speed --------------------------------------------------------------------------
    qv, qi, mv, mi = pairs[len(pairs) // 2]
    greys = [window_to_uint8(v.voxels[i], PRESETS["lung"]) for v, i in ((qv, qi), (mv, mi))]
    cached = (sal.slice_features(qv, qi), sal.slice_features(mv, mi))

    def overlays(q, m) -> None:
        maps = sal.maps_from_features(q, m)
        for (v, i), map01, grey in zip(((qv, qi), (mv, mi)), maps[:2], greys, strict=True):
            blend_overlay(grey, to_slice_grid(map01, v, i, sal.spec), "inferno", 0.5)

    def end_to_end() -> None:
        overlays(sal.slice_features(qv, qi), sal.slice_features(mv, mi))

    def plain_forward() -> None:
        model.embed_slices(qv, [qi])
        model.embed_slices(mv, [mi])

    from app.ml.runtime.preprocess import prepare_slices

    inputs = np.concatenate(
        [prepare_slices(qv, [qi], model.spec), prepare_slices(mv, [mi], model.spec)]
    )
    t = timed_ms(
        {
            "base": plain_forward,
            "forward": lambda: model.embed_inputs(inputs),
            "cached": lambda: overlays(*cached),
            "full": end_to_end,
        },
        args.repeats,
    )
    base = t["base"]
    print(
        f"speed ({model.provider}, slices {qv.voxels.shape[1:]} and {mv.voxels.shape[1:]}, "
        f"{args.repeats} runs, median / min in ms, ratios of medians / of mins; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs):"
    )

    def line(label: str, key: str, goal: str = "") -> None:
        med, low = t[key]
        ratio = f"= {med / base[0]:.2f} / {low / base[1]:.2f} x baseline"
        print(f"  {label}: {med:.2f} / {low:.2f} ms {ratio}{goal}")

    print(
        f"  baseline: plain embedding of the two slices (prepare + forward) {base[0]:.2f} / {base[1]:.2f} ms"
    )
    line("forward alone on the prepared pair (batch of 2)", "forward")
    line("maps + upsample to slice grid + blend, cached features", "cached")
    line("end to end incl. both forwards with features", "full", " (goal <= 20 ms)")

    write_png(sal, pairs[len(pairs) // 2], args.png)
    print(f"picture: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
