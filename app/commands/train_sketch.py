"""``priorsync train-sketch``: train the sketch-query encoders and export them to ONNX.

Needs the ``train`` extra (PyTorch). Builds a bank of lesion-free training
slices (training volumes and simulated re-scans of them), trains the
abnormality and sketch encoders on synthetic lesions and their sketches, and
writes ``priorsync-abnormality.onnx`` and ``priorsync-sketch.onnx`` to
``--out``. The default schedule (6000 steps) takes about 27 minutes on an
idle 2-core CPU; the bank, checkpoint, metrics and summary go to
``--run-dir``.

The slider's default weight is chosen on the VALIDATION role, never on the
training bodies the models learnt from:

1. ``priorsync train-sketch --out DIR`` exports the models with a
   *provisional* weight (a sweep on lesions inserted into the training
   volumes, :mod:`app.ml.train.sketch.validate`; metadata
   ``priorsync.default_weight_source`` says so);
2. ``priorsync eval-sketch --role validation --sweep --abnormality-model
   DIR/priorsync-abnormality.onnx --sketch-model DIR/priorsync-sketch.onnx
   --json val.json`` scores them on the validation bodies;
3. ``priorsync train-sketch --resume --validation-json val.json`` (same run
   folder and settings) re-exports the same weights with the default weight
   chosen from that sweep by
   :func:`app.ml.evaluation.sketch.choose_validation_weight` (results of any
   other role are refused).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import cast

from app.commands.exit_codes import EXIT_FAILURE, EXIT_INPUT, EXIT_OK
from app.commands.train import SOURCE_LICENCES, add_training_arguments, positive

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = 6000
DEFAULT_BANK_SCANS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        steps=DEFAULT_STEPS,
        bank_scans=DEFAULT_BANK_SCANS,
        outputs="ONNX models",
        scans="lesion-free scans",
        run_dir="bank, checkpoint, metrics and summary (default runs/sketch-seed<SEED>)",
    )
    parser.add_argument(
        "--validation-lesions",
        type=int,
        default=10,
        help="lesion series per training volume for the provisional default weight (default "
        "10; 0: no training-volume sweep, provisional weight 0.5)",
    )
    parser.add_argument(
        "--validation-json",
        type=Path,
        default=None,
        metavar="FILE",
        help="take the default weight from this 'eval-sketch --role validation --sweep --json' "
        "file of these models (chosen by its fixed rule) instead of the provisional "
        "training-volume sweep",
    )


def _check(args: argparse.Namespace) -> str | None:
    for name, value, minimum in (
        ("steps", args.steps, 1),
        ("bank-scans", args.bank_scans, 0),
        ("threads", args.threads, 1),
        ("validation-lesions", args.validation_lesions, 0),
    ):
        if problem := positive(name, value, minimum):
            return problem
    return None


def validation_choice(path: Path, anatomy_identity: str) -> dict[str, object]:
    """The default weight chosen from an ``eval-sketch --role validation --sweep`` JSON file.

    Raises
    ------
    ValueError
        Unreadable, not of the validation role, not a sweep, or scored with
        another anatomy model.
    """
    from app.ml.evaluation.sketch import choose_validation_weight

    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: not eval-sketch results")
    choice = choose_validation_weight(results)
    if anatomy_identity not in str(results.get("models", "")):
        raise ValueError(f"{path} was scored with another anatomy model than {anatomy_identity}")
    return choice


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"priorsync train-sketch: {problem}", file=sys.stderr)
        return EXIT_INPUT
    try:  # PyTorch comes with the train extra only
        from app.ml.train.common.optim import set_threads
        from app.ml.train.sketch.export import (
            ABNORMALITY_INPUT,
            ABNORMALITY_NAME,
            SKETCH_INPUT,
            SKETCH_NAME,
            export_encoder,
            sketch_metadata,
        )
        from app.ml.train.sketch.loop import SketchTrainConfig, train_sketch
        from app.ml.train.sketch.validate import choose_default_weight
    except ImportError as exc:
        print(
            f"priorsync train-sketch needs the train extra (pip install 'priorsync[train]'): {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    from app.ml.runtime.model import EmbeddingModel, ModelError
    from app.ml.runtime.preprocess import InputSpec
    from app.ml.train.sketch.data import build_hu_bank
    from app.sim import followup, lesions
    from app.sim.followup import SIM_PRESETS, simulate_followup
    from app.sim.roles import bodies
    from app.sim.sources import SourceError, load_source

    # The named training bodies: the HU bank keeps every slice of every scan in memory.
    train_volumes = bodies("training", openkbp=False)
    set_threads(args.threads)
    run_dir: Path = args.run_dir or Path("runs") / f"sketch-seed{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = InputSpec()
    cfg = SketchTrainConfig(seed=args.seed, steps=args.steps)
    # Re-scans without the simulator's own blob lesion: lesions come from app.sim.lesions.
    bank_params = dataclasses.replace(SIM_PRESETS["train"], lesion_probability=0.0)
    val_params = dataclasses.replace(SIM_PRESETS["standard"], lesion_probability=0.0)
    # The bank must be rebuilt when the simulator changes: key it on its source.
    code = Path(followup.__file__).read_bytes().decode("utf-8", "replace")
    try:
        anatomy = EmbeddingModel.load(device="cpu")
    except ModelError as exc:
        print(f"priorsync train-sketch: the anatomy model is needed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    chosen: dict[str, object] | None = None
    if args.validation_json is not None:
        try:
            chosen = validation_choice(args.validation_json, anatomy.identity)
        except ValueError as exc:
            print(f"priorsync train-sketch: {exc}", file=sys.stderr)
            return EXIT_INPUT

    t0 = time.perf_counter()
    try:
        bank = build_hu_bank(
            train_volumes,
            args.bank_scans,
            args.seed,
            spec,
            load_source=load_source,
            simulate=lambda source, rng: simulate_followup(source, bank_params, rng),
            cache_dir=run_dir,
            cache_key=code + repr(bank_params),
        )
        sources = {name: load_source(name) for name in train_volumes}
    except SourceError as exc:
        print(f"priorsync train-sketch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    log.info("HU bank: %d slices in %.0f s", bank.n_slices, time.perf_counter() - t0)

    t1 = time.perf_counter()
    result = train_sketch(cfg, bank, spec, run_dir=run_dir, resume=args.resume)
    train_s = time.perf_counter() - t1

    if chosen is None and args.validation_lesions == 0:
        default_weight = 0.5
        weight_source = (
            "provisional: 0.5 unchosen; choose it on the validation role "
            "(eval-sketch --role validation --sweep, then train-sketch --resume --validation-json)"
        )
        sweep: dict[str, object] = {"role": None}
        validation_summary: dict[str, object] = {}
    elif chosen is None:
        # Provisional: lesions inserted into the TRAINING volumes.
        provisional = choose_default_weight(
            result.abnormality,
            result.sketch,
            sources,
            lambda volume: anatomy.embed_volume(volume),
            lambda source, rng: simulate_followup(source, val_params, rng).volume,
            spec,
            seed=args.seed + 1000,
            lesions_per_volume=args.validation_lesions,
        )
        for w, h1, h10 in zip(
            provisional.weights, provisional.hit1, provisional.hit10, strict=True
        ):
            log.info("training-volume sweep w=%.1f: hit@1 %.2f hit@10 %.2f", w, h1, h10)
        default_weight = provisional.default_weight
        weight_source = (
            "provisional: training-volume sweep; choose it on the validation role "
            "(eval-sketch --role validation --sweep, then train-sketch --resume --validation-json)"
        )
        sweep = {
            "role": "training",
            "weights": provisional.weights,
            "hit1": provisional.hit1,
            "hit10": provisional.hit10,
            "n_queries": provisional.n_queries,
        }
        validation_summary = dataclasses.asdict(provisional)
    else:
        default_weight = float(cast(float, chosen["weight"]))
        weight_source = f"validation role: {chosen['rule']}"
        sweep = {"role": "validation", "rule": chosen["rule"], "sweep": chosen["sweep"]}
        validation_summary = {**chosen, "file": str(args.validation_json)}
    log.info("default weight %.2f (%s)", default_weight, weight_source)

    command = (
        f"priorsync train-sketch --seed {args.seed} --steps {args.steps} "
        f"--bank-scans {args.bank_scans}"
    )
    training_data = (
        f"synthetic lesions ({', '.join(lesions.LESION_CLASSES)}; app.sim.lesions) and their "
        f"sketches (app.sim.sketches) in lesion-free slices of {args.bank_scans} simulated "
        "re-scans (SIM_PRESETS['train'], no lesion) plus the source of each of "
        + "; ".join(f"{n} ({SOURCE_LICENCES.get(n, '?')})" for n in train_volumes)
    )
    extra = {
        "priorsync.train_config": json.dumps(cfg.to_dict()),
        "priorsync.validation": json.dumps(sweep),
        "priorsync.default_weight_source": weight_source,
        "priorsync.anatomy_model": anatomy.identity,
    }
    outputs = {}
    for model, name, input_name, doc in (
        (result.abnormality, ABNORMALITY_NAME, ABNORMALITY_INPUT, "abnormality code of a CT slice"),
        (result.sketch, SKETCH_NAME, SKETCH_INPUT, "code of a sketched abnormality"),
    ):
        meta = sketch_metadata(
            name=name,
            spec=spec,
            embedding_dim=model.config.embedding_dim,
            train_command=command,
            training_data=training_data,
            default_weight=default_weight,
            extra=extra,
        )
        path = export_encoder(
            model,
            args.out / f"{name}.onnx",
            input_name=input_name,
            metadata=meta,
            doc=f"{name} {meta['priorsync.version']}: {doc} (PriorSync sketch query)",
        )
        outputs[name] = {"path": str(path), "bytes": path.stat().st_size}
        log.info("exported %s (%.2f MB)", path, path.stat().st_size / 1e6)
    summary = {
        "command": command,
        "config": cfg.to_dict(),
        "bank_slices": bank.n_slices,
        "train_seconds": round(train_s, 1),
        "steps_per_s": result.steps_per_s,
        "final_loss": result.final_loss,
        "final_batch_top1": result.final_top1,
        "final_batch_beats_clean": result.final_beats_clean,
        "default_weight": default_weight,
        "default_weight_source": weight_source,
        "validation": validation_summary,
        "models": outputs,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return EXIT_OK
