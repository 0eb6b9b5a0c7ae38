"""``--address``: training joins a Ray cluster that another process started (``ray start
--head``), as on a real cluster. A module of its own so that no other Ray instance of the
test session is running beside it."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from test_rllib import _argv, _ray  # the module beside this one


@pytest.mark.slow
def test_train_joins_a_running_ray_cluster_by_address(tmp_path):
    """``--address``: a head started with ``ray start`` (another process), joined by a run."""
    import shutil
    import subprocess
    import sys

    _ray()
    ray_cli = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = "6391"
    # a loopback cluster without Ray's token authentication (a real cluster shares a token
    # through RAY_AUTH_TOKEN on every node; that is Ray's business, not this package's)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # --block: the head lives as long as this process, which stops only what it started
    # (``ray stop`` would stop every Ray instance on the machine)
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}",
                             "--num-cpus=3", "--include-dashboard=false",
                             "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(120):  # until the head answers
            if subprocess.run([ray_cli, "status", f"--address=127.0.0.1:{port}"],
                              capture_output=True, env=env, timeout=60).returncode == 0:
                break
            time.sleep(0.5)
        out = tmp_path / "cluster"
        done = subprocess.run(
            [sys.executable, "train_agent.py", *_argv(out, "--total-timesteps", "128",
                                                       "--address", f"127.0.0.1:{port}")],
            capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads((out / "agent.json").read_text())["num_timesteps"] == 128
        # nothing listens on the next port: one line naming the address, exit status 2
        refused = subprocess.run(
            [sys.executable, "train_agent.py", *_argv(tmp_path / "nowhere", "--address",
                                                       "127.0.0.1:6399")],
            capture_output=True, text=True, env=env, timeout=300)
        assert refused.returncode == 2
        assert "--address '127.0.0.1:6399': cannot join a Ray cluster" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        head.terminate()
        head.wait(timeout=60)
        recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if recorded.is_file() and recorded.read_text().strip().endswith(f":{port}"):
            recorded.unlink()  # leave no stale "auto" address to a later run
