"""Mistakes a new user makes, tried as they would: `python -m stream.cli ...` as a real
process. Each ends in one line on stderr naming what to fix, never a traceback; a signal
always ends the process within 10 s, whatever is down."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REDIS_URL, http_status, unique_settings, wait_until
from stream.tools.broker import EmbeddedBroker, EmbeddedRedis, free_port

#: Every signalled stop must end the process this soon (contract: within 10 s).
STOP_WITHIN_SECONDS = 10.0


def cli_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of a user with no .env file, and these CALLSTREAM_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    env |= {"CALLSTREAM_HTTP_HOST": "127.0.0.1", "CALLSTREAM_HTTP_PORT": str(free_port()),
            "CALLSTREAM_REDIS_URL": REDIS_URL,
            "CALLSTREAM_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}"}
    return env | variables


def cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def assert_one_line(err: str, *parts: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("callstream: "), err
    for part in parts:
        assert part in lines[0], err


def stop_with(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[float, int, str]:
    """Signal the process; how long it took to end, its status and its stderr."""
    started = time.monotonic()
    process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=STOP_WITHIN_SECONDS + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"still running {STOP_WITHIN_SECONDS + 5} s after the signal: "
                             f"{err[-2000:]}") from None
    return time.monotonic() - started, process.returncode, err


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_run_on_a_port_in_use_says_so_in_one_line(tmp_path: Path, taken_port: int) -> None:
    env = cli_env(tmp_path, CALLSTREAM_HTTP_PORT=str(taken_port))
    status, err = finished(cli(tmp_path, "run", env=env))
    assert status == 2
    assert_one_line(err, f"port {taken_port} is already in use", "CALLSTREAM_HTTP_PORT")


def test_demo_on_a_port_in_use_stops_at_once(tmp_path: Path, taken_port: int) -> None:
    started = time.monotonic()
    status, err = finished(cli(tmp_path, "demo", "--port", str(taken_port),
                               env=cli_env(tmp_path)))
    assert time.monotonic() - started < 5
    assert status == 2
    assert_one_line(err, f"port {taken_port} is already in use", "--port")
    assert "wallboard" not in err  # no banner pointing at the other program


def test_redis_url_without_a_scheme(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CALLSTREAM_REDIS_URL="localhost:6379")
    status, err = finished(cli(tmp_path, "run", env=env))
    assert status == 2
    assert_one_line(err, "CALLSTREAM_REDIS_URL", "redis://localhost:6379")


def test_optout_with_redis_down(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CALLSTREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    status, err = finished(cli(tmp_path, "optout", "add", "+33 6 12 34 56 78", env=env))
    assert status == 2
    assert_one_line(err, "Redis does not answer", "CALLSTREAM_REDIS_URL")


def test_optout_round_trip(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    added = cli(tmp_path, "optout", "add", "+33 6 12 34 56 78", env=env)
    out, err = added.communicate(timeout=20)
    assert added.returncode == 0 and err == ""
    number = out.split()[-1]
    assert number == "33612345678"  # normalised as contract §1 says
    listed = cli(tmp_path, "optout", "list", env=env)
    assert listed.communicate(timeout=20)[0].split() == ["*******5678"]  # masked
    shown = cli(tmp_path, "optout", "list", "--show", env=env)
    assert shown.communicate(timeout=20)[0].split() == [number]
    # the same caller written another way is the same entry
    assert finished(cli(tmp_path, "optout", "remove", "33 612-345-678", env=env))[0] == 0
    emptied = cli(tmp_path, "optout", "list", env=env)
    assert "empty" in emptied.communicate(timeout=20)[0]


def test_a_policy_file_with_several_mistakes(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nsla_seconds = -1\ntimezone = 'Mars/Base'\n"
                      "[queues.sales]\ncolour = 'red'\n", encoding="utf-8")
    env = cli_env(tmp_path, CALLSTREAM_POLICY_FILE=str(policy))
    status, err = finished(cli(tmp_path, "run", env=env))
    assert status == 2
    assert_one_line(err, str(policy), "3 problems", "defaults.sla_seconds", "defaults.timezone",
                    "queues.sales.colour")


async def _redis_answered(url: str) -> bool:
    return bool((await http_json_any(url + "/readyz"))["redis"])


async def test_kafka_bootstrap_that_is_not_kafka(tmp_path: Path) -> None:
    """Pointed at the Redis port: /readyz blames Kafka (not Redis), the log names the
    setting once, and SIGTERM ends the process at once."""
    env = cli_env(tmp_path, CALLSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:6379")
    url = f"http://127.0.0.1:{env['CALLSTREAM_HTTP_PORT']}"
    process = cli(tmp_path, "run", env=env)
    try:
        await wait_until(lambda: _answers(url + "/readyz"), timeout=15)
        await wait_until(lambda: _redis_answered(url), timeout=10)  # its first probe
        body = await http_json_any(url + "/readyz")
        assert body["redis"] is True and body["kafka"] is False
        assert "CALLSTREAM_KAFKA_BOOTSTRAP" in body["down"]["kafka"]
        await asyncio.sleep(11)  # one start-up attempt timed out: logged, retried
    finally:
        took, status, err = stop_with(process)
    assert took < STOP_WITHIN_SECONDS and status == 0, err
    assert "Traceback" not in err
    complaints = [line for line in err.splitlines() if "Kafka unreachable" in line]
    assert len(complaints) == 1 and "CALLSTREAM_KAFKA_BOOTSTRAP" in complaints[0], err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_during_a_start_up_attempt_ends_it(tmp_path: Path, sig: int) -> None:
    env = cli_env(tmp_path, CALLSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:6379")
    url = f"http://127.0.0.1:{env['CALLSTREAM_HTTP_PORT']}"
    process = cli(tmp_path, "run", env=env)
    await wait_until(lambda: _answers(url + "/readyz"), timeout=15)
    took, status, err = stop_with(process, sig)
    assert took < 2 and status == 0 and "Traceback" not in err, err


async def test_sigterm_while_redis_is_down_at_start(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CALLSTREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    url = f"http://127.0.0.1:{env['CALLSTREAM_HTTP_PORT']}"
    process = cli(tmp_path, "run", env=env)
    await wait_until(lambda: _answers(url + "/readyz"), timeout=15)
    body = await http_json_any(url + "/readyz")
    assert body["kafka"] is False and "redis" in body["down"]
    await asyncio.sleep(1)
    took, status, err = stop_with(process)
    assert took < 2 and status == 0 and "Traceback" not in err, err
    assert "CALLSTREAM_REDIS_URL" in err


async def test_sigterm_while_kafka_is_down_later(tmp_path: Path) -> None:
    own = EmbeddedBroker().start()  # a broker of this test's own, to take away
    try:
        settings = unique_settings(own.bootstrap)
        env = cli_env(tmp_path, **_kafka_env(settings))
        url = f"http://127.0.0.1:{env['CALLSTREAM_HTTP_PORT']}"
        process = cli(tmp_path, "run", env=env)
        try:
            await wait_until(lambda: _status_is(url + "/readyz", 200), timeout=30)
            own.stop()
            await wait_until(lambda: _status_is(url + "/readyz", 503), timeout=10)
            body = await http_json_any(url + "/readyz")
            assert body["kafka"] is False and body["redis"] is True, body
            await asyncio.sleep(2)
        finally:
            took, _, err = stop_with(process)
        assert took < STOP_WITHIN_SECONDS, err
        assert "Traceback" not in err
    finally:
        own.stop()


def _kafka_env(settings: object) -> dict[str, str]:
    names = ("kafka_bootstrap", "kafka_group", "topic_events", "topic_dlq", "topic_offers",
             "topic_cancels", "topic_alerts")
    return {f"CALLSTREAM_{name.upper()}": str(getattr(settings, name)) for name in names}


async def _answers(url: str) -> bool:
    return await http_status(url) is not None


async def _status_is(url: str, status: int) -> bool:
    return await http_status(url) == status


async def http_json_any(url: str) -> dict[str, object]:
    """The JSON body whatever the status (a 503 has one too)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body: dict[str, object] = await response.json()
        return body


async def test_sigterm_while_redis_hangs_later(tmp_path: Path, broker: EmbeddedBroker) -> None:
    redis = EmbeddedRedis().start()
    paused = redis._process
    assert paused is not None
    try:
        settings = unique_settings(broker.bootstrap, redis_url=redis.url)
        env = cli_env(tmp_path, CALLSTREAM_REDIS_URL=redis.url, **_kafka_env(settings))
        url = f"http://127.0.0.1:{env['CALLSTREAM_HTTP_PORT']}"
        process = cli(tmp_path, "run", env=env)
        try:
            await wait_until(lambda: _status_is(url + "/readyz", 200), timeout=30)
            paused.send_signal(signal.SIGSTOP)
            await wait_until(lambda: _status_is(url + "/readyz", 503), timeout=10)
        finally:
            took, _, err = stop_with(process)
        assert took < STOP_WITHIN_SECONDS, err
        assert "Traceback" not in err
    finally:
        paused.send_signal(signal.SIGCONT)
        redis.stop()
