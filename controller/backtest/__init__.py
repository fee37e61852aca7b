"""Closed-loop backtests of scaling policies on request traces (``infercast backtest``).

A trace in the Azure LLM schema (or a request rate replayed from Prometheus) drives the same
fleet model as the demo (:mod:`controller.backtest.engine`); a controller reads only complete
past observation samples and sets the desired count, and the run is scored by SLO attainment
per minute and per request, GPU-hours and scale actions. docs/backtest.md has the method.
"""
