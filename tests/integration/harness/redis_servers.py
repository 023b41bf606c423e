"""Redis servers of a test's own: started, crashed, their AOF cut; a Redis Cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def start_redis(port: int, directory: str, *extra: str) -> Any:
    """A redis-server of the test's own (``subprocess.Popen``), listening when returned."""
    import subprocess

    from stream.tools.broker import wait_for_port

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def crash_and_cut_aof(process: Any, port: int, directory: str) -> Any:
    """SIGKILL a Redis running with AOF, cut the last third off its AOF (as a host crash
    with ``appendfsync everysec`` can), repair it and start it again; the new process."""
    import glob
    import subprocess

    process.kill()
    process.wait()
    incr = glob.glob(os.path.join(directory, "appendonlydir", "*.incr.aof"))[0]
    with open(incr, "r+b") as aof:
        aof.truncate(os.path.getsize(incr) * 2 // 3)
    subprocess.run(["redis-check-aof", "--fix", incr], input=b"y\n", capture_output=True,
                   check=True)
    return start_redis(port, directory, "--appendonly", "yes")


@contextlib.contextmanager
def redis_cluster(nodes: int = 3, *extra: str) -> Iterator[list[int]]:
    """A Redis Cluster of ``nodes`` primaries of its own, all 16384 slots covered; their
    ports. ``extra``: more redis-server options (``--appendonly yes``...)."""
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    import redis

    from stream.tools.broker import free_port, wait_for_port

    directory = Path(tempfile.mkdtemp(prefix="callstream-cluster-"))
    ports: list[int] = []
    while len(ports) < nodes:  # a node also listens on port + 10000 (its cluster bus)
        if (port := free_port()) < 55000 and port + 10000 not in ports:
            ports.append(port)
    processes = []
    try:
        for port in ports:
            (directory / str(port)).mkdir()
            processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes",
                 "--cluster-config-file", str(directory / str(port) / "nodes.conf"),
                 "--dir", str(directory / str(port)), "--save", "", "--appendonly", "no",
                 *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port(port)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, check=True)
        deadline = time.monotonic() + 10
        while redis.Redis(port=ports[0]).execute_command("CLUSTER INFO")["cluster_state"] != "ok":
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
