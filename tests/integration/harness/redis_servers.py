"""Redis servers of a test's own: started, crashed, their AOF cut."""

from __future__ import annotations

import os
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
