"""Adapters to the systems the operator reads: the Kubernetes API and Prometheus, and the PromQL of the servers."""
