"""Kopf handlers, one module per policy kind; importing this package registers them all."""

from controller.handlers import circuit_breaker_policies, lifecycle, routing_policies, scaling_policies

__all__ = ["circuit_breaker_policies", "lifecycle", "routing_policies", "scaling_policies"]
