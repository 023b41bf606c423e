"""The package's import edges follow its flow: Kafka -> parse -> apply in Redis -> act -> publish.

A part may import only the parts before it (and the shared modules at the top of
``stream/``), so a module near the end of the line never reaches back into one near its
start: figures import neither state nor Kafka, parsing knows no storage, state never
imports ingest, act or publish, ingest hands facts on through its hooks and counts through
an observer, act decides on figures injected from state, never on what publish shows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "stream"

#: The top-level modules every part may use (settings, errors, time format, readiness...).
SHARED = "shared"
#: part -> the parts (and third-party libraries of the I/O edges) it may import.
ALLOWED: dict[str, set[str]] = {
    SHARED: {SHARED},
    "parse": {SHARED, "parse"},
    "figures": {SHARED, "figures"},
    "state": {SHARED, "parse", "state"},
    "ingest": {SHARED, "parse", "state", "ingest"},
    "act": {SHARED, "parse", "figures", "state", "ingest", "act"},
    "publish": {SHARED, "parse", "figures", "state", "ingest", "act", "publish"},
    "tools": {SHARED, "parse", "ingest", "tools"},
    "app": {SHARED, "parse", "figures", "state", "ingest", "act", "publish", "tools", "app"},
    "cli": {SHARED, "app", "tools", "cli"},
}
#: Libraries that are one part's own door to a service; other parts must not speak them.
LIBRARIES = {
    "aiokafka": {"ingest", "act", "app", "tools"},
    "redis": {"state", "ingest", "act", "publish", "app"},
    "prometheus_client": {"publish"},
    "aiomqtt": {"publish"},
    "aiohttp": {"publish", "app"},
}


def part_of(module: str) -> str:
    """``stream.state.store`` -> ``state``; top-level modules are shared, but the CLI."""
    names = module.split(".")
    if len(names) == 2 and names[1] == "cli":
        return "cli"
    if len(names) == 1 or (len(names) == 2 and not (PACKAGE / names[1]).is_dir()):
        return SHARED
    return names[1]


def imported(module: str, source: str) -> set[str]:
    """Every module ``source`` imports (``TYPE_CHECKING`` ones too), as absolute names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names
                         if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).exists())
    return found


def forbidden_edges(sources: dict[str, str]) -> list[str]:
    """``importer -> imported`` for each edge that goes against the flow."""
    edges = []
    for module, source in sorted(sources.items()):
        part = part_of(module)
        for target in sorted(imported(module, source)):
            top = target.split(".")[0]
            if top == "stream":
                if target != "stream" and part_of(target) not in ALLOWED[part]:
                    edges.append(f"{module} -> {target}")
            elif top in LIBRARIES and part not in LIBRARIES[top]:
                edges.append(f"{module} -> {target}")
    return edges


def package_sources() -> dict[str, str]:
    sources = {}
    for path in PACKAGE.rglob("*.py"):
        names = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        sources[".".join(names)] = path.read_text(encoding="utf-8")
    return sources


def test_every_import_follows_the_flow() -> None:
    assert forbidden_edges(package_sources()) == []


def test_every_part_has_a_place_in_the_flow() -> None:
    parts = {part_of(module) for module in package_sources()}
    assert parts <= ALLOWED.keys(), parts - ALLOWED.keys()
    assert {"parse", "figures", "state", "ingest", "act", "publish", "app", "tools"} <= parts


@pytest.mark.parametrize(("module", "source"), [
    ("stream.figures.queue", "from stream.state.store import StateStore"),
    ("stream.figures.queue", "import aiokafka"),
    ("stream.parse.events", "from redis.asyncio import Redis"),
    ("stream.state.store", "from ..act.callbacks import Callbacks"),
    ("stream.ingest.consumer", "from stream.publish import metrics"),
    ("stream.act.alerts", "from stream.publish.mqtt import MqttPublisher"),
    ("stream.config", "from stream.state.client import connect_redis"),
    ("stream.tools.replay", "from stream.app.run import run_processor"),
])
def test_an_edge_against_the_flow_is_found(module: str, source: str) -> None:
    assert len(forbidden_edges({module: source})) == 1


@pytest.mark.parametrize(("module", "source"), [
    ("stream.act.callbacks", "from stream.figures.estimates import WaitEstimates"),
    ("stream.publish.snapshots", "from ..state.store import StateStore"),
    ("stream.ingest.consumer", "from stream.config import Settings\nimport aiokafka"),
])
def test_an_edge_along_the_flow_is_allowed(module: str, source: str) -> None:
    assert forbidden_edges({module: source}) == []
