"""Kopf handlers, one module per policy kind; importing this package registers them all."""

from controller.handlers import lifecycle, scaling

__all__ = ["lifecycle", "scaling"]
