"""`python -m bench all` and `python -m bench table`, without running a benchmark.

The seven figures are read from results shaped as the benchmarks record them (only the
fields near the ones read, with made-up numbers); the README's table is rewritten between
its markers and nowhere else, and a README without them is refused; every planned run
parses into its benchmark's options; and a benchmark that fails or has errors in its
windows makes the whole run fail while the others still run and are recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bench.benchmarks import BENCHMARKS, Benchmark, consent_errors, crud_errors
from bench.command_line import parser
from bench.overall import (
    BEGIN,
    CAREPLAN_PLANS,
    END,
    PLAN,
    ROWS,
    MarkersMissing,
    extract,
    markdown,
    new_summary,
    rewrite_readme,
    rewritten,
    run_all,
)

ROOT = Path(__file__).resolve().parent.parent


def _ops(**p99: float) -> dict[str, Any]:
    return {
        op: {"count": 100, "errors": 0, "p50_ms": ms / 2, "p99_ms": ms} for op, ms in p99.items()
    }


def _phase(name: str, clients: int, per_cpu: float, p99: float) -> dict[str, Any]:
    headline = {"operation": name, "count": 300, "errors": 0, "p99_ms": p99}
    return {
        "name": name,
        "clients": clients,
        "errors": 0,
        "errors_outside_window": 0,
        "headline": {**headline, "per_server_cpu_second": per_cpu},
    }


def _compared(wall_ratio: float, cpu_ratio: float, errors: int = 0) -> dict[str, Any]:
    return {
        "checked": {"requests": 900, "errors": errors},
        "unchecked": {"requests": 1000, "errors": 0},
        "ratio_per_wall_second": wall_ratio,
        "headline_ratio": cpu_ratio,
    }


def _channel(channel: str, rate: float, cpu_ms: float, p99: float) -> dict[str, Any]:
    return {
        "channel": channel,
        "rate": rate,
        "errors": 0,
        "errors_outside_window": 0,
        "latency": {"p50_ms": p99 / 2, "p99_ms": p99},
        "server_cpu_ms_per_event_above_idle": cpu_ms,
    }


def recorded_results() -> dict[str, dict[str, Any]]:
    """A result of each planned run, by run name, in the shape the benchmarks record."""
    return {
        "crud-32": {
            "benchmark": "crud",
            "crud": {
                "requests_per_server_cpu_second": 512.3,
                "errors": 0,
                "operations": _ops(create=95.0, read=88.0, update=102.0, delete=84.0),
            },
            "read_by_id": {"requests_per_server_cpu_second": 1265.0, "errors": 0},
            "limits": {
                "http": {"requests_per_server_cpu_second": 9717.0, "errors": 0},
                "storage": {"statements_per_storage_cpu_second": 8095.0, "errors": 0},
            },
            "ratios": {"FHIR read / HTTP limit, per server CPU-s": 0.1302},
        },
        "crud-16": {
            "benchmark": "crud",
            "crud": {
                "requests_per_server_cpu_second": 480.0,
                "errors": 0,
                "operations": _ops(create=40.0, read=12.0, update=45.5, delete=30.0),
            },
            "read_by_id": {"requests_per_server_cpu_second": 1200.0, "errors": 0},
            "ratios": {},
        },
        "referral": {
            "benchmark": "referral",
            "errors_total": 0,
            "phases": [
                _phase("submit", 16, 160.0, 279.0),
                _phase("lifecycle", 16, 15.2, 786.0),
                _phase("submit", 64, 999.0, 1910.0),
            ],
        },
        "careplan": {
            "benchmark": "careplan",
            "errors_total": 0,
            "parameters": {"plans": 50_000, "clients": [16]},
            "phases": [_phase("update", 16, 168.0, 93.0), _phase("coordinator", 16, 588.0, 42.0)],
        },
        "consent": {
            "benchmark": "consent",
            "phases": [
                {"name": "decide", "per_cpu_second": 250_000},
                {"name": "read", **_compared(0.2, 0.55)},
                {
                    "name": "transport",
                    "read": _compared(0.54, 0.83),
                    "search": _compared(0.7, 0.87),
                },
            ],
        },
        "subscriptions": {
            "benchmark": "subscriptions",
            "errors_total": 0,
            "phases": [
                _channel("rest-hook", 100.0, 12.1, 32.1),
                _channel("nats", 100.0, 13.04, 45.1),
                _channel("rest-hook", 500.0, 2.5, 91.1),
            ],
        },
    }


def _runs(results: Mapping[str, Any], **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {
        run.name: {
            "name": run.name,
            "command": run.command(),
            "options": {},
            "errors": 0,
            "failure": None,
            "status": "ok",
            "result_file": f"{run.name}.json",
        }
        for run in PLAN
        if run.name in results
    }
    for name, change in changes.items():
        runs.setdefault(name, {"name": name, "command": "", "options": None}).update(change)
    return runs


def test_the_seven_figures_are_read_from_the_results() -> None:
    results = recorded_results()
    rows = {row["key"]: row for row in extract(results, _runs(results))}
    assert list(rows) == [row.key for row in ROWS] and len(rows) == 7
    crud = rows["crud"]
    assert crud["values"]["requests_per_server_cpu_second"] == {
        "value": 512.3,
        "unit": "requests per server CPU-second",
    }
    assert crud["values"]["p99_ms_by_operation_16_clients"]["value"]["update"] == 45.5
    assert crud["measured"] == (
        "512 req per server CPU-s; p99 84.0-102 ms; 16 clients: p99 12.0-45.5 ms"
    )
    assert crud["target"]["text"] == "≥ 1,000 req per server CPU-s; p99 < 50 ms at 16 clients"
    assert crud["met"] is False  # the p99 at 16 clients is met, the throughput is not
    assert [run["name"] for run in crud["runs"]] == ["crud-32", "crud-16"]
    assert crud["runs"][0]["command"] == "python -m bench crud --database postgresql --clients 32"
    assert rows["read-by-id"]["values"]["ratio_per_server_cpu_second"]["value"] == 0.1302
    assert rows["read-by-id"]["met"] is False
    assert rows["referral-submit"]["values"]["per_server_cpu_second"]["value"] == 160.0
    assert rows["referral-submit"]["values"]["p99_ms"]["value"] == 279.0
    assert rows["referral-submit"]["met"] is True
    assert rows["referral-lifecycle"]["values"]["per_server_cpu_second"]["value"] == 15.2
    assert rows["referral-lifecycle"]["met"] is False
    careplan = rows["careplan-update"]
    assert careplan["values"]["per_server_cpu_second"]["value"] == 168.0
    assert careplan["measured"] == "168 per server CPU-s; p99 93.0 ms; 50,000 plans stored"
    consent = rows["consent-read"]
    assert consent["values"]["ratio_per_wall_second"]["value"] == 0.54  # over NATS
    assert consent["values"]["ratio_per_cpu_second"]["value"] == 0.83
    assert consent["met"] is False
    delivery = rows["subscription-delivery"]
    assert delivery["values"]["server_cpu_ms_per_event"]["value"] == {
        "rest-hook": 12.1,
        "nats": 13.04,
    }
    assert delivery["measured"].startswith("12.1-13.0 ms server CPU per event")
    assert delivery["target"]["conditions"] == [
        {
            "value": "server_cpu_ms_per_event",
            "comparison": "<=",
            "bound": 6,
            "text": "≤ 6 ms server CPU per event",
        }
    ]
    assert delivery["met"] is False
    assert all(row["errors"] == 0 and row["not_measured"] == [] for row in rows.values())


def test_a_figure_meets_its_target_only_when_every_operation_or_channel_does() -> None:
    results = recorded_results()
    for phase in results["subscriptions"]["phases"]:
        phase["server_cpu_ms_per_event_above_idle"] = 5.0
    results["crud-32"]["crud"]["requests_per_server_cpu_second"] = 1000.0
    rows = {row["key"]: row for row in extract(results, _runs(results))}
    assert rows["subscription-delivery"]["met"] is True
    assert rows["crud"]["met"] is True
    results["crud-16"]["crud"]["operations"]["delete"]["p99_ms"] = 50.0
    results["subscriptions"]["phases"] = [_channel("nats", 500.0, 2.5, 91.1)]
    rows = {row["key"]: row for row in extract(results, _runs(results))}
    assert rows["crud"]["met"] is False
    delivery = rows["subscription-delivery"]  # no phase at 100 events/s: nothing to judge
    assert delivery["met"] is None and delivery["measured"] == ""


def test_a_run_that_failed_or_had_errors_is_not_judged() -> None:
    results = recorded_results()
    del results["careplan"], results["subscriptions"]
    runs = _runs(
        results,
        careplan={
            "errors": None,
            "failure": "RuntimeError: x",
            "status": "failed (RuntimeError: x)",
        },
        referral={"errors": 3, "status": "3 errors in the measured windows"},
    )
    rows = {row["key"]: row for row in extract(results, runs)}
    careplan = rows["careplan-update"]
    assert careplan["met"] is None and careplan["measured"] == ""
    assert careplan["values"]["per_server_cpu_second"]["value"] is None
    assert careplan["not_measured"] == [{"run": "careplan", "why": "failed (RuntimeError: x)"}]
    assert rows["subscription-delivery"]["not_measured"] == [
        {"run": "subscriptions", "why": "not run"}
    ]
    submit = rows["referral-submit"]
    assert submit["errors"] == 3 and submit["met"] is None
    assert submit["values"]["per_server_cpu_second"]["value"] == 160.0  # still recorded
    table = markdown(_document(extract(results, runs)))
    assert "| care plan update, 16 clients | — | ≥ 400 per server CPU-s | not measured:" in table
    assert "not judged: 3 errors in the window" in table


def _document(rows: list[dict[str, Any]], quick: bool = False) -> dict[str, Any]:
    return {
        "timestamp": "20261206T015221Z",
        "command": "python -m bench all",
        "quick": quick,
        "file": "all-20261206T015221Z.json",
        "machine": {
            "nproc": 2,
            "cpu_model": "AMD EPYC",
            "git_revision": "c0e4f79e63f6db16",
            "git_dirty": False,
        },
        "rows": rows,
    }


def test_the_markdown_table_has_a_line_per_figure_and_says_where_it_was_measured() -> None:
    results = recorded_results()
    table = markdown(_document(extract(results, _runs(results))))
    lines = table.splitlines()
    assert lines[0] == "| what | measured | target | met |"
    assert lines[2] == (
        "| CRUD chain, 32 clients (`bench crud`) | 512 req per server CPU-s; p99 84.0-102 ms;"
        " 16 clients: p99 12.0-45.5 ms | ≥ 1,000 req per server CPU-s; p99 < 50 ms at 16"
        " clients | **no** |"
    )
    assert lines[4].startswith("| referral submit (transaction of 4), 16 clients | 160 per")
    assert lines[4].endswith("| ≥ 150 per server CPU-s | yes |")
    assert len([line for line in lines if line.startswith("| ")]) == 9
    assert lines[-1] == (
        "`python -m bench all` on 2026-12-06 01:52 UTC, git `c0e4f79e63f6`, 2 CPUs (AMD EPYC);"
        " the record is `all-20261206T015221Z.json`."
    )
    quick = markdown(_document([], quick=True))
    assert quick.endswith("**--quick: short windows, not a measurement.**")


README = f"""# project

## Performance

Before.

{BEGIN}
| old | table |
{END}

After.
"""


def test_the_table_is_rewritten_between_the_markers_and_nowhere_else() -> None:
    table = "| what | met |\n| --- | --- |\n| x | yes |\n\nmeasured somewhere"
    once = rewritten(README, table)
    assert once == README.replace("| old | table |", table)
    assert rewritten(once, table) == once
    assert rewritten(once, "| old | table |") == README


def test_a_readme_without_markers_is_refused_and_left_alone(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    for text in (
        "# project\n\n## Performance\n\nNo table here.\n",
        f"# project\n{END}\n{BEGIN}\n",
        f"# project\n{BEGIN}\n{BEGIN}\n{END}\n",
        f"# project\n{BEGIN}\nno end\n",
    ):
        readme.write_text(text)
        with pytest.raises(MarkersMissing) as refused:
            rewrite_readme(readme, "| new | table |")
        message = str(refused.value)
        assert message.startswith(f"{readme}: no performance summary markers")
        assert BEGIN in message and END in message
        assert readme.read_text() == text


def test_the_project_readme_has_the_markers_in_its_performance_section() -> None:
    text = (ROOT / "README.md").read_text()
    performance = text[text.index("\n## Performance\n") :]
    assert BEGIN in performance and END in performance
    assert rewritten(text, "| table |").count("| table |") == 1


def _options(benchmark: str, arguments: list[str]) -> Any:
    return BENCHMARKS[benchmark].options(parser().parse_args(arguments))


def test_every_planned_run_parses_into_its_benchmarks_options() -> None:
    chosen = {
        (run.name, quick): _options(run.benchmark, run.arguments(quick))
        for run in PLAN
        for quick in (False, True)
    }
    assert [run.name for run in PLAN] == [
        "crud-32",
        "crud-16",
        "referral",
        "careplan",
        "consent",
        "subscriptions",
    ]
    for quick in (False, True):
        crud_32, crud_16 = chosen["crud-32", quick], chosen["crud-16", quick]
        assert (crud_32.clients, crud_32.database, crud_32.limits) == (32, "postgresql", True)
        assert (crud_16.clients, crud_16.database, crud_16.limits) == (16, "postgresql", False)
        referral = chosen["referral", quick]
        assert (referral.clients, referral.database) == ((16,), "postgresql")
        assert chosen["careplan", quick].clients == (16,)
        consent = chosen["consent", quick]
        assert (consent.concurrency, consent.database) == (8, "postgresql")
        assert chosen["subscriptions", quick].rates == (100.0,)
    assert chosen["careplan", False].plans == CAREPLAN_PLANS
    assert chosen["crud-32", False].seconds == 20.0 and chosen["crud-32", True].seconds == 3.0
    assert all(chosen[name, True].seconds < chosen[name, False].seconds for name, _ in chosen)
    assert PLAN[1].command(quick=True) == (
        "python -m bench crud --database postgresql --clients 16 --no-limits --seconds 3"
        " --warmup 1 --limit-seconds 1"
    )


def test_window_errors_are_counted_from_the_recorded_fields() -> None:
    results = recorded_results()
    assert crud_errors(results["crud-32"]) == 0 and consent_errors(results["consent"]) == 0
    results["crud-32"]["limits"]["http"]["errors"] = 2
    results["crud-32"]["read_by_id"]["errors"] = 1
    results["consent"]["phases"][2]["read"]["checked"]["errors"] = 4
    results["consent"]["phases"][1]["unchecked"]["errors"] = 1
    assert crud_errors(results["crud-32"]) == 3 and consent_errors(results["consent"]) == 5


def test_a_failing_benchmark_fails_the_run_but_the_others_still_run(tmp_path: Path) -> None:
    results = recorded_results()
    results["subscriptions"]["errors_total"] = 2
    ran: list[str] = []

    def fake(name: str) -> Benchmark:
        def run(options: Any) -> tuple[dict[str, Any], Path | None]:
            key = f"crud-{options.clients}" if name == "crud" else name
            ran.append(key)
            assert options.out_dir == tmp_path
            if name == "referral":
                raise RuntimeError("the sanity lifecycle failed")
            return results[key], tmp_path / f"{key}.json"

        real = BENCHMARKS[name]
        return Benchmark(real.options, run, lambda result: "report", real.window_errors)

    summary = new_summary("python -m bench all", False, PLAN, tmp_path)
    benchmarks = {name: fake(name) for name in BENCHMARKS}
    assert run_all(PLAN, benchmarks, parser().parse_args, summary) == 1
    assert ran == ["crud-32", "crud-16", "referral", "careplan", "consent", "subscriptions"]
    written = json.loads(summary.path.read_text())
    assert summary.path.name == written["file"] and written["file"].startswith("all-")
    assert written["failed_runs"] == ["referral"] and written["errors_total"] == 2
    runs = {run["name"]: run for run in written["runs"]}
    assert runs["referral"]["failure"] == "RuntimeError: the sanity lifecycle failed"
    assert runs["subscriptions"]["status"] == "2 errors in the measured windows"
    assert runs["careplan"]["options"]["plans"] == CAREPLAN_PLANS
    assert runs["careplan"]["result_file"] == "careplan.json"
    rows = {row["key"]: row for row in written["rows"]}
    assert rows["referral-submit"]["not_measured"][0]["why"].startswith("failed (RuntimeError")
    assert rows["subscription-delivery"]["met"] is None
    assert rows["careplan-update"]["met"] is False
    assert written["machine"]["nproc"] >= 1 and "git_revision" in written["machine"]
    assert written["planned"][0] == "python -m bench crud --database postgresql --clients 32"
