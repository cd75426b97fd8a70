"""The server processes' CPU, read from /proc across a process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from wingman.loadtest.processes import CLOCK_TICKS, ProcessSampler, process_tree

# A parent that starts a child which, after a pause, keeps a core busy for BUSY seconds of its
# own CPU time; both then sleep until killed.
BUSY = 0.5
TREE = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import time
time.sleep(0.5)
end = time.process_time() + {BUSY}
while time.process_time() < end:
    pass
time.sleep(60)
'''])
print(child.pid, flush=True)
time.sleep(60)
"""


def _own_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def test_cpu_seconds_count_the_whole_tree_between_start_and_stop() -> None:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    idle = subprocess.Popen(["sleep", "60"])
    try:
        assert process_tree([parent.pid]) == [parent.pid, child]
        sampler = ProcessSampler({"tree": parent.pid, "idle": idle.pid})
        sampler.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _own_cpu(child) < BUSY:
            time.sleep(0.05)
        sampler.stop()
        used = sampler.cpu_seconds()
        # The child's busy loop counts under its parent's tree, and nothing under another's.
        assert used["tree"] >= BUSY * 0.9
        assert used["idle"] < 0.05
        report = sampler.report(seconds=2.0)
        assert report["tree"]["cpu_percent"] == round(100 * used["tree"] / 2.0, 1)
    finally:
        os.kill(child, signal.SIGKILL)
        for process in (parent, idle):
            process.kill()
            process.wait()
