"""``mvlpt preflight``: will the study of a config run through, and what will it cost?

    mvlpt preflight [--configfile FILE] [--deep] [--json OUT] [--profile DIR] [--calibrate] [--table1]

Prints a table per task and the study's checks (data, few-shot, weights, devices, disk, cost),
writes the same as JSON, and exits with status 2 when the study cannot run through.
"""

from __future__ import annotations

import sys


def run_preflight(args) -> int:
    from mvlpt.io import write_json
    from mvlpt.running.calibration import measure_calibration
    from mvlpt.running.preflight import format_report, load_config, run, with_defaults
    from mvlpt.running.task_check import POLICY_KEY

    cfg = load_config(args.configfile)
    if args.calibrate:
        path = measure_calibration(cfg, say=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"calibration stored in {path}; estimates now speak of this machine.", file=sys.stderr)
    rep = run(
        cfg,
        config_path=str(args.configfile),
        deep=args.deep,
        profile=args.profile,
        noise_from=args.noise_from,
        table1=args.table1,
    )
    full = with_defaults(cfg)
    print(format_report(rep, full["shots"], full[POLICY_KEY]))
    out = args.json
    write_json(rep.to_dict(), out)
    print(f"(report written to {out})")
    return 0 if rep.ok else 2


def add_parser(subparsers) -> None:
    from mvlpt.running.preflight import default_json_path

    p = subparsers.add_parser(
        "preflight",
        help="check a study before any job starts, and estimate its cost",
        description="Check, in seconds, that the study of a config can run through: data present and intact (and by "
        "which route), images per class against the shots and the few-shot policy, model weights resolvable "
        "offline, devices and the SLURM profile, disk space; and estimate its GPU-hours per method. Exit "
        "status 2 when it cannot run through; every problem is one sentence saying what to do.",
    )
    p.add_argument("--configfile", default="config/config.yaml", help="study config (default: %(default)s)")
    p.add_argument(
        "--noise-from",
        default=None,
        metavar="TABLES",
        help="a collected study's tables folder (pairs and runs): its noise prices the power estimate "
        "(default: the noise mvlpt measured on its designed world)",
    )
    p.add_argument(
        "--table1",
        action="store_true",
        help="check and price the paper's Table 1 study too (`snakemake table1`: config section table1, docs/multitask.md)",
    )
    p.add_argument("--deep", action="store_true", help="verify the data's sha256 too (reads every file), not only sizes")
    p.add_argument("--json", default=default_json_path(), metavar="OUT", help="report file (default: %(default)s)")
    p.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="the SLURM workflow profile the study is run with (e.g. workflow/profiles/slurm): read back its "
        "partition and GPU request, and count on GPU nodes (default: none, the jobs run here)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="first measure this machine's GPU (or CPU) for the config's model (a minute or two) and store "
        "it; the estimate then speaks of this hardware",
    )
    p.set_defaults(func=run_preflight)
