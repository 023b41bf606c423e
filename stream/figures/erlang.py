"""Queueing formulas for staffing and for checking the simulator: Erlang C and Erlang A.

Pure functions of plain numbers. Rates are per second, times in seconds, load in Erlangs
(arrival rate × AHT). Erlang C (M/M/c) assumes callers never hang up; Erlang A (M/M/c+M)
gives each caller an exponential patience and so also predicts abandonment.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

#: Stationary states are kept while their probability is within e**-50 of the largest one.
_TAIL_LOG_CUTOFF = 50.0
#: Above this load (Erlangs), staffing uses Erlang C's heavy-traffic limit: bounded cost.
EXACT_LOAD_LIMIT = 5000.0
#: Refuse a truncated chain longer than this: the inputs describe no sensible call centre.
_MAX_STATES = 10_000_000


def erlang_c(agents: int, load: float) -> float:
    """Probability that a caller waits (Erlang C) with ``agents`` agents and ``load`` Erlangs.

    Computed through the Erlang B recursion ``B(n) = A·B(n-1) / (n + A·B(n-1))``, which never
    forms ``A**N / N!`` and so stays exact for thousands of agents. 1 when ``agents <= load``:
    the queue then grows without bound and every caller waits.
    """
    _check_agents_and_load(agents, load)
    if load == 0:
        return 0.0
    if agents <= load:
        return 1.0
    return _erlang_c_from_b(agents, load, _erlang_b(agents, load))


def service_level(agents: int, load: float, aht_seconds: float, target_seconds: float) -> float:
    """Fraction of callers answered within ``target_seconds`` (Erlang C).

    ``1 - C·exp(-(N - A)·t / AHT)``; 0 when ``agents <= load`` (an unstable queue).
    """
    _check_agents_and_load(agents, load)
    _check_positive("aht_seconds", aht_seconds)
    if agents <= load:
        return 0.0
    return 1.0 - erlang_c(agents, load) * math.exp(-(agents - load) * target_seconds / aht_seconds)


def asa(agents: int, load: float, aht_seconds: float) -> float:
    """Average speed of answer in seconds (Erlang C): ``C·AHT / (N - A)``; inf when unstable."""
    _check_agents_and_load(agents, load)
    _check_positive("aht_seconds", aht_seconds)
    if load == 0:
        return 0.0
    if agents <= load:
        return math.inf
    return erlang_c(agents, load) * aht_seconds / (agents - load)


@functools.lru_cache(maxsize=4096)
def agents_required(
    arrival_rate_per_s: float,
    aht_seconds: float | None,
    target_seconds: float,
    service_level_target: float,
) -> int | None:
    """Smallest number of agents whose Erlang C service level reaches the target.

    0 when no calls arrive (whatever the AHT); None while the AHT is unknown or not positive.
    Up to ``EXACT_LOAD_LIMIT`` Erlangs it walks up from the first stable staffing,
    extending the Erlang B recursion one agent at a time (cost linear in the answer).
    Beyond, where no real queue is, the Halfin-Whitt limit of Erlang C answers in a
    bounded number of steps whatever the load. Answers are cached: the snapshot asks
    again with the same inputs until the 15-minute window moves.
    """
    if arrival_rate_per_s < 0:
        raise ValueError(f"arrival_rate_per_s must be >= 0, got {arrival_rate_per_s}")
    if not 0 < service_level_target < 1:
        raise ValueError(f"service_level_target must be in (0, 1), got {service_level_target}")
    if arrival_rate_per_s == 0:
        return 0
    if aht_seconds is None or aht_seconds <= 0:
        return None
    load = arrival_rate_per_s * aht_seconds
    if load > EXACT_LOAD_LIMIT:
        return _agents_required_halfin_whitt(load, aht_seconds, target_seconds,
                                             service_level_target)
    agents = math.floor(load) + 1
    blocking = _erlang_b(agents, load)
    while True:
        waiting = _erlang_c_from_b(agents, load, blocking)
        reached = 1.0 - waiting * math.exp(-(agents - load) * target_seconds / aht_seconds)
        if reached >= service_level_target:
            return agents
        agents += 1
        blocking = load * blocking / (agents + load * blocking)


def _agents_required_halfin_whitt(load: float, aht_seconds: float, target_seconds: float,
                                  service_level_target: float) -> int:
    """Bisection on the staffing, with Erlang C's heavy-traffic limit
    ``C ≈ 1 / (1 + β·Φ(β)/φ(β))``, ``β = (N − A)/√A``: exact as the load grows."""

    def reached(agents: int) -> float:
        beta = (agents - load) / math.sqrt(load)
        cdf = 0.5 * math.erfc(-beta / math.sqrt(2))
        pdf = math.exp(-beta * beta / 2) / math.sqrt(2 * math.pi)
        waiting = 1.0 / (1.0 + beta * cdf / pdf) if pdf > 0 else 0.0
        return 1.0 - waiting * math.exp(-(agents - load) * target_seconds / aht_seconds)

    low = math.floor(load)  # unstable: never enough
    step = max(1, math.ceil(math.sqrt(load)))
    high = low + step
    while reached(high) < service_level_target:
        low, high = high, high + step
        step *= 2
    while high - low > 1:
        middle = (low + high) // 2
        if reached(middle) >= service_level_target:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class ErlangA:
    """Per-arrival outcome probabilities of an M/M/c+M queue (Erlang A).

    ``answered_within``: answered with a wait ≤ the target; ``abandoned``: hung up while
    waiting; ``short_abandoned``: hung up with a wait < the short-abandon threshold.
    """

    answered_within: float
    abandoned: float
    short_abandoned: float

    @property
    def answered(self) -> float:
        """Every caller who does not abandon is answered eventually."""
        return 1.0 - self.abandoned

    @property
    def service_level(self) -> float:
        """The contract's service level, answered_in_sla ÷ (answered + abandoned − short).

        Short abandons leave the divisor, so this is the ratio of the per-arrival
        probabilities: what the measured figure converges to over a long stationary run.
        """
        return self.answered_within / (1.0 - self.short_abandoned)

    @property
    def abandon_ratio(self) -> float:
        """The contract's abandon ratio, (abandoned − short) ÷ (answered + abandoned − short)."""
        return (self.abandoned - self.short_abandoned) / (1.0 - self.short_abandoned)


def erlang_a(
    agents: int,
    arrival_rate_per_s: float,
    aht_seconds: float,
    patience_seconds: float,
    target_seconds: float,
    short_abandon_seconds: float = 0.0,
) -> ErlangA:
    """Erlang A (M/M/c+M, FCFS): Poisson arrivals, exponential handle times, exponential
    patience with mean ``patience_seconds`` (``math.inf``: callers never hang up, Erlang C).

    Method, exact up to a truncation of the state space below e**-50:

    1. The number in system is a birth–death chain with birth rate λ and death rate
       ``min(n, c)·μ + max(n − c, 0)·γ`` (μ = 1/AHT, γ = 1/patience). Its stationary law
       is built in log space (no overflow for large loads) and cut where it is negligible.
    2. By PASTA an arrival sees that law. Abandonment follows from flow balance:
       ``P(abandon) = γ·E[calls waiting] / λ``.
    3. An arrival that finds ``c + i`` calls waits behind ``i`` others. Under FCFS only the
       calls ahead matter: it moves up at rate ``c·μ + j·γ`` with ``j`` calls ahead, and
       hangs up itself at rate γ. These rates step by γ, so ``u = 1 − e^(−γx)`` turns its
       waiting-time law into a beta integral. With ``b = c·μ/γ`` and ``U = 1 − e^(−γt)``:
       ``P(answered within t) = b/(b+i+1) · I_U(i+1, b+1)`` and
       ``P(no agent free for it within t) = 1 − I_U(i+1, b)``, where ``I`` is the
       regularised incomplete beta function (computed by its recurrence in the first
       argument, all in closed form). A caller still waiting at ``s`` has neither been
       answered nor run out of patience, so short abandons are what remains.

    With infinite patience this is Erlang C; with ``agents <= load`` the queue is then
    unstable: no caller is answered within any finite target and none abandons.
    """
    _check_agents_and_load(agents, arrival_rate_per_s, "arrival_rate_per_s")
    _check_positive("aht_seconds", aht_seconds)
    _check_positive("patience_seconds", patience_seconds)
    if arrival_rate_per_s == 0:
        return ErlangA(answered_within=1.0, abandoned=0.0, short_abandoned=0.0)
    if math.isinf(patience_seconds):
        load = arrival_rate_per_s * aht_seconds
        answered = service_level(agents, load, aht_seconds, target_seconds)
        return ErlangA(answered_within=answered, abandoned=0.0, short_abandoned=0.0)
    patience_rate = 1.0 / patience_seconds
    if agents == 0:
        short = -math.expm1(-patience_rate * short_abandon_seconds)
        return ErlangA(answered_within=0.0, abandoned=1.0, short_abandoned=short)

    service_rate = 1.0 / aht_seconds
    in_system = _stationary(agents, arrival_rate_per_s, service_rate, patience_rate)
    found_waiting = in_system[agents:]
    head = agents * service_rate / patience_rate
    served_by_target = _beta_ladder(len(found_waiting), head + 1, patience_rate * target_seconds)
    served_by_short = _beta_ladder(
        len(found_waiting), head + 1, patience_rate * short_abandon_seconds
    )
    reached_by_short = _beta_ladder(len(found_waiting), head, patience_rate * short_abandon_seconds)
    still_patient = math.exp(-patience_rate * short_abandon_seconds)
    answered_later = short = 0.0
    for i, p in enumerate(found_waiting):
        share = head / (head + i + 1)
        answered_later += p * share * served_by_target[i]
        waiting_at_short = still_patient * (1.0 - reached_by_short[i])
        short += p * max(0.0, 1.0 - share * served_by_short[i] - waiting_at_short)
    mean_waiting = sum(i * p for i, p in enumerate(found_waiting))
    return ErlangA(
        answered_within=sum(in_system[:agents]) + answered_later,
        abandoned=patience_rate * mean_waiting / arrival_rate_per_s,
        short_abandoned=short,
    )


def _erlang_b(agents: int, load: float) -> float:
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = load * blocking / (n + load * blocking)
    return blocking


def _erlang_c_from_b(agents: int, load: float, blocking: float) -> float:
    return agents * blocking / (agents - load * (1.0 - blocking))


def _stationary(
    agents: int, arrival_rate: float, service_rate: float, patience_rate: float
) -> list[float]:
    """Stationary probabilities of 0, 1, 2, … calls in system, truncated and normalised."""
    log_arrival = math.log(arrival_rate)
    logs = [0.0]
    peak = 0.0
    n = 0
    while True:
        n += 1
        death = min(n, agents) * service_rate + max(n - agents, 0) * patience_rate
        logs.append(logs[-1] + log_arrival - math.log(death))
        peak = max(peak, logs[-1])
        # Past c, once deaths outpace arrivals, the terms only shrink: stop when negligible.
        if n > agents and death > arrival_rate and logs[-1] < peak - _TAIL_LOG_CUTOFF:
            break
        if n >= _MAX_STATES:
            raise ValueError("the queue is too close to unstable to evaluate Erlang A")
    weights = [math.exp(value - peak) for value in logs]
    total = sum(weights)
    return [w / total for w in weights]


def _beta_ladder(count: int, beta: float, rate_time: float) -> list[float]:
    """``I_U(a, beta)`` for a = 1 … count, with ``U = 1 − e^(−rate_time)``.

    Starts from ``I_U(1, β) = 1 − (1 − U)^β`` and steps with
    ``I_U(a+1, β) = I_U(a, β) − U^a (1 − U)^β / (a·B(a, β))``; every term is a closed form
    and the rounding error stays below ``count`` × 1e-16.
    """
    if count == 0:
        return []
    if rate_time <= 0:
        return [0.0] * count
    log_u = math.log(-math.expm1(-rate_time))
    ladder = [-math.expm1(-beta * rate_time)]
    for a in range(1, count):
        log_step = (
            math.lgamma(a + beta)
            - math.lgamma(a + 1)
            - math.lgamma(beta)
            + a * log_u
            - beta * rate_time
        )
        ladder.append(max(0.0, ladder[-1] - math.exp(log_step)))
    return ladder


def _check_agents_and_load(agents: int, load: float, load_name: str = "load") -> None:
    if agents < 0:
        raise ValueError(f"agents must be >= 0, got {agents}")
    if not load >= 0:
        raise ValueError(f"{load_name} must be >= 0, got {load}")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
