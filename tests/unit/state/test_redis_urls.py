"""Redis URLs: refused with a message naming the setting, shown without their password."""

from __future__ import annotations

import pytest

from stream.errors import ConfigError
from stream.state.client import CONNECT_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS, redis_options
from stream.urls import check_redis_url, display_url


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://:pw@cache.example:6380/2",
                                 "unix:///run/redis.sock", "REDIS://h"])
def test_urls_that_name_a_redis(url: str) -> None:
    assert check_redis_url(url) == url


@pytest.mark.parametrize(("url", "hint"), [
    ("localhost:6379", "try redis://localhost:6379"),
    ("127.0.0.1", "try redis://127.0.0.1"),
    ("http://localhost:6379", ""),
    ("redis://", "host is missing"),
    ("redis://h:port", ""),
])
def test_urls_that_do_not(url: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="CALLSTREAM_REDIS_URL must look like redis://") as info:
        check_redis_url(url)
    assert hint in str(info.value)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        check_redis_url("user:s3cret@localhost:6379")
    assert "s3cret" not in str(info.value)


def test_display_url_hides_the_password() -> None:
    assert display_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert display_url("rediss://app:s3cret@h/1") == "rediss://app:***@h/1"
    assert display_url("redis://h:6379/0") == "redis://h:6379/0"


def test_every_client_gets_timeouts() -> None:
    options = redis_options()
    assert options["socket_timeout"] == SOCKET_TIMEOUT_SECONDS <= 5
    assert options["socket_connect_timeout"] == CONNECT_TIMEOUT_SECONDS <= 5
