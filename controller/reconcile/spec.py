"""What every policy kind's spec shares: target references, mode, interval, Prometheus, metric sources.

ScalingPolicy, CircuitBreakerPolicy and RoutingPolicy declare these fields with the same schema,
so they are parsed by the same code and refused with the same reason codes (:class:`SpecError`).
The CRD's OpenAPI schema and CEL rules already reject most of this at admission; what is checked
here is what only the operator knows (preset names and their labels) and objects stored before a
schema change or written with validation off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from controller.clients.refs import PrometheusSpec, SecretKeyRef, TargetRef
from controller.clients.servers import PRESETS, MetricSource
from controller.clients.tenancy import check_url
from controller.errors import SpecError

Mode = Literal["Auto", "Recommend", "Off"]

# The fields that go into PromQL, checked as the CRDs' patterns check them (a test compares the two):
# a model name goes inside a quoted label matcher; a label selector must be complete matchers only,
# so that nothing in it can close the selector early and append PromQL of its own.
MODEL_NAME = re.compile(r'^[^"\\\r\n]+$')
LABEL_SELECTOR = re.compile(
    r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"\s*'
    r'(,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"\s*)*,?\s*$'
)

MIN_INTERVAL_S = 5
MAX_INTERVAL_S = 3600


T = TypeVar("T")


class Named(Protocol):
    @property
    def name(self) -> str: ...


NamedT = TypeVar("NamedT", bound=Named)


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
    """The spec's Prometheus: its own ``url`` (with optional Secrets), or the name of an admin's ``endpoint``.

    Whether the URL or the endpoint may be used is the admin's rule, checked when the cycle
    resolves it (:class:`~controller.clients.tenancy.PrometheusAccess`); here only its form.
    """
    raw = raw or {}
    url, endpoint = _optional_text(raw.get("url")), _optional_text(raw.get("endpoint"))
    if bool(url) == bool(endpoint):
        raise SpecError("InvalidPrometheus", "set exactly one of prometheus.url and prometheus.endpoint")
    bearer_token, ca = _secret_ref(raw.get("bearerTokenSecretRef")), _secret_ref(raw.get("caSecretRef"))
    insecure = bool(raw.get("insecureSkipVerify", False))
    if ca and insecure:
        raise SpecError("InvalidPrometheus", "caSecretRef and insecureSkipVerify exclude each other")
    if endpoint and (bearer_token or ca or insecure):
        raise SpecError(
            "InvalidPrometheus",
            "an endpoint brings its own credentials and TLS: no bearerTokenSecretRef, caSecretRef or"
            " insecureSkipVerify with prometheus.endpoint",
        )
    if url:
        url = url.rstrip("/")
        try:
            check_url(url)
        except ValueError as exc:
            raise SpecError("InvalidPrometheus", f"prometheus.url {exc}") from None
    return PrometheusSpec(
        url=url or "",
        timeout_s=float(raw.get("timeout", 5.0)),
        max_staleness_s=float(raw.get("maxStaleness", 60.0)),
        insecure_skip_verify=insecure,
        bearer_token=bearer_token,
        ca=ca,
        endpoint=endpoint,
    )


def _secret_ref(raw: Mapping[str, Any] | None) -> SecretKeyRef | None:
    if not raw:
        return None
    if not raw.get("name") or not raw.get("key"):
        raise SpecError("InvalidPrometheus", "a Secret reference needs both name and key")
    return SecretKeyRef(name=str(raw["name"]), key=str(raw["key"]))


def parse_metric_source(raw: Mapping[str, Any], where: str, reason: str, *, required: bool) -> MetricSource:
    """A preset or the spec's own PromQL, with the labels that shape a preset's selection.

    ``required``: exactly one of ``preset`` and ``query``; otherwise at most one (neither means
    the caller's default preset). ``where`` names the field in messages; ``reason`` is the
    condition reason of every refusal but an unknown preset's (``UnknownPreset``).
    """
    preset, query = _optional_text(raw.get("preset")), _optional_text(raw.get("query"))
    model_name, label_selector = _optional_text(raw.get("modelName")), _optional_text(raw.get("labelSelector"))
    if preset and query:
        raise SpecError(reason, f"{where}: set {'exactly' if required else 'at most'} one of preset and query")
    if required and not (preset or query):
        raise SpecError(reason, f"{where}: set exactly one of preset and query")
    if preset and preset not in PRESETS:
        raise SpecError("UnknownPreset", f"{where}: unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    if query and (model_name or label_selector):
        raise SpecError(reason, f"{where}: modelName and labelSelector apply to presets only")
    if preset and model_name and PRESETS[preset].model_label is None:
        raise SpecError(reason, f"{where}: preset {preset!r} has no model label to filter on")
    if model_name and not MODEL_NAME.match(model_name):
        raise SpecError(reason, f"{where}: modelName must not contain a quote, a backslash or a line break")
    if label_selector and not LABEL_SELECTOR.match(label_selector):
        raise SpecError(reason, f'{where}: labelSelector must be comma-separated matchers such as app="vllm"')
    return MetricSource(preset=preset, query=query, model_name=model_name, label_selector=label_selector)


def _optional_text(value: object) -> str | None:
    return str(value) if value else None


def parse_named_list(
    raw: Any, parse: Callable[[Mapping[str, Any]], NamedT], *, what: str, empty_reason: str, duplicate_reason: str
) -> tuple[NamedT, ...]:
    """A non-empty list of ``what`` (e.g. ``metric``) whose names are unique, each parsed by ``parse``."""
    if not raw:
        raise SpecError(empty_reason, f"at least one {what} is required")
    items = tuple(parse(item) for item in raw)
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise SpecError(duplicate_reason, f"{what} names must be unique, got {names}")
    return items
