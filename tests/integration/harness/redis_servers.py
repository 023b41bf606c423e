"""Redis servers of a test's own: started, crashed, their AOF cut; a Redis Cluster, and a
replica of one of its primaries that falls behind and is promoted."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
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


def _cluster_ports(n: int, taken: Sequence[int] = ()) -> list[int]:
    """``n`` free ports for Cluster nodes: each also listens on port + 10000 (its bus)."""
    from stream.tools.broker import free_port

    used = {*taken, *(p + 10000 for p in taken)}
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port < 55000 and not {port, port + 10000} & used:
            ports.append(port)
            used |= {port, port + 10000}
    return ports


def _cluster_node(port: int, directory: Path, *extra: str) -> Any:
    """A redis-server with Cluster mode on, no persistence (``subprocess.Popen``),
    listening when returned."""
    import subprocess

    from stream.tools.broker import wait_for_port

    (directory / str(port)).mkdir()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes",
         "--cluster-config-file", str(directory / str(port) / "nodes.conf"),
         "--dir", str(directory / str(port)), "--save", "", "--appendonly", "no",
         *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def _until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@contextlib.contextmanager
def redis_cluster(nodes: int = 3, *extra: str) -> Iterator[list[int]]:
    """A Redis Cluster of ``nodes`` primaries of its own, all 16384 slots covered; their
    ports. ``extra``: more redis-server options (``--appendonly yes``...)."""
    import shutil
    import subprocess
    import tempfile

    import redis

    directory = Path(tempfile.mkdtemp(prefix="callstream-cluster-"))
    ports = _cluster_ports(nodes)
    processes = []
    try:
        for port in ports:
            processes.append(_cluster_node(port, directory, *extra))
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, check=True)
        _until(lambda: redis.Redis(port=ports[0]).execute_command("CLUSTER INFO")[
            "cluster_state"] == "ok", "the cluster did not come up", timeout=10)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def cluster_replica(primary: int, *extra: str) -> Iterator[int]:
    """A replica of the Cluster primary at port ``primary``, joined and in sync; its port."""
    import shutil
    import tempfile

    import redis

    directory = Path(tempfile.mkdtemp(prefix="callstream-replica-"))
    [port] = _cluster_ports(1, taken=[primary])
    process = _cluster_node(port, directory, *extra)
    try:
        replica, source = redis.Redis(port=port), redis.Redis(port=primary)
        primary_id = source.execute_command("CLUSTER MYID").decode()
        replica.execute_command("CLUSTER MEET", "127.0.0.1", str(primary))
        _until(lambda: any(node["node_id"] == primary_id for node in _nodes(port).values()),
               "the replica did not meet the cluster")
        replica.execute_command("CLUSTER REPLICATE", primary_id)
        _until(lambda: in_sync(primary, port), "the replica did not sync")
        yield port
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def in_sync(primary: int, replica: int) -> bool:
    """The replica's link is up and it holds every write the primary made so far."""
    import redis

    offset = redis.Redis(port=primary).info("replication")["master_repl_offset"]
    link = redis.Redis(port=replica).info("replication")
    return bool(link.get("master_link_status") == "up"
                and link.get("slave_repl_offset", -1) >= offset)


def cut_replication(replica: int) -> None:
    """From now on the replica gets none of its primary's writes, while both go on (a
    partition, a link that stalls): it can no longer log in to the primary."""
    import redis

    client = redis.Redis(port=replica)
    client.config_set("masteruser", "callstream-cut-off")
    client.config_set("masterauth", "no such password")
    client.execute_command("CLIENT KILL TYPE master")
    _until(lambda: client.info("replication")["master_link_status"] == "down",
           "the replica is still linked")


def fail_over(primary: int, replica: int, others: Sequence[int]) -> None:
    """The primary dies; its replica takes its slots over at once (``CLUSTER FAILOVER
    TAKEOVER``, as an operator does), with whatever writes it had; returns once the other
    primaries know."""
    import redis

    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(port=primary).shutdown(nosave=True, now=True)
    redis.Redis(port=replica).execute_command("CLUSTER FAILOVER TAKEOVER")
    _until(lambda: all("master" in _nodes(port).get(f"127.0.0.1:{replica}", {}).get("flags", "")
                       for port in others), "the replica did not take the slots over")


def _nodes(port: int) -> dict[str, dict[str, Any]]:
    """What the node at ``port`` knows of the cluster's nodes, by address."""
    import redis

    nodes: dict[str, dict[str, Any]] = redis.Redis(
        port=port, decode_responses=True).execute_command("CLUSTER NODES")
    return nodes
