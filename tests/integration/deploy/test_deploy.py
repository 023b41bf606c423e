"""What an operator deploys (deploy/, Dockerfile, docker-compose.yml), checked with real tools.

promtool validates the Prometheus config, the rules and their unit tests, and parses every
query of the Grafana dashboard; redis-server and mosquitto start with the shipped configs.
Every metric name and label in the rules and the dashboard must be one of the contract's
(CONTRACT.md section 5, plus the journey and callback families of sections 2 and 3).
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.deploy_files import (
    ALERTMANAGER_CONFIG,
    COMPOSE,
    DASHBOARDS_DIR,
    DEPLOY,
    PROMETHEUS_CONFIG,
    ROOT,
    RULE_TESTS,
    RULES,
    alerting_rules,
    all_panels,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    load_yaml,
    recorded_names,
    recording_rules,
    rule_groups,
    running,
    substitute,
    variables,
)
from stream.config import QueuePolicy, Settings
from stream.tools.broker import free_port

DASHBOARD = DASHBOARDS_DIR / "callstream.json"
GRAFANA_DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "callstream.yml"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# --- The contract's metric families -------------------------------------------------------

OUTCOMES = frozenset(
    {
        "offered",
        "answered",
        "answered_in_sla",
        "abandoned",
        "short_abandoned",
        "callback_offered",
        "callback_accepted",
        "transferred_out",
    }
)
WINDOWS = frozenset({"5m", "15m", "1h"})  # the default CALLSTREAM_WINDOWS
AGENT_STATES = frozenset({"available", "busy", "wrapup", "away", "offline"})
EVENT_TYPES = frozenset(
    {
        "call.queued",
        "call.answered",
        "call.abandoned",
        "call.callback_accepted",
        "call.callback_attempt",
        "call.transferred",
        "call.ended",
        "agent.state",
        "unknown",
    }
)
#: Label name -> allowed values (None: any value, such as a queue id).
Labels = dict[str, frozenset[str] | None]
QUEUE: Labels = {"queue": None}
WINDOWED: Labels = {"queue": None, "window": WINDOWS}

FAMILIES: dict[str, Labels] = {
    "callstream_queue_calls_waiting": QUEUE,
    "callstream_queue_longest_wait_seconds": QUEUE,
    "callstream_queue_ewt_seconds": QUEUE,
    "callstream_queue_agents": {"queue": None, "state": AGENT_STATES},
    "callstream_queue_agents_required": QUEUE,
    "callstream_queue_window_calls": {"queue": None, "window": WINDOWS, "outcome": OUTCOMES},
    "callstream_queue_service_level_ratio": WINDOWED,
    "callstream_queue_abandon_ratio": WINDOWED,
    "callstream_queue_asa_seconds": WINDOWED,
    "callstream_queue_aht_seconds": WINDOWED,
    "callstream_calls_total": {"queue": None, "outcome": OUTCOMES},
    "callstream_callback_offers_total": {
        "queue": None,
        "kind": frozenset({"wait_threshold", "ewt_threshold", "missed_call"}),
    },
    "callstream_callback_results_total": {
        "queue": None,
        "result": frozenset({"reached", "unreached", "cancelled", "refused"}),
    },
    "callstream_alert_firing": {"queue": None, "kind": frozenset({"abandonment_spike"})},
    "callstream_queue_callers": {
        "queue": None,
        "state": frozenset({"missed", "recovered", "lost"}),
    },
    "callstream_queue_repeat_call_ratio": QUEUE,
    "callstream_queue_recovery_seconds": QUEUE,
    "callstream_lost_callers_total": QUEUE,
    "callstream_agent_state": {"agent": None, "state": AGENT_STATES},
    "callstream_agent_state_seconds": {"agent": None},
    "callstream_agent_answered": {"agent": None, "window": WINDOWS},
    "callstream_agent_aht_seconds": {"agent": None, "window": WINDOWS},
    "callstream_agent_occupancy_ratio": {"agent": None, "window": WINDOWS},
    "callstream_events_total": {
        "type": EVENT_TYPES,
        "result": frozenset(
            {"applied", "duplicate", "conflict", "orphan", "stale", "rejected"}
        ),
    },
    "callstream_event_delay_seconds": {},
    "callstream_consumer_lag_messages": {"partition": None},
}
HISTOGRAMS = frozenset({"callstream_event_delay_seconds"})
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
#: Series Prometheus makes itself: `up` per target, ALERTS per alert (any alert label).
PROMETHEUS_SERIES: dict[str, frozenset[str] | None] = {"up": TARGET_LABELS, "ALERTS": None}
ALERT_LABELS = frozenset({"alertname", "alertstate", "severity"})
KNOWN_LABELS = (
    frozenset(label for labels in FAMILIES.values() for label in labels)
    | TARGET_LABELS
    | ALERT_LABELS
    | {"le"}
)

# --- A small PromQL scanner: metric selectors and grouping labels -------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?(?:ms|[smhdwy])?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}])
    """,
    re.VERBOSE,
)
_AGGREGATORS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    }
)
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})


@dataclass
class Selector:
    name: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Scan:
    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match:
            raise AssertionError(f"cannot scan PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return body if literal[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def scan_promql(expr: str) -> Scan:
    """The metric selectors (name and matchers) and the by/on/... labels of one query."""
    tokens = _tokens(expr)
    scan = Scan()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text.lower() in _GROUPING and following == "(":
            i += 2
            while tokens[i][1] != ")":
                if tokens[i][0] == "ident":
                    scan.grouping_labels.add(tokens[i][1])
                i += 1
        elif kind == "ident" and (
            text.lower() in _KEYWORDS or text.lower() in _AGGREGATORS or following == "("
        ):
            pass  # an operator, an aggregation or a function call
        elif kind == "ident" or text == "{":
            selector = Selector(text if kind == "ident" else "")
            if following == "{" or text == "{":
                i += 1 if text == "{" else 2
                while tokens[i][1] != "}":
                    label, op, value = tokens[i][1], tokens[i + 1][1], tokens[i + 2][1]
                    selector.matchers.append((label, op, _unquote(value)))
                    i += 3
                    if tokens[i][1] == ",":
                        i += 1
            scan.selectors.append(selector)
        i += 1
    return scan


def _literal_alternatives(regex: str) -> list[str] | None:
    """``a|b|c`` -> [a, b, c]; None for a regex that is more than a list of literals."""
    if re.fullmatch(r"[A-Za-z0-9_.:-]+(\|[A-Za-z0-9_.:-]+)*", regex):
        return regex.split("|")
    return None


def selector_problems(selector: Selector, records: set[str]) -> list[str]:
    """Why a selector is not one of the contract's series (empty when it is)."""
    name = selector.name
    base, _, suffix = name.rpartition("_")
    if not name:
        return ["a selector without a metric name"]
    if name in FAMILIES and name in HISTOGRAMS:
        return [f"{name} is a histogram: use {name}_bucket, _sum or _count"]
    if name in FAMILIES:
        allowed: Labels = {**FAMILIES[name], **dict.fromkeys(TARGET_LABELS)}
    elif base in HISTOGRAMS and suffix in {"bucket", "sum", "count"}:
        allowed = dict.fromkeys(TARGET_LABELS | ({"le"} if suffix == "bucket" else set()))
    elif name in PROMETHEUS_SERIES:
        names = PROMETHEUS_SERIES[name]
        if names is None:
            return []
        allowed = dict.fromkeys(names)
    elif name in records:
        allowed = dict.fromkeys(KNOWN_LABELS)
    else:
        return [f"{name} is not a metric family of the contract"]
    problems = []
    for label, op, value in selector.matchers:
        if label not in allowed:
            problems.append(f"{name} has no label {label!r} (it has {sorted(allowed)})")
            continue
        values = allowed[label]
        if values is None:
            continue
        wanted = [value] if op in {"=", "!="} else _literal_alternatives(value)
        for item in wanted or []:
            if item not in values:
                problems.append(f"{name}{{{label}}}: {item!r} is not one of {sorted(values)}")
    return problems


def made_labels(expr: str) -> set[str]:
    """Labels a query makes itself: count_values("x", ...), label_replace(v, "x", ...)."""
    made = re.findall(r'count_values\(\s*"(\w+)"', expr)
    made += re.findall(r'"(\w+)",\s*"[^"]*",\s*"\w*",\s*"[^"]*"\s*\)', expr)
    return set(made)


def promql_problems(expr: str, records: set[str]) -> list[str]:
    scan = scan_promql(expr)
    problems = [p for s in scan.selectors for p in selector_problems(s, records)]
    known = KNOWN_LABELS | made_labels(expr)
    problems += [
        f"unknown grouping label {label!r}" for label in sorted(scan.grouping_labels - known)
    ]
    return [f"{p} in {expr!r}" for p in problems]


def test_the_promql_scanner_catches_wrong_names_and_labels() -> None:
    good = (
        'max by (queue) (callstream_queue_window_calls{window="5m", outcome=~"answered|offered"})'
    )
    assert promql_problems(good, set()) == []
    assert promql_problems("callstream_queue_waiting", set())
    assert promql_problems('callstream_calls_total{outcome="abandon"}', set())
    assert promql_problems('callstream_queue_agents{status="busy"}', set())
    assert promql_problems("sum by (queue_id) (callstream_calls_total)", set())
    assert promql_problems("rate(callstream_event_delay_seconds[5m])", set())
    assert (
        promql_problems(
            "histogram_quantile(0.99, sum by (le) "
            "(rate(callstream_event_delay_seconds_bucket[5m])))",
            set(),
        )
        == []
    )
    assert promql_problems('job:x:rate5m{job="a"} > 1', {"job:x:rate5m"}) == []
    assert promql_problems("sum by (hour) (callstream_calls_total)", set())
    made = (
        'label_replace(sum(callstream_calls_total) * on () group_left (hour) '
        'count_values("hour", hour()), "hour", "0$1", "hour", "([0-9])")'
    )
    assert promql_problems(made, set()) == []


# --- Tools and files ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: install Debian's `prometheus` package (it provides it)")
    return path


def run_tool(*args: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run(
        [str(a) for a in args], check=False, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{output}"
    return output


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Like broker.wait_for_port, but fails at once, and says so, if the server exits."""
    deadline = time.monotonic() + 10
    while True:
        assert process.poll() is None, f"{process.args!r} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


# --- Prometheus ---------------------------------------------------------------------------


def test_prometheus_config_is_valid_and_finds_the_rules(promtool: str) -> None:
    output = run_tool(promtool, "check", "config", PROMETHEUS_CONFIG)
    assert "1 rule files found" in output, output
    assert str(RULES.relative_to(ROOT)) in output, output


def test_prometheus_scrapes_callstream_as_the_rules_expect() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["callstream"]["static_configs"] for t in sc["targets"]]
    assert targets == ["callstream:8000"]
    for name in ("CallstreamDown", "CallstreamNotScraped"):
        assert 'job="callstream"' in alerting_rules()[name]["expr"]


def test_rules_are_valid(promtool: str) -> None:
    output = run_tool(promtool, "check", "rules", RULES)
    assert "SUCCESS" in output


def test_rule_unit_tests_pass(promtool: str) -> None:
    output = run_tool(promtool, "test", "rules", RULE_TESTS)
    assert "SUCCESS" in output


def test_every_alert_has_unit_tests_that_fire_and_stay_quiet() -> None:
    cases = [case for test in load_yaml(RULE_TESTS)["tests"]
             for case in test.get("alert_rule_test", [])]
    for name in alerting_rules():
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == name]
        assert any(expected), f"no unit test where {name} fires"
        assert [] in expected, f"no unit test where {name} stays quiet"


def test_rules_use_only_contract_metrics_and_labels() -> None:
    records = recorded_names()
    problems = [
        problem
        for group in rule_groups()
        for rule in group["rules"]
        for problem in promql_problems(rule["expr"], records)
    ]
    assert problems == []


def test_alerts_are_those_of_the_contract_and_the_pipeline() -> None:
    alerts = alerting_rules()
    assert set(alerts) >= {
        "CallstreamAbandonmentSpike",
        "CallstreamDown",
        "CallstreamNotScraped",
        "CallstreamConsumerLagGrowing",
        "CallstreamDeadLetters",
        "CallstreamEventDelayHigh",
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    spike = alerts["CallstreamAbandonmentSpike"]
    for text in (spike["annotations"]["summary"], spike["annotations"]["description"]):
        assert "$labels.queue" in text
    assert spike["labels"]["kind"] == "abandonment_spike"


def test_spike_alert_uses_the_policy_defaults() -> None:
    """The rule repeats the contract's default thresholds: fail when config.py's change."""
    policy = QueuePolicy()
    expr = alerting_rules()["CallstreamAbandonmentSpike"]["expr"]
    expr += "".join(rule["expr"] for name, rule in recording_rules().items() if name in expr)
    assert f'window="{policy.alert_window}"' in expr
    # The baseline: the hour before the alert window.
    assert f'{{window="1h"}} offset {policy.alert_window})' in expr
    assert f">= {policy.alert_abandon_ratio:g}" in expr
    assert f">= {policy.alert_min_calls}" in expr
    assert f">= {policy.alert_resolve_ratio:g}" in expr
    assert re.search(rf"\b{policy.alert_baseline_factor:g} \* ", expr)


# --- Alertmanager -------------------------------------------------------------------------

#: Who hears each kind of alert (deploy/alertmanager/alertmanager.yml's header says why).
RECEIVER_BY_SEVERITY = {"critical": "on-call", "warning": "operations", "info": "operations"}
SPIKE_RECEIVER = "supervisors"


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("amtool not found: install Debian's `prometheus-alertmanager` package")
    return path


def route_receivers(route: dict[str, Any]) -> Iterator[str]:
    """Every receiver the routing tree names."""
    if "receiver" in route:
        yield route["receiver"]
    for child in route.get("routes", []):
        yield from route_receivers(child)


def test_alertmanager_config_is_valid(amtool: str) -> None:
    output = run_tool(amtool, "check-config", ALERTMANAGER_CONFIG)
    assert "SUCCESS" in output


def test_alertmanager_routes_each_alert_by_severity(amtool: str) -> None:
    for name, rule in alerting_rules().items():
        labels = {"alertname": name, "job": "callstream", **rule["labels"]}
        if labels.get("kind") == "abandonment_spike":
            labels["queue"] = "sales"
            wanted = SPIKE_RECEIVER
        else:
            wanted = RECEIVER_BY_SEVERITY[labels["severity"]]
        run_tool(
            amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={wanted}", *(f"{k}={v}" for k, v in labels.items()),
        )


def test_alertmanager_receivers_and_compose_agree() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    defined = {receiver["name"] for receiver in config["receivers"]}
    assert set(route_receivers(config["route"])) <= defined
    assert {SPIKE_RECEIVER, *RECEIVER_BY_SEVERITY.values()} <= defined
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            assert webhook["send_resolved"] is True, receiver["name"]
    services = load_yaml(COMPOSE)["services"]
    mounts = bind_mounts(services["alertmanager"])
    assert mounts["/etc/alertmanager/alertmanager.yml"] == ALERTMANAGER_CONFIG
    targets = [
        target
        for manager in load_yaml(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"]
        for config in manager["static_configs"]
        for target in config["targets"]
    ]
    assert targets == ["alertmanager:9093"]


# --- Grafana ------------------------------------------------------------------------------

#: Values put in place of Grafana's variables so that a query can be parsed.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__interval_ms": "60000",
    "__range_s": "3600",
}
SAMPLE_VALUES = {"queue": "sales", "window": "5m"}


def dashboards() -> list[dict[str, Any]]:
    boards = [load_dashboard(path) for path in dashboard_files()]
    assert boards, f"no dashboard in {DASHBOARDS_DIR}"
    return boards


def sample_query(board: dict[str, Any], expr: str) -> str:
    """``expr`` with the dashboard's variables set to sample values."""
    defined = variables(board)

    def value(name: str) -> str:
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        assert name in defined, f"${name} is not a variable of {board['uid']}: {expr!r}"
        return SAMPLE_VALUES[name]

    return substitute(expr, value)


def all_queries() -> list[tuple[dict[str, Any], str, str]]:
    """(dashboard, where, query) for every query of every shipped dashboard."""
    return [(board, where, expr) for board in dashboards()
            for where, expr in dashboard_queries(board)]


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    queries = all_queries()
    assert queries
    rules = [
        {"record": f"dashboard:query_{n}", "expr": sample_query(board, expr)}
        for n, (board, _, expr) in enumerate(queries)
    ]
    # JSON is YAML: promtool reads it without a YAML library on our side.
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_tool(promtool, "check", "rules", path)
    assert f"{len(rules)} rules found" in output


def test_dashboard_uses_only_contract_metrics_and_labels() -> None:
    problems = [
        f"{where}: {problem}"
        for board, where, expr in all_queries()
        for problem in promql_problems(sample_query(board, expr), set())
    ]
    for board in dashboards():
        for panel in all_panels(board["panels"]):
            for target in panel.get("targets", []):
                known = KNOWN_LABELS | made_labels(target["expr"])
                legend = target.get("legendFormat", "")
                for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
                    if label not in known:
                        problems.append(f"panel {panel['id']}: legend label {label!r}")
        for name, variable in variables(board).items():
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
            assert match, f"variable {name}: {variable['definition']!r}"
            family, label = match.groups()
            if label not in FAMILIES.get(family, {}):
                problems.append(f"variable {name}: {family} has no label {label}")
    assert problems == []


def test_dashboard_is_a_wallboard_for_the_selected_queues() -> None:
    board = load_dashboard(DASHBOARD)
    defined = variables(board)
    assert defined["queue"]["type"] == "query" and defined["queue"]["multi"]
    assert defined["datasource"]["type"] == "datasource"
    panels = list(all_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        if panel.get("targets"):
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    used: set[str] = set()
    outcomes: set[str] = set()
    queue_filtered = True
    for _, expr in dashboard_queries(board):
        for selector in scan_promql(sample_query(board, expr)).selectors:
            used.add(selector.name)
            matchers = {label: value for label, _, value in selector.matchers}
            if selector.name == "callstream_calls_total":
                outcomes.update(_literal_alternatives(matchers.get("outcome", "")) or [])
            if selector.name.startswith("callstream_queue_") and "queue" not in matchers:
                queue_filtered = False
    assert used >= {
        "callstream_queue_calls_waiting",
        "callstream_queue_longest_wait_seconds",
        "callstream_queue_service_level_ratio",
        "callstream_queue_abandon_ratio",
        "callstream_queue_asa_seconds",
        "callstream_queue_aht_seconds",
        "callstream_queue_agents",
        "callstream_queue_agents_required",
        "callstream_queue_ewt_seconds",
        "callstream_calls_total",
        "callstream_callback_offers_total",
        "callstream_alert_firing",
        "callstream_events_total",
        "callstream_event_delay_seconds_bucket",
        "callstream_consumer_lag_messages",
        "callstream_agent_state",
        "callstream_agent_state_seconds",
        "callstream_agent_answered",
        "callstream_agent_aht_seconds",
        "callstream_agent_occupancy_ratio",
    }
    assert outcomes >= {"offered", "answered", "abandoned"}
    assert queue_filtered, "every queue panel follows the $queue variable"


def test_dashboard_shows_the_high_risk_periods() -> None:
    """Abandonment by hour of day as a heatmap, and transfers per call, from the counters."""
    panels = list(all_panels(load_dashboard(DASHBOARD)["panels"]))
    by_hour = [
        target["expr"]
        for panel in panels
        if panel["type"] == "heatmap"
        for target in panel["targets"]
    ]
    assert any(
        "callstream_calls_total" in expr and 'outcome="abandoned"' in expr and "hour(" in expr
        for expr in by_hour
    ), by_hour
    transfers = [
        target["expr"]
        for panel in panels
        for target in panel.get("targets", [])
        if 'outcome="transferred_out"' in target["expr"]
    ]
    assert any('outcome="offered"' in expr and "/" in expr for expr in transfers), transfers


def panel_query(board: dict[str, Any], kind: str, needle: str) -> str:
    """The one query of a ``kind`` panel of ``board`` that contains ``needle``."""
    found = [
        target["expr"]
        for panel in all_panels(board["panels"])
        if panel["type"] == kind
        for target in panel.get("targets", [])
        if needle in target["expr"]
    ]
    assert len(found) == 1, found
    return sample_query(board, found[0])


def run_expr_test(promtool: str, tmp_path: Path, expr: str, series: dict[str, str],
                  eval_time: str, expected: dict[str, float]) -> None:
    """promtool evaluates ``expr`` over ``series`` (one sample a minute from the epoch)."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": k, "values": v} for k, v in series.items()],
            "promql_expr_test": [{
                "expr": expr,
                "eval_time": eval_time,
                "exp_samples": [{"labels": k, "value": v} for k, v in expected.items()],
            }],
        }],
    }
    path = tmp_path / "expr.test.yml"
    path.write_text(json.dumps(test), encoding="utf-8")
    run_tool(promtool, "test", "rules", path)


def test_abandonment_heatmap_counts_each_clock_hour(promtool: str, tmp_path: Path) -> None:
    """Day one from the epoch (UTC): 60 abandons between 09:00 and 10:00, half of them
    short, exported by two instances. Evaluated at the end of the day, as Grafana does with
    its one-day step, the 09 row holds 30 and every other hour 0."""
    expr = panel_query(load_dashboard(DASHBOARD), "heatmap", 'outcome="abandoned"')
    counter = 'callstream_calls_total{{job="callstream",instance="{}",queue="sales",outcome="{}"}}'
    abandoned = "0x540 1+1x59 60x900"  # a minute each: +1 a minute from 09:00 to 10:00
    series = {
        counter.format("a:8000", "abandoned"): abandoned,
        counter.format("b:8000", "abandoned"): abandoned,
        counter.format("a:8000", "short_abandoned"): "0x540 0.5+0.5x59 30x900",
    }
    expected = {f'{{hour="{h:02d}"}}': 30.0 if h == 9 else 0.0 for h in range(24)}
    run_expr_test(promtool, tmp_path, expr, series, "1d", expected)


def test_transfers_per_call_divides_transfers_by_offered(promtool: str, tmp_path: Path) -> None:
    expr = panel_query(load_dashboard(DASHBOARD), "timeseries", 'outcome="transferred_out"')
    counter = 'callstream_calls_total{{job="callstream",instance="a:8000",queue="{}",outcome="{}"}}'
    series = {
        counter.format("sales", "offered"): "0+4x120",
        counter.format("sales", "transferred_out"): "0+1x120",
        # Nothing offered in the last hour: no ratio, not a division by zero.
        counter.format("idle", "offered"): "3x120",
        counter.format("idle", "transferred_out"): "0x120",
    }
    run_expr_test(promtool, tmp_path, expr, series, "2h", {'{queue="sales"}': 0.25})


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    datasources = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    for board in dashboards():
        assert variables(board)["datasource"]["current"]["value"] == datasources[0]["uid"]
    provider = load_yaml(GRAFANA_DASHBOARDS)["providers"][0]
    mounts = bind_mounts(load_yaml(COMPOSE)["services"]["grafana"])
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == GRAFANA_DATASOURCES.parent.parent


# --- Redis and Mosquitto ------------------------------------------------------------------


@pytest.fixture
def redis_with_shipped_conf(tmp_path: Path) -> Iterator[int]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not found: install Debian's `redis-server` package")
    port = free_port()
    # The shipped file with a private port and data directory (it names the container's).
    text = REDIS_CONF.read_text(encoding="utf-8")
    assert re.search(r"^dir /data$", text, re.MULTILINE)
    conf = tmp_path / "redis.conf"
    conf.write_text(text.replace("\ndir /data\n", f"\ndir {tmp_path}\n"), encoding="utf-8")
    with running([server, str(conf), "--port", str(port), "--bind", "127.0.0.1"]) as process:
        wait_until_listening(port, process)
        yield port


def test_redis_conf_keeps_the_durability_callstream_relies_on(
    redis_with_shipped_conf: int,
) -> None:
    client = redis.Redis(port=redis_with_shipped_conf)
    try:
        settings = client.config_get("*")
    finally:
        client.close()
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["no-appendfsync-on-rewrite"] == "no"
    assert settings["maxmemory-policy"] == "noeviction"


def mosquitto_conf(tmp_path: Path, production: bool) -> tuple[Path, list[int]]:
    """The shipped file on private ports and paths; with ``production``, its commented
    authentication and TLS settings applied as the comments say. Returns it and its ports."""
    text = MOSQUITTO_CONF.read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", text, re.MULTILINE)
    assert re.search(r"^# password_file ", text, re.MULTILINE)
    assert re.search(r"^# listener 8883$", text, re.MULTILINE)
    ports = [free_port()]
    text = text.replace("listener 1883", f"listener {ports[0]} 127.0.0.1")
    text = text.replace("/mosquitto/data/", f"{tmp_path}/")
    if production:
        text = text.replace("\nallow_anonymous true\n", "\n")
        settings = "allow_anonymous|password_file|listener|cafile|certfile|keyfile|tls_version"
        text = re.sub(rf"^# (({settings}) .*)$", r"\1", text, flags=re.MULTILINE)
        ports.append(free_port())
        text = text.replace("listener 8883", f"listener {ports[1]} 127.0.0.1")
        text = text.replace("/mosquitto/config/", f"{tmp_path}/")
        text = text.replace("/mosquitto/certs/", f"{tmp_path}/")
    # Started as root, mosquitto drops to the user "mosquitto", who cannot read tmp_path.
    text += f"\nuser {getpass.getuser()}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text, encoding="utf-8")
    return conf, ports


def assert_mosquitto_starts(conf: Path, ports: list[int]) -> None:
    broker = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if broker is None:
        pytest.skip("mosquitto not found: install Debian's `mosquitto` package")
    with running([broker, "-c", str(conf)]) as process:
        for port in ports:
            wait_until_listening(port, process)
        time.sleep(0.2)
        assert process.poll() is None


def test_mosquitto_starts_with_the_shipped_conf(tmp_path: Path) -> None:
    assert_mosquitto_starts(*mosquitto_conf(tmp_path, production=False))


def test_mosquitto_starts_with_the_commented_production_settings(tmp_path: Path) -> None:
    passwd, openssl = shutil.which("mosquitto_passwd"), shutil.which("openssl")
    if passwd is None or openssl is None:
        pytest.skip("needs mosquitto_passwd (Debian's `mosquitto`) and openssl")
    run_tool(passwd, "-b", "-c", tmp_path / "passwd", "callstream", "secret")
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    self_signed = ["-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    run_tool(openssl, "req", *self_signed, "-keyout", key, "-out", cert)
    shutil.copy(cert, tmp_path / "ca.crt")
    assert_mosquitto_starts(*mosquitto_conf(tmp_path, production=True))


# --- Docker -------------------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's relative bind mounts (either syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume.get("target", "")
        else:
            source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def files_compose_reads(compose: dict[str, Any]) -> dict[str, Path]:
    """Every file or directory of the repository that the compose file names, by where."""
    named: dict[str, Path] = {}
    for name, service in compose["services"].items():
        for target, source in bind_mounts(service).items():
            named[f"{name} mounts {target}"] = source
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str | dict) else env_files:
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            if not (isinstance(env_file, dict) and env_file.get("required") is False):
                named[f"{name} env_file"] = (ROOT / path).resolve()
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            named[f"{name} build context"] = context.resolve()
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get(
                "dockerfile", "Dockerfile")
            named[f"{name} Dockerfile"] = (context / dockerfile).resolve()
    for section in ("configs", "secrets"):
        for name, item in (compose.get(section) or {}).items():
            if "file" in item:
                named[f"{section} {name}"] = (ROOT / item["file"]).resolve()
    return named


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose specification's published schema (it vendors it)."""
    pytest.importorskip("check_jsonschema", reason="needs the test extra `check-jsonschema`")
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(path)],
        check=False, capture_output=True, text=True, timeout=120,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check does catch a mistake: a misspelt key of a service.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text(encoding="utf-8").replace("restart:", "restart_policy:", 1),
        encoding="utf-8",
    )
    result = check_compose_schema(broken)
    assert result.returncode != 0 and "restart_policy" in result.stdout, result.stdout


def test_every_file_compose_reads_is_in_the_repository() -> None:
    compose = load_yaml(COMPOSE)
    named = files_compose_reads(compose)
    assert any("mounts" in where for where in named)
    missing = {where: str(path) for where, path in named.items() if not path.exists()}
    assert missing == {}
    outside = {where: str(path) for where, path in named.items() if ROOT not in path.parents
               and path != ROOT}
    assert outside == {}


def test_compose_names_the_services() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert set(services) >= {
        "kafka",
        "kafka-init",
        "redis",
        "mosquitto",
        "prometheus",
        "alertmanager",
        "grafana",
        "callstream",
        "simulator",
    }
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_runs_kafka_in_kraft_mode_with_the_contract_topics() -> None:
    services = load_yaml(COMPOSE)["services"]
    kafka = services["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    try:
        cluster_id = base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")
    except binascii.Error:
        cluster_id = b""
    assert len(cluster_id) == 16, "CLUSTER_ID is a base64 UUID (kafka-storage.sh random-uuid)"

    def listeners(name: str) -> dict[str, str]:
        return dict(item.split("://") for item in env[name].split(","))

    bound, advertised = listeners("KAFKA_LISTENERS"), listeners("KAFKA_ADVERTISED_LISTENERS")
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert set(bound) <= set(protocols) and controller in bound
    assert set(advertised) <= set(bound) and controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(bound[controller])

    bootstrap = services["callstream"]["environment"]["CALLSTREAM_KAFKA_BOOTSTRAP"]
    assert bootstrap in advertised.values()
    script = " ".join(services["kafka-init"]["command"])
    assert "kafka:9092" in script
    # The contract's default topic names, whatever this environment's CALLSTREAM_* say.
    topics = {
        name: str(Settings.model_fields[f"topic_{name}"].default)
        for name in ("events", "dlq", "offers", "cancels", "alerts")
    }
    for topic in topics.values():
        assert re.search(rf"(?<![\w-]){re.escape(topic)}:\d+", script), topic
    assert f"{topics['events']}:8" in script


def test_compose_runs_callstream_and_the_simulator() -> None:
    services = load_yaml(COMPOSE)["services"]
    callstream, simulator = services["callstream"], services["simulator"]
    assert callstream["command"] == ["run"]
    assert simulator["command"] == ["simulate"]
    for service in (callstream, simulator):
        assert service["build"] == "."
        env = service["environment"]
        assert env["CALLSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["CALLSTREAM_REDIS_URL"] == "redis://redis:6379/0"
        assert env["CALLSTREAM_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert "8000:8000" in callstream["ports"]
    assert simulator["healthcheck"] == {"disable": True}
    assert set(callstream["depends_on"]) >= {"kafka-init", "redis", "mosquitto"}
    assert callstream["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_compose_mounts_the_deploy_configs() -> None:
    services = load_yaml(COMPOSE)["services"]
    redis_mounts = bind_mounts(services["redis"])
    assert services["redis"]["image"].split(":")[1].startswith("7")
    conf_in_container = services["redis"]["command"][1]
    assert redis_mounts[conf_in_container] == REDIS_CONF
    assert bind_mounts(services["mosquitto"])["/mosquitto/config/mosquitto.conf"] == MOSQUITTO_CONF
    prometheus = bind_mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    # rule_files are relative to the config, in the repository and in the container alike.
    for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        in_container = str(Path("/etc/prometheus") / Path(pattern).parent)
        assert prometheus[in_container] == (PROMETHEUS_CONFIG.parent / pattern).parent
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_dockerfile_runs_the_console_script_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE)[-1] == "python:3.11-slim"
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"pip install .*\s\.$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["callstream"]' in text
    assert 'CMD ["run"]' in text
    assert re.search(r"^EXPOSE 8000$", text, re.MULTILINE)
    healthcheck = text[text.index("HEALTHCHECK") :]
    assert "/healthz" in healthcheck and "urllib" in healthcheck
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "callstream" in scripts
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not {"stream", "stream/", "pyproject.toml", "README.md", "*.md", "*"} & ignored
