"""PromQL templates for the metrics GPU inference servers export.

Every preset yields ONE number for the whole workload (a sum over its pods, or a quantile over
all of them), which the policy compares with a per-replica (``AverageValue``) or total
(``Value``) target. How a preset finds the target's series:

* ``<selector>`` defaults to the workload's pods: ``namespace="<ns>"`` and a ``pod`` regex built
  from the workload's name and kind (a Deployment's pods are ``<name>-<rs-hash>-<suffix>``, a
  StatefulSet's ``<name>-<ordinal>``), so ``vllm`` never matches the pods of ``vllm-canary``.
  These are the labels the Prometheus Operator's PodMonitor and the usual
  ``kubernetes_sd_configs`` relabelling attach. ``labelSelector`` in the spec replaces it.
* ``modelName`` adds the server's model label (``model_name`` for vLLM, ``model`` for Triton).
* vLLM names contain colons (``vllm:num_requests_waiting``); some scrape paths (OpenMetrics
  negotiation in prometheus-client, some remote-write bridges) turn them into underscores, so the
  presets match both spellings with ``__name__=~"vllm[:_]..."``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_POD_PATTERNS = {
    "Deployment": "{name}-[a-z0-9]{{5,10}}-[a-z0-9]{{5}}",
    "Rollout": "{name}-[a-z0-9]{{5,10}}-[a-z0-9]{{5}}",
    "StatefulSet": "{name}-[0-9]+",
    "LeaderWorkerSet": "{name}-[0-9]+(-[0-9]+)?",
}
_DEFAULT_POD_PATTERN = "{name}-.+"


@dataclass(frozen=True)
class Preset:
    """``template`` holds the placeholder ``SELECTOR``; ``model_label`` is the label ``modelName`` filters on."""

    description: str
    template: str
    model_label: str | None = None
    workload_selector: bool = True  # False: the template selects by Istio's workload labels instead


SELECTOR = "<selector>"


def _vllm(metric: str) -> str:
    return f'{{__name__=~"vllm[:_]{metric}",{SELECTOR}}}'


def _quantile_over(bucket: str, q: float = 0.95) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({_vllm(bucket)}[1m])))"


PRESETS: dict[str, Preset] = {
    "vllm-requests-waiting": Preset(
        "requests queued in vLLM engines, summed", f"sum({_vllm('num_requests_waiting')})", "model_name"
    ),
    "vllm-requests-running": Preset(
        "requests being decoded by vLLM engines, summed", f"sum({_vllm('num_requests_running')})", "model_name"
    ),
    "vllm-kv-cache-usage": Preset(
        "KV-cache usage fraction summed over pods (the deprecated gpu_cache_usage_perc as fallback)",
        f"(sum({_vllm('kv_cache_usage_perc')}) or sum({_vllm('gpu_cache_usage_perc')}))",
        "model_name",
    ),
    "vllm-ttft-p95": Preset(
        "p95 time to first token over 1 min, seconds",
        _quantile_over("time_to_first_token_seconds_bucket"),
        "model_name",
    ),
    "vllm-e2e-latency-p95": Preset(
        "p95 end-to-end request latency over 1 min, seconds",
        _quantile_over("e2e_request_latency_seconds_bucket"),
        "model_name",
    ),
    "vllm-prompt-tokens-rate": Preset(
        "prompt (prefill) tokens per second", f"sum(rate({_vllm('prompt_tokens_total')}[1m]))", "model_name"
    ),
    "vllm-generation-tokens-rate": Preset(
        "generated (decode) tokens per second", f"sum(rate({_vllm('generation_tokens_total')}[1m]))", "model_name"
    ),
    "vllm-request-rate": Preset(
        "requests finished per second", f"sum(rate({_vllm('request_success_total')}[1m]))", "model_name"
    ),
    "triton-pending-requests": Preset(
        "requests pending in Triton schedulers, summed",
        f"sum(nv_inference_pending_request_count{{{SELECTOR}}})",
        "model",
    ),
    "triton-queue-duration": Preset(
        "mean Triton queue time per request over 1 min, seconds",
        f"(sum(rate(nv_inference_queue_duration_us{{{SELECTOR}}}[1m]))"
        f" / clamp_min(sum(rate(nv_inference_request_success{{{SELECTOR}}}[1m])), 1e-9) / 1e6)",
        "model",
    ),
    "triton-request-rate": Preset(
        "requests served successfully per second",
        f"sum(rate(nv_inference_request_success{{{SELECTOR}}}[1m]))",
        "model",
    ),
    "tgi-queue-size": Preset("requests waiting in TGI routers, summed", f"sum(tgi_queue_size{{{SELECTOR}}})"),
    "tgi-queue-duration-p95": Preset(
        "p95 time a request waited in the TGI router's queue over 1 min, seconds",
        f"histogram_quantile(0.95, sum by (le) (rate(tgi_request_queue_duration_bucket{{{SELECTOR}}}[1m])))",
    ),
    "tgi-request-rate": Preset(
        "requests served successfully per second", f"sum(rate(tgi_request_success{{{SELECTOR}}}[1m]))"
    ),
    "tgi-input-tokens-rate": Preset(
        "prompt (input) tokens per second", f"sum(rate(tgi_request_input_length_sum{{{SELECTOR}}}[1m]))"
    ),
    "dcgm-gpu-utilization": Preset(
        "GPU utilisation percent (DCGM exporter) summed over the workload's GPUs",
        f"sum(DCGM_FI_DEV_GPU_UTIL{{{SELECTOR}}})",
    ),
    "istio-request-rate": Preset(
        "requests per second received by the workload (Istio destination telemetry)",
        f'sum(rate(istio_requests_total{{reporter="destination",{SELECTOR}}}[1m]))',
        workload_selector=False,
    ),
}

_LABEL_VALUE_UNSAFE = re.compile(r'["\\\n]')


def _quote(value: str) -> str:
    """Escape a label value for a PromQL string literal."""
    return _LABEL_VALUE_UNSAFE.sub(lambda m: "\\" + {"\n": "n"}.get(m.group(), m.group()), value)


def default_selector(preset: Preset, *, namespace: str, kind: str, name: str) -> str:
    if not preset.workload_selector:
        return f'destination_workload="{_quote(name)}",destination_workload_namespace="{_quote(namespace)}"'
    # Kubernetes names are DNS labels/subdomains: "." is the only regex metacharacter they can hold.
    pod = _POD_PATTERNS.get(kind, _DEFAULT_POD_PATTERN).format(name=name.replace(".", r"\."))
    return f'namespace="{_quote(namespace)}",pod=~"{_quote(pod)}"'


@dataclass(frozen=True)
class PresetQueries:
    """A preset rendered for one workload: its value, and the age of the newest sample behind it.

    Prometheus answers an instant query from samples up to 5 minutes old; ``maxStaleness`` is
    enforced with ``freshness`` instead, on every raw series the preset may read.
    """

    value: str
    freshness: str


# A series selector of a template: an optional metric name and the braces holding SELECTOR.
_SERIES = re.compile(
    r"[A-Za-z_:][A-Za-z0-9_:]*\{[^{}]*" + re.escape(SELECTOR) + r"[^{}]*\}|\{[^{}]*" + re.escape(SELECTOR) + r"[^{}]*\}"
)


def render_preset(
    preset_name: str,
    *,
    namespace: str,
    kind: str,
    name: str,
    model_name: str | None = None,
    label_selector: str | None = None,
) -> PresetQueries:
    """The PromQL of a preset for one workload. Raises KeyError for an unknown preset."""
    preset = PRESETS[preset_name]
    selector = label_selector or default_selector(preset, namespace=namespace, kind=kind, name=name)
    if model_name and preset.model_label:
        selector += f',{preset.model_label}="{_quote(model_name)}"'
    # Every series the template may read (e.g. the kv-cache preset's deprecated fallback name).
    series = dict.fromkeys(m.group(0).replace(SELECTOR, selector) for m in _SERIES.finditer(preset.template))
    assert series, f"preset {preset_name} has no series selector"
    return PresetQueries(
        value=preset.template.replace(SELECTOR, selector),
        freshness=f"time() - max({' or '.join(f'timestamp({s})' for s in series)})",
    )
