"""What every policy kind's spec shares: the error type, target references, mode, interval, Prometheus.

ScalingPolicy, CircuitBreakerPolicy and RoutingPolicy declare these fields with the same schema,
so they are parsed by the same code and refused with the same reason codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

Mode = Literal["Auto", "Recommend", "Off"]

MIN_INTERVAL_S = 5
MAX_INTERVAL_S = 3600


class SpecError(ValueError):
    """The policy cannot be acted on as written; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class PrometheusSpec:
    url: str
    timeout_s: float = 5.0
    max_staleness_s: float = 60.0
    insecure_skip_verify: bool = False
    bearer_token: SecretKeyRef | None = None
    ca: SecretKeyRef | None = None


T = TypeVar("T")


def guarded_parse(parse: Callable[[Mapping[str, Any]], T], spec: Mapping[str, Any]) -> T:
    """``parse(spec)``, with any malformed-data error turned into a :class:`SpecError`.

    Objects stored before a schema change, or written with validation off, reach the parsers with
    wrong types; they must end as ``Ready=False``, never as a crash of the cycle.
    """
    try:
        return parse(spec)
    except SpecError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError("InvalidSpec", f"malformed spec: {type(exc).__name__}: {exc}") from exc


def parse_target_ref(raw: Mapping[str, Any] | None, field: str = "targetRef") -> TargetRef:
    ref = raw or {}
    missing = [k for k in ("apiVersion", "kind", "name") if not ref.get(k)]
    if missing:
        raise SpecError("InvalidTargetRef", f"{field} lacks {', '.join(missing)}")
    return TargetRef(api_version=str(ref["apiVersion"]), kind=str(ref["kind"]), name=str(ref["name"]))


def parse_mode(spec: Mapping[str, Any]) -> Mode:
    mode = str(spec.get("mode", "Auto"))
    if mode not in ("Auto", "Recommend", "Off"):
        raise SpecError("InvalidMode", f"mode {mode!r} is not one of Auto, Recommend, Off")
    return mode  # type: ignore[return-value]  # checked above


def parse_interval(spec: Mapping[str, Any], default: int = 15) -> int:
    interval = int(spec.get("interval", default))
    if not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise SpecError("InvalidInterval", f"interval {interval}s is outside {MIN_INTERVAL_S}..{MAX_INTERVAL_S}s")
    return interval


def parse_prometheus(raw: Mapping[str, Any] | None) -> PrometheusSpec:
    if not raw or not raw.get("url"):
        raise SpecError("InvalidPrometheus", "prometheus.url is required")
    url = str(raw["url"]).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SpecError("InvalidPrometheus", f"prometheus.url {url!r} must start with http:// or https://")
    return PrometheusSpec(
        url=url,
        timeout_s=float(raw.get("timeout", 5.0)),
        max_staleness_s=float(raw.get("maxStaleness", 60.0)),
        insecure_skip_verify=bool(raw.get("insecureSkipVerify", False)),
        bearer_token=_secret_ref(raw.get("bearerTokenSecretRef")),
        ca=_secret_ref(raw.get("caSecretRef")),
    )


def _secret_ref(raw: Mapping[str, Any] | None) -> SecretKeyRef | None:
    if not raw:
        return None
    if not raw.get("name") or not raw.get("key"):
        raise SpecError("InvalidPrometheus", "a Secret reference needs both name and key")
    return SecretKeyRef(name=str(raw["name"]), key=str(raw["key"]))
