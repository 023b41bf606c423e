"""The files of deploy/ as the deploy tests read them: paths, rules, dashboards and queries."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES = RULES_DIR / "callstream.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "callstream.rules.test.yml"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
COMPOSE = ROOT / "docker-compose.yml"


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is needed to read the YAML deploy files (test extra `pyyaml`)"
    )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Prometheus rules ---------------------------------------------------------------------


def rule_files() -> list[Path]:
    """Every shipped rules file (prometheus.yml loads rules/*.rules.yml)."""
    return sorted(RULES_DIR.glob("*.rules.yml"))


def rule_groups() -> list[dict[str, Any]]:
    return [group for path in rule_files() for group in load_yaml(path)["groups"]]


def recorded_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def recording_rules() -> dict[str, dict[str, Any]]:
    return {
        rule["record"]: rule
        for group in rule_groups()
        for rule in group["rules"]
        if "record" in rule
    }


def alerting_rules() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule for group in rule_groups() for rule in group["rules"] if "alert" in rule
    }


# --- Grafana dashboards -------------------------------------------------------------------


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, the children of (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])}


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) for every target of every panel of one dashboard."""
    return [
        (
            f"{board['uid']} panel {panel['id']} {panel.get('title')!r} {target['refId']}",
            target["expr"],
        )
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]


#: `$name`, `${name}`, `${name:format}` and the old `[[name]]` (`$1` in a label_replace
#: replacement is no variable).
_NAME = r"[A-Za-z_]\w*"
_VARIABLE = re.compile(rf"\$\{{({_NAME})(?::\w+)?\}}|\$({_NAME})|\[\[({_NAME})\]\]")


def substitute(expr: str, value: Callable[[str], str]) -> str:
    """``expr`` with every Grafana variable replaced by ``value(name)``."""
    return _VARIABLE.sub(lambda m: value(m.group(1) or m.group(2) or m.group(3)), expr)


def variable_names(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(3) for m in _VARIABLE.finditer(expr)}


@contextmanager
def running(args: list[str], output: IO[bytes] | int = subprocess.DEVNULL
            ) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for the length of a with block, then terminated and reaped."""
    process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
