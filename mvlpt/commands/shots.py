"""``mvlpt shots table|figure``: the tables and the figure across the shot counts of a study whose config
lists several (``shots: [1, 5, 20]``, docs/shots.md); workflow/rules/studies.smk calls them."""

from __future__ import annotations

from mvlpt.errors import MvlptError


def _say(msg: str) -> None:
    print(msg, flush=True)


def _studies(pairs: list[str]) -> dict[int, str]:
    """``N=DIR`` options -> {N: DIR}; one sentence for a malformed or repeated one."""
    out: dict[int, str] = {}
    for item in pairs:
        count, sep, folder = item.partition("=")
        if not sep or not folder or not count.isdigit() or int(count) < 1:
            raise MvlptError(f"--study {item!r}: give a shot count and its tables folder, as 5=results/shots5/tables.")
        if int(count) in out:
            raise MvlptError(f"--study names shot count {count} twice; give each count's tables once.")
        out[int(count)] = folder
    return out


def run_table(args) -> int:
    from mvlpt.analysis import tables

    table = tables.shots_table(_studies(args.study))
    _say("wrote " + ", ".join(map(str, tables.write_table(table, args.out))))
    return 0


def run_figure(args) -> int:
    from mvlpt.analysis import figures, plots, tables

    fig = figures.shots_figure(tables.read_table(args.table))
    _say("wrote " + ", ".join(map(str, plots.save_figure(fig, args.out))))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("shots", help="tables and figure across the shot counts of a study (docs/shots.md)")
    sub = p.add_subparsers(dest="shots_verb", metavar="{table,figure}", required=True)
    q = sub.add_parser("table", help="one row per shot count and method: gain, baseline, zero-shot, linear probe")
    q.add_argument("--study", action="append", required=True, metavar="N=DIR", help="a shot count and its tables folder")
    q.add_argument("--out", required=True, help="the table (.csv, and .parquet next to it)")
    q.set_defaults(func=run_table)
    q = sub.add_parser("figure", help="gain, baseline and zero-shot against shots (two counts at least)")
    q.add_argument("--table", required=True, help="the table of `mvlpt shots table` (.csv or .parquet)")
    q.add_argument("--out", required=True, help="the figure (.png, and .pdf next to it)")
    q.set_defaults(func=run_figure)
