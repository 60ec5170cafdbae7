"""``dsa study --plan PLAN.yaml --out DIR``: train and evaluate every variant x seed of an ablation plan.

Resumable: rerun the same command after an interruption; finished variant x seed results are skipped, an
interrupted training continues from its last checkpoint. ``--report-only`` rewrites table.md / results.json from the
finished runs (e.g. while another ``dsa study --only ...`` process is still training other variants).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dsa_core.commands import UserError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", type=Path, required=True, help="study plan YAML (see study_plans/ablations_nano.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="study directory (data/, pretrain/, runs/, table.md)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the plan's seeds")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants (plus their bases)")
    parser.add_argument("--prepare-only", action="store_true", help="synthesize data and pretrain the backbone, then stop")
    parser.add_argument("--report-only", action="store_true", help="only aggregate finished runs into the tables")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (overrides the plan)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variant x seed runs side by side in separate processes (2 on a 2-core CPU with --threads 1)")
    parser.add_argument("--progress", action="store_true", help="show progress bars of training and evaluation")


def run(args: argparse.Namespace) -> int:
    from dsa_core.study.plan import load_plan
    from dsa_core.study.report import write_reports
    from dsa_core.study.runner import run_study

    plan = load_plan(args.plan)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        plan.threads = args.threads
    if args.only:
        plan.select(args.only)  # unknown names fail before any work
    if args.report_only:
        if not (args.out / "runs").is_dir():
            raise UserError(f"--report-only: {args.out / 'runs'} does not exist; nothing to aggregate "
                             "(run the study first, or check --out)")
        write_reports(plan, args.out)
    else:
        run_study(plan, args.out, seeds=args.seeds, only=args.only, prepare_only=args.prepare_only,
                  progress=args.progress and args.jobs == 1, jobs=args.jobs)
    if not args.prepare_only:
        print((args.out / "table.md").read_text())
    return 0
