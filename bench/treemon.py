"""Runs a command and measures its whole process tree (a JVM that PySpark starts, DataFusion or
DuckDB threads): wall time, CPU time (user + sys of every process in the tree, as last seen
plus what the kernel reports for waited-for children) and peak RSS of the tree (the sum over
its processes, sampled every 50 ms). Linux /proc only.

Usage: treemon.py RESULT_JSON -- CMD ARGS...   (stdout/stderr of CMD pass through). Exits
with CMD's exit code. Does I/O (processes, /proc).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def sample(root: int) -> tuple[int, dict[int, float]]:
    """(RSS bytes of the tree, CPU seconds per pid)."""
    tree = children()
    todo, rss, cpu = [root], 0, {}
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        rss += int(fields[21]) * PAGE
    return rss, cpu


def main() -> int:
    result_path = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1 :]
    start = time.monotonic()
    process = subprocess.Popen(command)
    peak, seen = 0, {}
    while process.poll() is None:
        rss, cpu = sample(process.pid)
        peak = max(peak, rss)
        seen.update(cpu)
        time.sleep(0.05)
    wall = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Descendants the command waited for are in RUSAGE_CHILDREN; others (a JVM killed at
    # exit) only as last seen. Take the larger of the two per tree.
    cpu_total = max(usage.ru_utime + usage.ru_stime, sum(seen.values()))
    peak = max(peak, usage.ru_maxrss * 1024)
    with open(result_path, "w") as out:
        json.dump({"wall_s": round(wall, 2), "cpu_s": round(cpu_total, 2),
                   "peak_rss_mib": round(peak / 2**20), "exit": process.returncode}, out)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
