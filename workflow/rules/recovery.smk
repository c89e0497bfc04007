# Recovery after Snakemake itself was killed (kill -9, a lost SSH session, a reboot).
#
# Snakemake then leaves its lock (.snakemake/locks/) and the incomplete markers of the jobs that were
# running. The markers are the profile's business (profiles/default: rerun-incomplete). The lock is
# this file's: Snakemake cannot tell a lock of a dead run from one of a live run, and `--unlock` by
# hand is only safe when nobody else works in the folder. So every Snakemake that runs this workflow
# records who it is, before it locks:
#
#   .snakemake/mvlpt-runs/<host>.<pid>.json   {host, pid, started, local}   (deleted when Snakemake exits)
#
# and marks the jobs it starts with the environment variable MVLPT_SNAKEMAKE_RUN=<host>:<pid>:<started>.
# At the next start the lock is removed (what `snakemake --unlock` does) only when every recorded
# run is known to be over: on this host, its process is gone (pid and start time), and none of its
# jobs still runs (an `mvlpt train` orphaned by the kill keeps writing its outputs; the lock is kept
# until it ends, and the warning names it). What cannot be checked from here keeps the lock, with a
# warning that says why, above Snakemake's own message (which explains `--unlock`): a run on another
# host (a shared file system), or a killed run that had submitted jobs to a cluster (they may still run).
#
# A record is evidence only while the folder is locked (a Snakemake locks it for as long as it runs
# jobs, and rewrites its record when its jobs start: register_run). So a start that finds no lock
# forgets every record, of any host: nothing holds the folder. `snakemake --unlock` is the user's word
# that nobody else works in the folder: it forgets every record too, so a stale record of another host
# (which cannot be checked from here) never blocks a later recovery. A kept lock names each record's
# file, host and pid, and that command.
#
# Runs only in the main Snakemake process (not in cluster jobs); uses psutil (a Snakemake dependency).

import atexit
import json
import os
import shutil
import socket
import sys

import psutil
from snakemake.logging import logger

RUNS_DIR = os.path.join(".snakemake", "mvlpt-runs")
LOCKS_DIR = os.path.join(".snakemake", "locks")
RUN_VARIABLE = "MVLPT_SNAKEMAKE_RUN"


def _run_marker(rec):
    return f"{rec['host']}:{rec['pid']}:{rec['started']}"


def _still_runs(rec):
    """Whether the process of ``rec`` (on this host) still runs: same pid and same start time."""
    try:
        return abs(psutil.Process(rec["pid"]).create_time() - rec["started"]) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to look at: assume alive
        return True


def _jobs_of(rec):
    """Processes started by the run of ``rec`` that still run (found by their MVLPT_SNAKEMAKE_RUN)."""
    marker, jobs = _run_marker(rec), []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(RUN_VARIABLE) == marker:
                jobs.append(proc)
        except psutil.Error:
            continue
    return jobs


def _read_runs():
    runs = []
    if os.path.isdir(RUNS_DIR):
        for name in sorted(os.listdir(RUNS_DIR)):
            path = os.path.join(RUNS_DIR, name)
            try:
                with open(path) as fh:
                    runs.append((path, json.load(fh)))
            except (OSError, ValueError):
                continue  # being written right now (atomic rename) or unreadable: not ours to judge
    return runs


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def forget_all_runs():
    """``snakemake --unlock``: the user says nobody else works in this folder; every record is forgotten
    (those of other hosts included). Returns what to tell."""
    runs = _read_runs()
    for path, _ in runs:
        _remove(path)
    if runs:
        who = ", ".join(f"host {rec.get('host')} pid {rec.get('pid')}" for _, rec in runs)
        return f"--unlock: forgot the records of the Snakemake runs in this folder ({who})."
    return None


def recover_from_killed_runs(argv=None):
    """Remove the lock when every recorded run is over, and forget those runs. Returns what to tell."""
    if "--unlock" in (sys.argv if argv is None else argv):
        return forget_all_runs()
    host = socket.gethostname()
    locked = os.path.isdir(LOCKS_DIR) and any(n.endswith(".lock") for n in os.listdir(LOCKS_DIR))
    if not locked:  # no Snakemake holds this folder: every record is stale (a live one rewrites its own at onstart)
        for path, rec in _read_runs():
            if rec.get("host") != host or not _still_runs(rec):
                if rec.get("host") == host and _jobs_of(rec):
                    continue  # its orphaned jobs are reported below
                _remove(path)
    over, busy, orphans = [], [], []  # runs that are over; reasons the folder may be in use
    for path, rec in _read_runs():
        if rec.get("host") != host:
            busy.append(f"a Snakemake on host {rec.get('host')} (pid {rec.get('pid')}), which cannot be checked from here "
                        f"(its record: {path}); if it is over, run `snakemake --unlock` once, which forgets the record")
        elif _still_runs(rec):
            busy.append(f"a running Snakemake (pid {rec['pid']})")
        elif jobs := _jobs_of(rec):
            pids = ", ".join(f"{p.pid} ({p.info['name']})" for p in jobs)
            orphans.append(f"jobs of a killed Snakemake (pid {rec['pid']}) that still run and write their outputs: "
                           f"pids {pids}; wait for them to end (or kill them), then rerun")
        elif not rec.get("local", True):
            busy.append(f"the cluster jobs of a killed Snakemake (pid {rec['pid']}), which may still run; once they "
                        f"have ended (squeue), remove the lock with `snakemake --unlock`")
            over.append(path)  # forgotten once the folder is unlocked
        else:
            over.append(path)
    if locked and (busy or orphans):
        return f"the lock of this folder is kept: it may still be in use by {'; by '.join(busy + orphans)}."
    for path in over:
        _remove(path)
    if orphans:
        return f"this folder is not locked, but there are {'; '.join(orphans)}."
    if locked and over:
        shutil.rmtree(LOCKS_DIR, ignore_errors=True)
        return "removed the lock left by a killed Snakemake; the jobs it was running are redone."
    return None


def record_this_run():
    """Write this run's record, mark its jobs, and delete the record when Snakemake exits."""
    me = psutil.Process()
    rec = {"host": socket.gethostname(), "pid": me.pid, "started": me.create_time()}
    _write_record(rec)
    os.environ[RUN_VARIABLE] = _run_marker(rec)
    atexit.register(_remove, _record_path(rec))
    return rec


def _record_path(rec):
    return os.path.join(RUNS_DIR, f"{rec['host']}.{rec['pid']}.json")


def _write_record(rec):
    os.makedirs(RUNS_DIR, exist_ok=True)
    path = _record_path(rec)
    with open(f"{path}.tmp", "w") as fh:
        json.dump(rec, fh)
    os.replace(f"{path}.tmp", path)


if workflow.is_main_process:
    message = recover_from_killed_runs()
    if message:
        logger.warning(message)
    THIS_RUN = record_this_run()



def register_run():
    """Called when the jobs are about to start (Snakefile's ``onstart``): this run's record.
    Jobs on a cluster are not processes of this host: a later start cannot see whether they run."""
    if workflow.is_main_process:
        _write_record({**THIS_RUN, "local": bool(workflow.local_exec)})
