"""Kill a sweep with SIGKILL at random points, rerun it, and count the model calls repeated.

    python tests/kill_resume.py --kills 5 --seed 0 -- -m protocol=direct_passage,debate task.n=16

runs the sweep (the arguments after `--`, as given to `oversight`) three ways, each with its own
call cache and sweep directory under --work:
1. uninterrupted: the calls it makes are the reference;
2. killed: started, SIGKILLed after a random number of calls (drawn from what is left), restarted,
   `--kills` times, then run to the end;
3. the comparison of 1 and 2: calls made over all attempts of 2 minus those of 1 (the work a kill
   threw away), and whether every job's per-question results are identical.

"Calls made" counts every call handed to a backend, answered or not: each attempt runs the real
`oversight` app in a child process whose backends append the size of every batch they are handed to
a log file (flushed before the batch runs; `# answered N` after it returns), so calls lost in
flight are counted too. Prints one JSON
object; exit status 1 if more calls were repeated than `--kills` x `--batch` or results differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def child(log: str, args: list[str]) -> None:
    """Run `oversight ARGS` with every backend batch logged before it runs."""
    from oversight.app import cli
    from oversight.backends.base import Backend

    run = Backend.run

    def note(line: str) -> None:
        with open(log, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    delay = float(os.environ.get("KILL_RESUME_CHUNK_DELAY") or 0)

    async def logged(self, calls):
        note(f"{len(calls)}")
        if delay:  # a stand-in for a slow batch (tiny test models answer in milliseconds)
            await asyncio.sleep(delay)
        results = await run(self, calls)
        note(f"# answered {len(calls)}")
        return results

    note(f"# attempt pid {os.getpid()}")

    Backend.run = logged
    sys.argv = ["oversight", *args]
    cli.main()


def calls_made(log: Path) -> int:
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(int(line) for line in lines if line and not line.startswith("#"))


def attempt(args: list[str], sweep: Path, cache: Path, log: Path, kill_after: int | None, rng: random.Random,
            timeout: float, pause: float = 1.0, chunk_delay: float = 0.0) -> bool:
    """One attempt; with `kill_after`, SIGKILL it once that many calls have started (plus a random
    pause of up to `pause` s). Returns whether it was killed before finishing."""
    before = calls_made(log)
    env = {**os.environ, "OVERSIGHT_CALL_CACHE": str(cache), "KILL_RESUME_CHUNK_DELAY": str(chunk_delay)}
    command = [sys.executable, __file__, "--child", str(log), "--", *args, f"hydra.sweep.dir={sweep}", "progress=false"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    if kill_after is not None:
        while proc.poll() is None and calls_made(log) - before < kill_after and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, pause))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    _, err = proc.communicate(timeout=max(1, deadline - time.time()))
    if proc.returncode != 0:
        raise SystemExit(f"oversight {' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return False


def results(sweep: Path) -> dict[str, list]:
    """Every job's per-question judgments (probabilities and correctness), by job directory."""
    from oversight.records import read_records

    found = {}
    for summary in sorted(sweep.rglob("summary.json")):
        job = summary.parent
        found[str(job.relative_to(sweep))] = [
            (r.question_id, r.error, [(j.p, j.correct) for j in r.judgments]) for r in read_records(job)]
    return found


def measure(args: list[str], work: Path, kills: int, batch: int, seed: int, timeout: float = 3600,
            pause: float = 1.0, chunk_delay: float = 0.0) -> dict:
    """`chunk_delay` holds every batch that long before it runs (for models too fast to kill mid-batch)."""
    rng = random.Random(seed)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    attempt(args, work / "clean", work / "clean.sqlite", work / "clean.log", None, rng, timeout)
    clean_seconds = time.perf_counter() - started
    reference = calls_made(work / "clean.log")
    log = work / "killed.log"
    points, made_killed = [], 0
    while len(points) < kills:
        left = reference - made_killed  # roughly what is still to do
        point = rng.randint(1, max(1, left - 1))
        if not attempt(args, work / "killed", work / "killed.sqlite", log, point, rng, timeout, pause, chunk_delay):
            break  # finished before the kill point: the sweep is done
        points.append(point)
        made_killed = calls_made(log)
    attempt(args, work / "killed", work / "killed.sqlite", log, None, rng, timeout)
    total = calls_made(log)
    same = results(work / "clean") == results(work / "killed")
    report = {"kills": len(points), "kill_points_calls": points, "batch_size": batch, "calls_uninterrupted": reference,
              "calls_all_attempts": total, "calls_repeated": total - reference,
              "bound": len(points) * batch, "results_identical": same,
              "uninterrupted_seconds": round(clean_seconds, 1)}
    report["ok"] = same and report["calls_repeated"] <= report["bound"]
    return report


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        rest = sys.argv[3:]
        child(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=None,
                        help="the backend's batch size (default: backend.batch_size from the arguments, else 64)")
    parser.add_argument("--work", default="/tmp/oversight-kill-resume")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the oversight arguments")
    opts = parser.parse_args()
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    batch = opts.batch or next((int(a.split("=", 1)[1]) for a in args if a.startswith("backend.batch_size=")), 64)
    report = measure(args, Path(opts.work), opts.kills, batch, opts.seed)
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
