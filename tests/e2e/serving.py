"""`make serve` + `make traffic` as a user runs them against a champion, for the e2e tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def serve_and_send_traffic(env: dict[str, str], state: Path, model: str, *, requests: int = 60) -> dict:
    """Serve ``model``'s champion (`cli serve`), send it ``requests`` requests of its holdout rows (`cli traffic`),
    stop the server with Ctrl-C; returns the traffic summary after checking every request got a 200."""
    from include.modelops.platform.local_stack import free_port

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "include.modelops.cli", *args],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    port = free_port("127.0.0.1")
    serve = subprocess.Popen(
        [sys.executable, "-m", "include.modelops.cli", "serve", "--model", model, "--port", str(port)],
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = state / f"traffic-{model}.json"
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(line.startswith("Serving ") for line in seen):
            line = serve.stdout.readline()
            if not line and serve.poll() is not None:
                break
            seen.append(line)
        assert any(line.startswith("Serving ") for line in seen), "".join(seen)[-3000:]
        res = cli(
            "traffic",
            "--model",
            model,
            "--url",
            f"http://127.0.0.1:{port}",
            "--count",
            str(requests),
            "--rate",
            "30",
            "--rows-per-request",
            "3",
            "--label-delay",
            "0",
            "--pending",
            "write",
            "--ready-timeout",
            "240",
            "--json",
            str(out),
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        sent = json.loads(out.read_text())
        assert sent["sent"] == requests and sent["answered"] == requests, sent
        assert sent["4xx"] == sent["5xx"] == sent["connection_errors"] == 0, sent
        return sent
    finally:
        serve.send_signal(2)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
