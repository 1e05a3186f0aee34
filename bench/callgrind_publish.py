"""Instructions the server executes per publish, counted by ``valgrind --tool=callgrind``.

Wall-clock figures on a shared machine vary by 35 % between rounds; instruction counts do not.
This runs ``rtm2 serve`` (embedded engine) under callgrind and drives it from this process with
the raw client of ``rtm2 bench peers`` (no SDK): N subscribers to a message channel and one
publisher that sends 128-byte messages **one at a time** (the next only once the previous one is
acknowledged and at every subscriber), so every publish is one event-loop pass of its own and
the count does not depend on how fast the machine is. The server runs twice, with ``--few``
and ``--many`` publishes; everything but the publishes (start-up, logins, shutdown) is the same
in both, so ``(I_many - I_few) / (many - few)`` is the cost of one publish, receive to writes.

    .venv/bin/python bench/callgrind_publish.py                 # print the counts
    .venv/bin/python bench/callgrind_publish.py --check         # compare with the baseline
    .venv/bin/python bench/callgrind_publish.py --update        # write the baseline
    .venv/bin/python bench/callgrind_publish.py --compiled      # the `make compile` build

``make bench-check`` runs ``--check``: it fails when a count is more than 5 % above
``bench/callgrind_baseline.json``. After a change that is meant to cost more (or that saves),
refresh the baseline with ``--update`` and commit it with the change, saying why.
Counts depend on the Python build and the locked dependencies: refresh the baseline after
changing either. ``--keep DIR`` keeps the callgrind output files for ``callgrind_annotate``.
The server runs pure Python (``RTM2_COMPILED=0``) unless ``--compiled`` asks for the mypyc
build (``RTM2_COMPILED=1``: it must be current); its counts have their own baseline entries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rtm2.cli.bench import BENCH_APP
from rtm2.cli.peers import RTM2Client, Tally, _rtm2_config, payload

BASELINE = Path(__file__).with_name("callgrind_baseline.json")
TOLERANCE = 0.05
WARMUP = 50


def serve(tmp: Path, out: Path, compiled: bool) -> tuple[subprocess.Popen[str], int]:
    """``rtm2 serve`` under callgrind, not counting until ``instrument`` turns it on."""
    config = _rtm2_config(tmp)
    env = {**os.environ, "PYTHONHASHSEED": "0", "RTM2_COMPILED": "1" if compiled else "0"}
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        "--dump-instr=no",
        *(sys.executable, "-m", "rtm2", "serve", "--port", "0", "--no-http"),
        *("--log-level", "warning", "--config", str(config)),
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp, env=env
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        match = re.search(r"serving on ws://[^:]+:(\d+)", line)
        if match:
            proc.stdout.close()
            return proc, int(match.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("rtm2 serve did not start under valgrind")


def control(pid: int, *args: str) -> None:
    """``callgrind_control`` (through vgdb, so it reaches a server blocked in epoll too)."""
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


async def drive(proc: subprocess.Popen[str], port: int, subscribers: int, publishes: int) -> None:
    tally = Tally(subscribers)
    subs = []
    for i in range(subscribers):

        def got(data: bytes, i: int = i) -> None:
            tally.got(i, data)

        subs.append(await RTM2Client.open(port, f"s{i}", BENCH_APP, got))
    pub = await RTM2Client.open(port, "p", BENCH_APP)
    seq = 0

    async def one() -> None:
        nonlocal seq
        pub.write(pub.publish_frame(seq + 10, payload(seq)))
        seq += 1
        await asyncio.wait_for(tally.expect(seq * subscribers).wait(), 60)
        for _ in range(1000):  # the reply leaves in the same pass as the deliveries
            if pub.acks >= seq:
                break
            await asyncio.sleep(0)

    for _ in range(WARMUP):  # uncounted: caches, first-use state, the JIT's translations
        await one()
    control(proc.pid, "--instr=on")
    for _ in range(WARMUP):
        await one()
    control(proc.pid, "--zero")
    for _ in range(publishes):
        await one()
    control(proc.pid, "--dump")
    lost = sum(seq - s for s in tally.next_seq)
    if lost or tally.reordered or pub.errors:
        raise RuntimeError(f"{lost} lost, {tally.reordered} reordered, {pub.errors} errors")
    for client in (pub, *subs):
        client.close()


def total(out: Path) -> int:
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump next to {out}")
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


def count(subscribers: int, publishes: int, keep: Path | None, compiled: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep or Path(tmp)) / f"callgrind.n{subscribers}.out"
        proc, port = serve(Path(tmp), out, compiled)
        try:
            asyncio.run(drive(proc, port, subscribers, publishes))
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return total(out)


def measure(publishes: int, keep: Path | None, compiled: bool) -> dict[str, float]:
    counts: dict[str, float] = {}
    build = " (compiled)" if compiled else ""
    for n in (1, 10):
        counts[f"instructions per publish, {n} subscriber(s){build}"] = round(
            count(n, publishes, keep, compiled) / publishes
        )
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishes", type=int, default=500, help="publishes counted per N")
    parser.add_argument("--check", action="store_true", help="fail on > 5 %% over the baseline")
    parser.add_argument("--update", action="store_true", help="write the baseline file")
    parser.add_argument("--keep", type=Path, help="keep the callgrind output files here")
    parser.add_argument(
        "--compiled", action="store_true", help="count the `make compile` build (must be current)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install -y valgrind)", file=sys.stderr)
        return 2
    counts = measure(args.publishes, args.keep, args.compiled)
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    failed = False
    for name, value in counts.items():
        line = f"{name}: {value:,.0f}"
        if name in baseline:
            ratio = value / baseline[name]
            line += f" (baseline {baseline[name]:,.0f}, {ratio - 1:+.1%})"
            if ratio > 1 + TOLERANCE:
                line += "  REGRESSION"
                failed = True
        print(line)
    if args.update:
        # The other build's entries stay as they were.
        BASELINE.write_text(json.dumps(baseline | counts, indent=2) + "\n")
        print(f"wrote {BASELINE}")
        return 0
    if args.check:
        if not counts.keys() & baseline.keys():
            print(f"no baseline at {BASELINE}: run with --update first", file=sys.stderr)
            return 2
        if failed:
            print(f"more than {TOLERANCE:.0%} over the baseline", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
