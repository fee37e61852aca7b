"""One actuator per kind of object the controller changes, behind :class:`Actuator`.

Adding a target kind (Istio DestinationRule, Gateway API HTTPRoute ...) means adding one module
here that observes the live object and writes only the fields it owns, only when they differ.
"""

from controller.actuators.base import Actuator
from controller.actuators.scale import ScaleActuator, ScaleObservation
from controller.errors import TargetError

__all__ = ["Actuator", "ScaleActuator", "ScaleObservation", "TargetError"]
