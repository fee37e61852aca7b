"""Kopf handlers, one module per policy kind; importing this package registers them all."""

from controller.handlers import circuit_breakers, lifecycle, routing, scaling

__all__ = ["circuit_breakers", "lifecycle", "routing", "scaling"]
