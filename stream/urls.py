"""Redis URLs as the settings take them and as logs may show them.

Messages never echo a URL that may hold a password.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from stream.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")
_URL_RULE = ("CALLSTREAM_REDIS_URL must look like redis://[[user]:password@]host[:port][/db] "
             "(rediss:// for TLS, unix:///path/to/socket)")


def check_redis_url(url: str) -> str:
    """Return ``url`` if it names a Redis; else ``ConfigError`` naming the setting.

    Messages never echo a URL that may hold a password.
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"{_URL_RULE}; {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        shown = f" (got {url!r}, which has no scheme: try redis://{url})" if (
            "@" not in url and "://" not in url) else ""
        raise ConfigError(f"{_URL_RULE}{shown}")
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise ConfigError(f"{_URL_RULE}; the host is missing")
    return url


def display_url(url: str) -> str:
    """``url`` as logs and banners may show it: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
