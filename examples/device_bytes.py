#!/usr/bin/env python3
"""Bytes the disk itself wrote per acknowledged write, etcd 3.4 and Baton side by side.

Runs the shared side-by-side harness (`../shared/peers/efficiency.py`: 3 members each, the
same closed-loop load of 100-byte puts) and adds, for each system, the sectors the block
device under the data directories wrote during its load (`/sys/dev/block/MAJ:MIN/stat`,
field 7), after an `os.sync()` so that nothing written during the load is still in the page
cache. That counts what `/proc/PID/io` does not: the filesystem's journal (inode sizes,
extent conversions of preallocated space, block allocation), which an SD card writes as
surely as the data. Baton's bench runs with `--skip-floor` (its fsync floor writes about
190 MB). Run on a quiet machine: every other writer on that device is counted too.

usage: python3 examples/device_bytes.py [--clients 64] [--seconds 30] [--peers ../shared/peers]
Prints one JSON line per system: the harness's figures plus `device_bytes_per_write`.
"""
import argparse
import json
import os
import subprocess
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def device_stat_path(path):
    st = os.stat(path)
    return f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat"


def sectors_written(stat_path):
    return int(open(stat_path).read().split()[6])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--peers", default=os.path.join(REPO, "..", "shared", "peers"))
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.peers))
    import efficiency  # noqa: E402 (the shared harness)

    # Both systems keep their data under the temporary directory.
    stat_path = device_stat_path(os.environ.get("TMPDIR", "/tmp"))

    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if isinstance(cmd, list) and len(cmd) > 1 and cmd[1] == "bench":
            cmd = cmd + ["--skip-floor"]
        return real_run(cmd, *args, **kwargs)

    efficiency.subprocess = types.SimpleNamespace(
        run=run, Popen=subprocess.Popen, DEVNULL=subprocess.DEVNULL, PIPE=subprocess.PIPE)

    real_measure = efficiency.measure

    def measure(name, pids, run_load):
        sectors = {}

        def load():
            os.sync()
            before = sectors_written(stat_path)
            writes = run_load()
            os.sync()
            sectors["written"] = sectors_written(stat_path) - before
            return writes

        result = real_measure(name, pids, load)
        result["device_bytes_per_write"] = round(sectors["written"] * 512 / result["writes"], 1)
        return result

    efficiency.measure = measure
    for f in (lambda: efficiency.etcd(a.clients, a.seconds), lambda: efficiency.baton(REPO, a.clients, a.seconds)):
        print(json.dumps({"clients": a.clients, "seconds": a.seconds, **f()}), flush=True)


if __name__ == "__main__":
    main()
