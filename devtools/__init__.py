"""A one-machine development cluster: an emulated Kubernetes API server and a real Prometheus.

Used by the tests and by ``infercast demo``; never by the operator in a real cluster. Both pieces run
as separate processes so that the operator under test talks to them exactly as it would in a cluster:
over HTTP, through a kubeconfig and a Prometheus URL.
"""
