"""Benchmarks for barnebro, runnable as ``python -m bench crud …`` (or ``python3 dev.py bench``).

The machine this project is developed and tested on is small (2 cores) and shared, so
wall-clock throughput alone says little: it rises and falls with whatever else runs. The
benchmarks therefore count the CPU time the server processes actually spend and report
*requests per server CPU-second*, and they measure, in the same run, what a bare HTTP server
and a bare database can do on the same machine, so that the interesting numbers are ratios
that survive noise ("the FHIR read costs 6x a bare HTTP GET"), not absolute rates.

Modules:

* ``bench.crud``   — the CRUD workload against a local stack, and the run as a whole;
* ``bench.actors`` — who a benchmark acts as: organisations (registered by the operator),
  the operator and the population register, each with its own credential;
* ``bench.cpu``    — CPU accounting from ``/proc`` (per process, per program, machine-wide);
* ``bench.limits`` — the HTTP limit (bare aiohttp server) and the storage limit (bare
  insert + select by primary key);
* ``bench.report`` — latency percentiles, the JSON result file and the printed tables;
* ``bench.command_line``, ``bench.benchmarks`` — every command's options, and each
  benchmark's options, ``run``, report and window errors, shared by ``python -m bench NAME``
  and ``python -m bench all``;
* ``bench.overall`` — ``python -m bench all``: every figure of the README's performance
  summary in one run, one JSON record and the README's table.
* ``bench.tables`` — VACUUM ANALYZE of the tables a benchmark loaded, their rows and size;
* ``bench.scale``  — reads and searches at a million imported resources against ten
  thousand, the data brought in with ``barnebro import`` as each party.

See ``bench/README.md`` for how to run them and what every number means.
"""
