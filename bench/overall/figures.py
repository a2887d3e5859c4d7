"""The seven figures of the performance summary: where each is read in the results of
``python -m bench all``'s runs, its unit, its target and whether the target is met.

Every figure is a field a benchmark already reports (see bench/README.md):

* CRUD per server CPU-second and the p99 of each operation (``crud.operations``), at 32
  and at 16 clients; the summary shows the p99s as a range, and the target holds when the
  slowest operation's p99 at 16 clients is under it;
* read-by-id ÷ the bare aiohttp limit per CPU-second (``ratios`` of the 32-client run);
* referral submits and lifecycles, care plan updates: ``headline.per_server_cpu_second``
  of the phase at 16 clients;
* consent: checked ÷ unchecked reads per wall second over NATS at 8 concurrent requests
  (``ratio_per_wall_second`` of the ``transport`` phase's read);
* subscriptions: server CPU ms per delivered event above the idle stack's
  (``server_cpu_ms_per_event_above_idle``) of each channel at 100 events/s.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.report import OPERATIONS

Results = Mapping[str, Mapping[str, Any]]
"""The result of each run that completed, by run name (``bench.overall.plan``)."""
Figure = float | dict[str, float] | None
"""One number, or one per operation or channel (shown as a range), or None when the
result does not hold it."""

COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    ">=": ("≥", operator.ge),
    "<": ("<", operator.lt),
    "<=": ("≤", operator.le),
}


@dataclass(frozen=True)
class Value:
    name: str
    run: str
    """The run whose result holds it."""
    read: Callable[[Mapping[str, Any]], Figure]
    unit: str
    label: str
    """How the table shows it; ``{}`` is the number (or the range)."""


@dataclass(frozen=True)
class Target:
    value: str
    comparison: str
    """A key of `COMPARISONS`."""
    bound: float
    label: str
    """How the table shows it; ``{}`` is the comparison and the bound."""

    def met(self, figure: Figure) -> bool | None:
        """Whether the figure meets the target; for a figure per operation or channel,
        whether the worst of them does."""
        if figure is None:
            return None
        numbers = list(figure.values()) if isinstance(figure, dict) else [figure]
        if not numbers:
            return None
        compare = COMPARISONS[self.comparison][1]
        return all(compare(number, self.bound) for number in numbers)

    def text(self) -> str:
        return self.label.format(f"{COMPARISONS[self.comparison][0]} {self.bound:,g}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "comparison": self.comparison,
            "bound": self.bound,
            "text": self.text(),
        }


@dataclass(frozen=True)
class Row:
    key: str
    what: str
    values: tuple[Value, ...]
    targets: tuple[Target, ...]

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(value.run for value in self.values))


def number(value: float) -> str:
    """1,265 · 47.0 · 0.13: three significant figures or so, thousands separated."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def shown(figure: Figure) -> str:
    if figure is None:
        return "?"
    if isinstance(figure, dict):
        low, high = min(figure.values()), max(figure.values())
        return number(low) if number(low) == number(high) else f"{number(low)}-{number(high)}"
    return number(figure)


def _phase(result: Mapping[str, Any], **wanted: Any) -> Mapping[str, Any]:
    """The first phase of a result with these fields (name, clients, channel, rate)."""
    return next(
        phase
        for phase in result["phases"]
        if all(phase.get(key) == value for key, value in wanted.items())
    )


def _crud_p99(result: Mapping[str, Any]) -> dict[str, float]:
    operations = result["crud"]["operations"]
    return {op: float(operations[op]["p99_ms"]) for op in OPERATIONS if operations[op]["count"]}


def _headline(name: str, field: str) -> Callable[[Mapping[str, Any]], float]:
    return lambda result: float(_phase(result, name=name, clients=16)["headline"][field])


def _per_channel(
    read: Callable[[Mapping[str, Any]], float | None],
) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """A figure of each channel's phase at 100 events/s."""

    def channels(result: Mapping[str, Any]) -> dict[str, float]:
        found = {p["channel"]: read(p) for p in result["phases"] if p["rate"] == 100}
        return {channel: float(f) for channel, f in found.items() if f is not None}

    return channels


def _transport_read(result: Mapping[str, Any]) -> Mapping[str, Any]:
    read: Mapping[str, Any] = _phase(result, name="transport")["read"]
    return read


SERVER_CPU = "per server CPU-s"
ROWS = (
    Row(
        "crud",
        "CRUD chain, 32 clients (`bench crud`)",
        (
            Value(
                "requests_per_server_cpu_second",
                "crud-32",
                lambda r: r["crud"]["requests_per_server_cpu_second"],
                "requests per server CPU-second",
                "{} req " + SERVER_CPU,
            ),
            Value("p99_ms_by_operation", "crud-32", _crud_p99, "ms", "p99 {} ms"),
            Value(
                "p99_ms_by_operation_16_clients",
                "crud-16",
                _crud_p99,
                "ms",
                "16 clients: p99 {} ms",
            ),
        ),
        (
            Target("requests_per_server_cpu_second", ">=", 1000, "{} req " + SERVER_CPU),
            Target("p99_ms_by_operation_16_clients", "<", 50, "p99 {} ms at 16 clients"),
        ),
    ),
    Row(
        "read-by-id",
        "read-by-id ÷ bare aiohttp limit, per CPU-s",
        (
            Value(
                "ratio_per_server_cpu_second",
                "crud-32",
                lambda r: r["ratios"]["FHIR read / HTTP limit, per server CPU-s"],
                "ratio",
                "{}",
            ),
            Value(
                "read_per_server_cpu_second",
                "crud-32",
                lambda r: r["read_by_id"]["requests_per_server_cpu_second"],
                "requests per server CPU-second",
                "read {} " + SERVER_CPU,
            ),
            Value(
                "http_limit_per_cpu_second",
                "crud-32",
                lambda r: r["limits"]["http"]["requests_per_server_cpu_second"],
                "requests per CPU-second of the bare server",
                "bare aiohttp {} per CPU-s",
            ),
        ),
        (Target("ratio_per_server_cpu_second", ">=", 0.35, "{}"),),
    ),
    Row(
        "referral-submit",
        "referral submit (transaction of 4), 16 clients",
        (
            Value(
                "per_server_cpu_second",
                "referral",
                _headline("submit", "per_server_cpu_second"),
                "submits per server CPU-second",
                "{} " + SERVER_CPU,
            ),
            Value("p99_ms", "referral", _headline("submit", "p99_ms"), "ms", "p99 {} ms"),
        ),
        (Target("per_server_cpu_second", ">=", 150, "{} " + SERVER_CPU),),
    ),
    Row(
        "referral-lifecycle",
        "referral lifecycle (6 requests), 16 clients",
        (
            Value(
                "per_server_cpu_second",
                "referral",
                _headline("lifecycle", "per_server_cpu_second"),
                "lifecycles per server CPU-second",
                "{} " + SERVER_CPU,
            ),
            Value("p99_ms", "referral", _headline("lifecycle", "p99_ms"), "ms", "p99 {} ms"),
        ),
        (Target("per_server_cpu_second", ">=", 50, "{} " + SERVER_CPU),),
    ),
    Row(
        "careplan-update",
        "care plan update, 16 clients",
        (
            Value(
                "per_server_cpu_second",
                "careplan",
                _headline("update", "per_server_cpu_second"),
                "plan updates per server CPU-second",
                "{} " + SERVER_CPU,
            ),
            Value("p99_ms", "careplan", _headline("update", "p99_ms"), "ms", "p99 {} ms"),
            Value(
                "plans_stored",
                "careplan",
                lambda r: r["parameters"]["plans"],
                "plans seeded",
                "{} plans stored",
            ),
        ),
        (Target("per_server_cpu_second", ">=", 400, "{} " + SERVER_CPU),),
    ),
    Row(
        "consent-read",
        "consent-checked read ÷ unchecked, wall, 8 concurrent",
        (
            Value(
                "ratio_per_wall_second",
                "consent",
                lambda r: _transport_read(r)["ratio_per_wall_second"],
                "ratio",
                "{}",
            ),
            Value(
                "ratio_per_cpu_second",
                "consent",
                lambda r: _transport_read(r)["headline_ratio"],
                "ratio",
                "per CPU-s {}",
            ),
        ),
        (Target("ratio_per_wall_second", ">=", 0.90, "{}"),),
    ),
    Row(
        "subscription-delivery",
        "subscription delivery at 100 events/s",
        (
            Value(
                "server_cpu_ms_per_event",
                "subscriptions",
                _per_channel(lambda p: p["server_cpu_ms_per_event_above_idle"]),
                "ms of server CPU per event, above the idle stack's",
                "{} ms server CPU per event",
            ),
            Value(
                "p99_ms",
                "subscriptions",
                _per_channel(lambda p: p["latency"]["p99_ms"]),
                "ms",
                "write → partner p99 {} ms",
            ),
        ),
        (Target("server_cpu_ms_per_event", "<=", 6, "{} ms server CPU per event"),),
    ),
)


def read_value(value: Value, results: Results) -> Figure:
    """The figure, or None when the run did not complete or its result lacks it."""
    result = results.get(value.run)
    if result is None:
        return None
    try:
        figure = value.read(result)
    except (KeyError, StopIteration, TypeError):
        return None
    return None if isinstance(figure, dict) and not figure else figure


def extract(results: Results, runs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each row of the summary from the runs' results. `runs`: what the summary records of
    each run (command, options, result file, errors, status), by run name."""
    rows = []
    for row in ROWS:
        figures = {value.name: read_value(value, results) for value in row.values}
        sources = [runs[name] for name in row.runs if name in runs]
        errors = sum(int(source.get("errors") or 0) for source in sources)
        missing = [name for name in row.runs if name not in results]
        judged = [target.met(figures[target.value]) for target in row.targets]
        met = None if errors or missing or None in judged else all(judged)
        rows.append(
            {
                "key": row.key,
                "what": row.what,
                "values": {
                    value.name: {"value": figures[value.name], "unit": value.unit}
                    for value in row.values
                },
                "measured": "; ".join(
                    value.label.format(shown(figures[value.name]))
                    for value in row.values
                    if figures[value.name] is not None
                ),
                "target": {
                    "text": "; ".join(target.text() for target in row.targets),
                    "conditions": [target.as_dict() for target in row.targets],
                },
                "met": met,
                "errors": errors,
                "not_measured": [
                    {"run": name, "why": (runs.get(name) or {}).get("status", "not run")}
                    for name in missing
                ],
                "runs": [
                    {key: source.get(key) for key in ("name", "command", "options", "result_file")}
                    for source in sources
                ],
            }
        )
    return rows
