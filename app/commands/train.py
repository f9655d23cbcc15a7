"""``priorsync train``: build the simulated training bank, train, choose, export to ONNX.

Needs the ``train`` extra (PyTorch). The training bodies are the training
role's (:mod:`app.sim.roles`); each batch group draws a body region first,
then a body. Checkpoints, weight snapshots, the slice bank and metrics go to
``--run-dir`` (never into the package). At the end the snapshot with the
lowest nearest-neighbour error on validation pairs is exported (the shipped
model is scored on the same pairs, for comparison, in ``validation.json``);
``--resume`` on a finished run only redoes the choice and the export.
``--export-step N`` exports the snapshot of step ``N`` instead of choosing:
it reproduces a model chosen on validation among the snapshots a run had
kept when it was stopped early.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from app.commands.exit_codes import EXIT_FAILURE, EXIT_INPUT, EXIT_OK

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

MODEL_NAME = "priorsync-embed"
MODEL_VERSION = "1.0"
DEFAULT_STEPS = 10_000
DEFAULT_BANK_SCANS = 24
# Each OpenKBP patient is one body of ~190 in its region: a few scans each are enough
# (region-first sampling gives the region its share). With the named volumes at 24 scans
# the bank holds about 82,400 slices, 4 GB on disk and in memory (measured).
DEFAULT_BANK_SCANS_OPENKBP = 2
DEFAULT_SNAPSHOT_EVERY = 500
SOURCE_LICENCES = {
    "chest-angio": "totalsegmentator 2.18.0 sdist, Apache-2.0",
    "upper-abdomen-dicom": "totalsegmentator 2.18.0 sdist, Apache-2.0",
    "head-neck": "dicom2stl 0.5.0 sdist, Apache-2.0",
    "head": "dicom2stl 0.5.0 sdist, Apache-2.0",
    "abdomen-pancreas": "pyvista/vtk-data, Pancreatic-CT-CBCT-SEG (TCIA), CC BY 4.0",
    "openkbp": "ababier/open-kbp, MIT; data from TCIA head-and-neck collections",
}


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    steps: int,
    bank_scans: int,
    outputs: str,
    scans: str,
    run_dir: str,
) -> None:
    """The options both trainings take: seed, output, schedule, bank, run folder, threads, resume.

    ``outputs``, ``scans`` and ``run_dir`` name what the ONNX folder, a bank
    scan and the run folder hold, for the help texts.
    """
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models"),
        help=f"folder for the {outputs} (default models/)",
    )
    parser.add_argument(
        "--steps", type=int, default=steps, help=f"optimiser steps (default {steps})"
    )
    parser.add_argument(
        "--bank-scans",
        type=int,
        default=bank_scans,
        help=f"simulated {scans} per training volume (default {bank_scans})",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help=run_dir)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the run folder's checkpoint"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(
        parser,
        steps=DEFAULT_STEPS,
        bank_scans=DEFAULT_BANK_SCANS,
        outputs="ONNX model",
        scans="scans",
        run_dir="checkpoints, slice bank and metrics (default runs/seed<SEED>)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="steps between checkpoints in the run folder (default 100)",
    )
    parser.add_argument(
        "--eval-pairs",
        type=int,
        default=3,
        help="validation pairs per volume and preset for the quick check (0: skip)",
    )
    parser.add_argument(
        "--bank-scans-openkbp",
        type=int,
        default=DEFAULT_BANK_SCANS_OPENKBP,
        help=f"simulated scans per OpenKBP training patient (default {DEFAULT_BANK_SCANS_OPENKBP})",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=DEFAULT_SNAPSHOT_EVERY,
        help="keep the weights every this many steps, for the choice on validation "
        f"(default {DEFAULT_SNAPSHOT_EVERY})",
    )
    parser.add_argument(
        "--export-step",
        type=int,
        default=None,
        help="export the weight snapshot of this step instead of choosing one on validation "
        "(a multiple of --snapshot-every, or --steps)",
    )


def positive(name: str, value: int, minimum: int = 1) -> str | None:
    """Why option ``--name`` is out of range, or ``None``."""
    return None if value >= minimum else f"--{name} must be at least {minimum}, got {value}"


def run(args: argparse.Namespace) -> int:
    for problem in (
        positive("steps", args.steps),
        positive("bank-scans", args.bank_scans, 1),
        positive("threads", args.threads),
        positive("checkpoint-every", args.checkpoint_every),
        positive("eval-pairs", args.eval_pairs, 0),
        positive("bank-scans-openkbp", args.bank_scans_openkbp, 1),
        positive("snapshot-every", args.snapshot_every),
    ):
        if problem:
            print(f"priorsync train: {problem}", file=sys.stderr)
            return EXIT_INPUT
    export_step = args.export_step
    if export_step is not None and (
        export_step < 1
        or export_step > args.steps
        or (export_step % args.snapshot_every and export_step != args.steps)
    ):
        print(
            f"priorsync train: --export-step {export_step} is not a step whose weights the run "
            f"keeps (multiples of --snapshot-every {args.snapshot_every} up to --steps "
            f"{args.steps}, or --steps itself)",
            file=sys.stderr,
        )
        return EXIT_INPUT
    try:  # PyTorch comes with the train extra only
        from app.ml.train.anatomy.export import export_onnx
        from app.ml.train.anatomy.loop import TrainConfig, train
        from app.ml.train.common.optim import set_threads
    except ImportError as exc:
        print(
            f"priorsync train needs the train extra (pip install 'priorsync[train]'): {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    from app.ml.runtime.model import default_model_path
    from app.ml.runtime.preprocess import InputSpec
    from app.ml.train.anatomy.choose import choose_snapshot, load_snapshot, validation_pairs
    from app.ml.train.anatomy.data import build_bank
    from app.ml.train.anatomy.loop import snapshot_path
    from app.ml.train.anatomy.quick_eval import OnnxEmbedder, evaluate_nearest_neighbour
    from app.ml.train.common.checkpoint import save_checkpoint
    from app.sim import followup
    from app.sim.followup import SIM_PRESETS, simulate_followup
    from app.sim.roles import bodies, openkbp_number, region_of, role_of
    from app.sim.sources import SourceError, available_sources, load_source

    set_threads(args.threads)
    run_dir: Path = args.run_dir or Path("runs") / f"seed{args.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = InputSpec()
    cfg = TrainConfig(seed=args.seed, steps=args.steps, sampling="region")
    params = SIM_PRESETS["train"]
    # The bank must be rebuilt when the simulator changes: key it on its source.
    sim_code = Path(followup.__file__).read_bytes().decode("utf-8", "replace")
    train_volumes = bodies("training")
    if any(role_of(n) != "training" for n in train_volumes):  # guards a future edit of roles
        print("priorsync train: a non-training body is listed for training", file=sys.stderr)
        return EXIT_FAILURE

    def bank_scans(name: str) -> int:
        return args.bank_scans if openkbp_number(name) is None else args.bank_scans_openkbp

    t0 = time.perf_counter()
    try:
        bank = build_bank(
            train_volumes,
            bank_scans,
            args.seed,
            spec,
            load_source=load_source,
            simulate=lambda source, rng: simulate_followup(source, params, rng),
            cache_dir=run_dir,
            cache_key=sim_code + repr(params),
        )
    except SourceError as exc:
        print(f"priorsync train: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    log.info("slice bank: %d slices in %.0f s", bank.n_slices, time.perf_counter() - t0)

    result = train(
        cfg,
        bank,
        spec,
        run_dir=run_dir,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        regions=[region_of(n) for n in train_volumes],
        snapshot_every=args.snapshot_every,
    )
    final_snapshot = snapshot_path(run_dir, result.steps_done)
    if not final_snapshot.exists():  # the last step is always a candidate
        save_checkpoint(
            final_snapshot,
            {
                "config": cfg.to_dict(),
                "model": result.model.state_dict(),
                "step": result.steps_done,
            },
        )
    named = [n for n in train_volumes if openkbp_number(n) is None]
    n_openkbp = len(train_volumes) - len(named)
    training_data = (
        f"{args.bank_scans} simulated follow-ups (SIM_PRESETS['train']) plus the source of each of "
        + "; ".join(f"{n} ({SOURCE_LICENCES.get(n, '?')})" for n in named)
        + f"; and {args.bank_scans_openkbp} plus the source of each of {n_openkbp} OpenKBP "
        f"training patients ({SOURCE_LICENCES['openkbp']}); a body region is drawn first"
    )
    command = (
        f"priorsync train --seed {args.seed} --steps {args.steps} --bank-scans {args.bank_scans}"
        f" --bank-scans-openkbp {args.bank_scans_openkbp}"
    )

    def export(model, path: Path) -> Path:
        return export_onnx(
            model,
            spec,
            path,
            name=MODEL_NAME,
            version=MODEL_VERSION,
            training_data=training_data,
            extra_metadata={
                "priorsync.train_command": command,
                "priorsync.train_config": json.dumps(cfg.to_dict()),
            },
        )

    chosen_model, choice = result.model, None
    available = available_sources(bodies("validation"))
    # Named validation bodies and a few OpenKBP ones: enough to rank snapshots.
    validation = [n for n in available if openkbp_number(n) is None]
    validation += [n for n in available if openkbp_number(n) is not None][:4]
    if export_step is not None:
        chosen_model = load_snapshot(snapshot_path(run_dir, export_step))
        log.info("exporting the snapshot of step %d (--export-step)", export_step)
    elif args.eval_pairs and validation:
        pairs = validation_pairs(validation, spec, pairs=1)
        shipped = default_model_path()
        choice = choose_snapshot(
            run_dir,
            pairs,
            export,
            threads=args.threads,
            reference=shipped if shipped.is_file() else None,
        )
        chosen_model = load_snapshot(snapshot_path(run_dir, choice.step))
        log.info("chosen on validation: step %d %s", choice.step, choice.scores[choice.step])
    out_path = export(chosen_model, args.out / f"{MODEL_NAME}.onnx")
    log.info("exported %s (%.2f MB)", out_path, out_path.stat().st_size / 1e6)
    summary: dict = {
        "command": command,
        "config": cfg.to_dict(),
        "bank_slices": bank.n_slices,
        "final_loss": result.final_loss,
        "final_batch_top1_mm": result.final_top1_mm,
        "steps_per_s": result.steps_per_s,
        "model": str(out_path),
        "model_bytes": out_path.stat().st_size,
        "validation_choice": choice.to_dict() if choice else None,
        "export_step": export_step,
    }
    if args.eval_pairs and validation:
        embedder = OnnxEmbedder(out_path, threads=args.threads)
        for preset in ("standard", "hard"):
            figures = evaluate_nearest_neighbour(
                embedder, validation, preset, args.eval_pairs, seed=12345
            )
            summary[f"validation_{preset}"] = {k: vars(v) for k, v in figures.items()}
            for name, fig in figures.items():
                log.info("validation %s %s: %s", preset, name, fig.line())
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return EXIT_OK
