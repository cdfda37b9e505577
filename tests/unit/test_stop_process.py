"""processes.stop_process leaves nothing behind, even processes that left the group."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil

from include.modelops.platform.processes import stop_process

# A parent in its own session (as every server the project starts) whose child moves to a process
# group of its own, as Airflow's task supervisors do: a signal to the parent's group misses it.
PARENT = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setpgid(0, 0); time.sleep(300)'])\n"
    "time.sleep(300)\n"
)


def test_a_descendant_in_its_own_process_group_is_stopped_too():
    proc = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    kids: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 20
        while not (kids := psutil.Process(proc.pid).children(recursive=True)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(kids) == 1
        while os.getpgid(kids[0].pid) == os.getpgid(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # until the child has moved to its own group
        assert os.getpgid(kids[0].pid) != os.getpgid(proc.pid)

        stop_process(proc, timeout_s=5)

        assert proc.poll() is not None
        assert not kids[0].is_running() or kids[0].status() == psutil.STATUS_ZOMBIE
    finally:
        if proc.poll() is None:  # a failed assertion must not leave them running
            proc.kill()
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                kid.kill()
