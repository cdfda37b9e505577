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


# What circusd (the parent of BentoML's workers) does to itself when it sets its title: the start of
# its environment block in /proc/<pid>/environ becomes NUL bytes, the rest of the entries stay.
BLANK_THE_START = (
    "import ctypes, time\n"
    "libc = ctypes.CDLL(None)\n"
    "environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, 'environ')\n"
    "ctypes.memset(environ[0], 0, len(ctypes.string_at(environ[0])) + 1)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_process_whose_environment_block_starts_blank_is_still_found_by_it():
    """psutil's environ() stops at the first empty entry and sees nothing of such a process, so a
    server's circusd was left running after a failed rollout; the owner mark must still find it."""
    from include.modelops.platform import processes

    me = f"{os.getpid()}:{processes.start_ticks(os.getpid())}"
    proc = subprocess.Popen(
        [sys.executable, "-c", BLANK_THE_START],
        env={"AAA_FIRST": "blanked", **os.environ, "XYZ_TITLED": "yes", processes.OWNER_ENV: me},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        raw = open(f"/proc/{proc.pid}/environ", "rb").read()
        assert raw.startswith(b"\0") and b"XYZ_TITLED=yes" in raw
        assert psutil.Process(proc.pid).environ().get("XYZ_TITLED") is None  # what psutil sees
        assert processes.pids_with_env("XYZ_TITLED", "yes") == [proc.pid]
        assert proc.pid in processes.pids_with_env(processes.OWNER_ENV, me)
        assert processes.owner_gone(proc.pid) is False  # its owner (this test) runs
    finally:
        proc.kill()
        proc.wait()
