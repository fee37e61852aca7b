"""Dev tooling, not part of the operator's wheel: a one-machine development cluster and what runs on it.

An emulated Kubernetes API server (``apiserver``, built on kmock, with ``cel`` evaluating the CRDs'
rules), a real Prometheus (``prometheus_server``), a simulated vLLM fleet (``fleet``, on the
backtest's engine), process management (``processes``), the demo (``make demo``) and the
generator of the Grafana dashboards (``dashboards``). Used by the tests, the demo and the
benchmarks; never by the operator in a real cluster. Every piece runs as a separate process, so
that the operator under test talks to them exactly as it would in a cluster: over HTTP, through a
kubeconfig and a Prometheus URL.
"""
