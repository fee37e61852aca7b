"""Backtests of traffic policies (circuit breaking, routing) on failure scenarios.

A scenario (a request trace at a warped rate, subsets of GPU hosts, injected faults) is
simulated behind an Envoy-like proxy per subset and scored as the reference traffic judge does
(its README, ``bench/traffic/README.md`` of the shared benchmark folder), whose numbers the simulator reproduces exactly
(``benchmarks/traffic_judge_parity.py``). Settings change over time by a fixed decisions
timeline or by a closed-loop controller that sees only per-window observations of the past.

Modules, one job each: ``draws`` (the seeded draws), ``settings`` (proxy fields), ``scenario``
(file format, rate warp), ``engine`` (one host), ``proxy`` (pool, host choice, outlier
detection), ``observe`` (what a controller sees), ``timeline`` (timelines, the controller
interface, decisions CSV), ``simulator`` (the event loop), ``score`` (the judge's metrics),
``flagger`` and ``baselines`` (the judge's baselines), ``run`` (the API: ``run_scenario``).

Our own traffic policies on top (``infercast backtest-traffic``, docs/traffic-backtest.md):
``readings`` (what the operator's Prometheus queries would return), ``mapping`` (our settings to
the judge's fields), ``policy`` (the closed loop through the operator's decide step),
``report`` (the summary), ``plot`` (a picture per subset), ``command`` (the CLI's work).
"""
