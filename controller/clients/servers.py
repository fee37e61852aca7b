"""The PromQL of inference servers and of the mesh: one profile per server, and the presets built from it.

Every number a policy reads from Prometheus is written here, and only here:

* :data:`SERVERS`, one :class:`ServerProfile` per inference server (vLLM, TGI, Triton): how its
  series are named, its presets (named PromQL templates a spec may use), which of them give the
  load per capacity unit, which judge a replica's capacity (latency and queue), and which
  histograms and gauges judge a backend's health. **Adding a server (say SGLang) is adding one
  entry** (plus its names in the CRDs' enums, which a test compares with this table).
* :data:`PRESETS`: every server's presets, plus those of the GPU exporter (DCGM) and the mesh (Istio).
* :class:`MetricSource`: where a spec's number comes from (a preset, or the spec's own PromQL),
  with :func:`render_source`, its one renderer.
* :func:`backend_queries`: the per-backend health signals the traffic policies read, among them
  the pods failing on their own (:func:`failing_pods`) and the stalled ones (:func:`stalled`).

How a preset finds the target's series:

* ``<selector>`` defaults to the workload's pods: ``namespace="<ns>"`` and a ``pod`` regex built
  from the workload's name and kind (a Deployment's pods are ``<name>-<rs-hash>-<suffix>``, a
  StatefulSet's ``<name>-<ordinal>``), so ``vllm`` never matches the pods of ``vllm-canary``.
  These are the labels the Prometheus Operator's PodMonitor and the usual
  ``kubernetes_sd_configs`` relabelling attach. ``labelSelector`` in the spec replaces it.
* ``modelName`` adds the server's model label (``model_name`` for vLLM, ``model`` for Triton),
  always escaped as a PromQL string.
* vLLM names contain colons (``vllm:num_requests_waiting``); some scrape paths (OpenMetrics
  negotiation in prometheus-client, some remote-write bridges) turn them into underscores, so the
  vLLM series match both spellings with ``__name__=~"vllm[:_]..."``.

Pure string building: no I/O here.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Server = Literal["vLLM", "TGI", "Triton"]
CapacityUnit = Literal["PrefillTokensPerSecond", "RequestsPerSecond"]

CAPACITY_UNITS: tuple[CapacityUnit, ...] = ("PrefillTokensPerSecond", "RequestsPerSecond")

SELECTOR = "<selector>"
#: The workload's pods under the labels a scrape gives them when the series comes from another pod's
#: exporter that kept its own (DCGM's exporter: ``exported_namespace`` and ``exported_pod``).
EXPORTED_SELECTOR = "<exported-selector>"
#: The rate window of the presets: Prometheus' usual minute.
PRESET_WINDOW = "1m"

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


# -- PromQL shapes, shared by every server and the mesh ---------------------------------------------------------


def gauge_sum(series: str) -> str:
    return f"sum({series})"


def rate_sum(series: str, window: str = PRESET_WINDOW) -> str:
    return f"sum(rate({series}[{window}]))"


def p95(bucket_series: str, window: str = PRESET_WINDOW) -> str:
    """The p95 of a histogram over every series the selector matches, from its ``_bucket`` series."""
    return f"histogram_quantile(0.95, sum by (le) (rate({bucket_series}[{window}])))"


def first_of(*expressions: str) -> str:
    """The first expression that has data (a renamed metric with its deprecated name as fallback)."""
    return "(" + " or ".join(expressions) + ")"


def vllm_series(metric: str, selector: str = SELECTOR) -> str:
    """A vLLM series under either spelling of vLLM's names (``vllm:`` or ``vllm_``)."""
    return f'{{__name__=~"vllm[:_]{metric}",{selector}}}'


def plain_series(metric: str, selector: str = SELECTOR) -> str:
    return f"{metric}{{{selector}}}"


# -- the servers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerProfile:
    """One inference server's metrics: names, presets, and the signals the policies judge it by.

    ``series(metric, selector)`` is how the server's series are selected. ``load`` names the preset
    giving the load per capacity unit (a server without a token counter has none for tokens).
    What the capacity estimate (:mod:`controller.scaling.capacity`) and the SLO attainment
    (:mod:`controller.scaling.attainment`) read, each a preset name, unset when the server exports
    none: ``latency`` (p95 TTFT, or the nearest the server has) and ``tpot`` (p95 time per output
    token), ``queue`` and ``running`` (requests waiting and being served), ``generated`` (tokens
    generated per second), ``prefill_busy`` (seconds spent prefilling, or serving, per second) and
    ``prefilled`` (the load per capacity unit as processed by those seconds). ``ttft_bucket``,
    ``tpot_bucket`` and ``cache_usage`` are the raw series a traffic policy reads per backend.
    """

    name: Server
    model_label: str | None
    series: Callable[[str, str], str]
    presets: Mapping[str, Preset]
    load: Mapping[CapacityUnit, str]
    latency: str
    queue: str
    tpot: str | None = None
    running: str | None = None
    generated: str | None = None
    prefill_busy: str | None = None
    prefilled: Mapping[CapacityUnit, str] = field(default_factory=dict)
    ttft_bucket: str | None = None
    tpot_bucket: str | None = None
    cache_usage: tuple[str, ...] = field(default=())
    stall: tuple[str, str, str] | None = None


def _vllm() -> ServerProfile:
    def preset(description: str, template: str) -> Preset:
        return Preset(description, template, "model_name")

    s = vllm_series
    return ServerProfile(
        name="vLLM",
        model_label="model_name",
        series=vllm_series,
        presets={
            "vllm-requests-waiting": preset(
                "requests queued in vLLM engines, summed", gauge_sum(s("num_requests_waiting"))
            ),
            "vllm-requests-running": preset(
                "requests being decoded by vLLM engines, summed", gauge_sum(s("num_requests_running"))
            ),
            "vllm-kv-cache-usage": preset(
                "KV-cache usage fraction summed over pods (the deprecated gpu_cache_usage_perc as fallback)",
                first_of(gauge_sum(s("kv_cache_usage_perc")), gauge_sum(s("gpu_cache_usage_perc"))),
            ),
            "vllm-ttft-p95": preset(
                "p95 time to first token over 1 min, seconds", p95(s("time_to_first_token_seconds_bucket"))
            ),
            "vllm-tpot-p95": preset(
                "p95 time per output token over 1 min, seconds", p95(s("time_per_output_token_seconds_bucket"))
            ),
            "vllm-prefill-seconds-rate": preset(
                "seconds spent prefilling per second, summed over pods (V1 engine)",
                rate_sum(s("request_prefill_time_seconds_sum")),
            ),
            "vllm-prefill-rate": preset(
                "requests prefilled per second (V1 engine)", rate_sum(s("request_prefill_time_seconds_count"))
            ),
            "vllm-e2e-latency-p95": preset(
                "p95 end-to-end request latency over 1 min, seconds", p95(s("e2e_request_latency_seconds_bucket"))
            ),
            "vllm-prompt-tokens-rate": preset("prompt (prefill) tokens per second", rate_sum(s("prompt_tokens_total"))),
            "vllm-generation-tokens-rate": preset(
                "generated (decode) tokens per second", rate_sum(s("generation_tokens_total"))
            ),
            "vllm-request-rate": preset("requests finished per second", rate_sum(s("request_success_total"))),
        },
        load={"PrefillTokensPerSecond": "vllm-prompt-tokens-rate", "RequestsPerSecond": "vllm-request-rate"},
        latency="vllm-ttft-p95",
        queue="vllm-requests-waiting",
        tpot="vllm-tpot-p95",
        running="vllm-requests-running",
        generated="vllm-generation-tokens-rate",
        prefill_busy="vllm-prefill-seconds-rate",
        prefilled={"PrefillTokensPerSecond": "vllm-prompt-tokens-rate", "RequestsPerSecond": "vllm-prefill-rate"},
        ttft_bucket="time_to_first_token_seconds_bucket",
        tpot_bucket="time_per_output_token_seconds_bucket",
        cache_usage=("kv_cache_usage_perc", "gpu_cache_usage_perc"),
        # Sequences prefilling or decoding, and waiting; tokens generated, counted at every step (first
        # tokens included).
        stall=("num_requests_running", "num_requests_waiting", "generation_tokens_total"),
    )


def _tgi() -> ServerProfile:
    s = plain_series
    return ServerProfile(
        name="TGI",
        model_label=None,  # one model per TGI router: no label to filter on
        series=plain_series,
        presets={
            "tgi-queue-size": Preset("requests waiting in TGI routers, summed", gauge_sum(s("tgi_queue_size"))),
            "tgi-queue-duration-p95": Preset(
                "p95 time a request waited in the TGI router's queue over 1 min, seconds",
                p95(s("tgi_request_queue_duration_bucket")),
            ),
            "tgi-request-rate": Preset("requests served successfully per second", rate_sum(s("tgi_request_success"))),
            "tgi-input-tokens-rate": Preset(
                "prompt (input) tokens per second", rate_sum(s("tgi_request_input_length_sum"))
            ),
            "tgi-tpot-p95": Preset(
                "p95 of the requests' mean time per output token over 1 min, seconds",
                p95(s("tgi_request_mean_time_per_token_duration_bucket")),
            ),
            "tgi-generation-tokens-rate": Preset(
                "generated tokens per second", rate_sum(s("tgi_request_generated_tokens_sum"))
            ),
            "tgi-batch-size": Preset("requests in the running batches, summed", gauge_sum(s("tgi_batch_current_size"))),
            "tgi-prefill-seconds-rate": Preset(
                "seconds spent in prefill forward passes per second, summed over routers",
                rate_sum('tgi_batch_forward_duration_sum{method="prefill",' + SELECTOR + "}"),
            ),
            "tgi-prefill-rate": Preset(
                "prefill forward passes per second",
                rate_sum('tgi_batch_forward_duration_count{method="prefill",' + SELECTOR + "}"),
            ),
        },
        load={"PrefillTokensPerSecond": "tgi-input-tokens-rate", "RequestsPerSecond": "tgi-request-rate"},
        # TGI exports no TTFT histogram: its queue time is the nearest it has.
        latency="tgi-queue-duration-p95",
        queue="tgi-queue-size",
        tpot="tgi-tpot-p95",
        running="tgi-batch-size",
        generated="tgi-generation-tokens-rate",
        prefill_busy="tgi-prefill-seconds-rate",
        prefilled={"PrefillTokensPerSecond": "tgi-input-tokens-rate", "RequestsPerSecond": "tgi-request-rate"},
        # TGI's token counters grow only when a request ends; its forward passes (prefill and decode,
        # each a token for every sequence of the batch) are counted as each one ends.
        stall=("tgi_batch_current_size", "tgi_queue_size", "tgi_batch_forward_duration_count"),
    )


def _triton() -> ServerProfile:
    s = plain_series

    def preset(description: str, template: str) -> Preset:
        return Preset(description, template, "model")

    return ServerProfile(
        name="Triton",
        model_label="model",
        series=plain_series,
        presets={
            "triton-pending-requests": preset(
                "requests pending in Triton schedulers, summed", gauge_sum(s("nv_inference_pending_request_count"))
            ),
            "triton-queue-duration": preset(
                "mean Triton queue time per request over 1 min, seconds",
                f"({rate_sum(s('nv_inference_queue_duration_us'))}"
                f" / clamp_min({rate_sum(s('nv_inference_request_success'))}, 1e-9) / 1e6)",
            ),
            "triton-request-rate": preset(
                "requests served successfully per second", rate_sum(s("nv_inference_request_success"))
            ),
            "triton-compute-seconds-rate": preset(
                "seconds of inference compute per second, summed over models and pods",
                f"({rate_sum(s('nv_inference_compute_infer_duration_us'))} / 1e6)",
            ),
        },
        # Triton's own metrics count requests, not tokens: a token load needs load.query. It has no
        # per-token latency: the capacity is its service rate (requests per compute-second) alone.
        # No stall signal: its execution counter grows when an execution ends, and one execution of a
        # generative model may last a whole generation, so a flat counter is no evidence of a hang.
        load={"RequestsPerSecond": "triton-request-rate"},
        latency="triton-queue-duration",
        queue="triton-pending-requests",
        prefill_busy="triton-compute-seconds-rate",
        prefilled={"RequestsPerSecond": "triton-request-rate"},
    )


SERVERS: dict[Server, ServerProfile] = {profile.name: profile for profile in (_vllm(), _tgi(), _triton())}

#: Istio's destination telemetry, selected by the workload's labels rather than its pods.
ISTIO_REQUESTS = 'istio_requests_total{reporter="destination",' + SELECTOR + "}"
ISTIO_ERRORS = 'istio_requests_total{reporter="destination",response_code=~"5..",' + SELECTOR + "}"
ISTIO_DURATION_BUCKET = 'istio_request_duration_milliseconds_bucket{reporter="destination",' + SELECTOR + "}"

#: Presets of no inference server: the GPU exporter's and the mesh's.
OTHER_PRESETS: dict[str, Preset] = {
    "dcgm-gpu-utilization": Preset(
        "GPU utilisation percent (DCGM exporter) summed over the workload's GPUs, whether the scrape kept the "
        "pod label or renamed it exported_pod",
        first_of(
            gauge_sum(plain_series("DCGM_FI_DEV_GPU_UTIL")),
            gauge_sum(plain_series("DCGM_FI_DEV_GPU_UTIL", EXPORTED_SELECTOR)),
        ),
    ),
    "istio-request-rate": Preset(
        "requests per second received by the workload (Istio destination telemetry)",
        rate_sum(ISTIO_REQUESTS),
        workload_selector=False,
    ),
}

PRESETS: dict[str, Preset] = {
    **{name: preset for profile in SERVERS.values() for name, preset in profile.presets.items()},
    **OTHER_PRESETS,
}

# -- selecting a workload's series -------------------------------------------------------------------------------

_LABEL_VALUE_UNSAFE = re.compile(r'["\\\n]')


def quote(value: str) -> str:
    """Escape a label value for a PromQL string literal."""
    return _LABEL_VALUE_UNSAFE.sub(lambda m: "\\" + {"\n": "n"}.get(m.group(), m.group()), value)


def pods_selector(*, namespace: str, kind: str, name: str) -> str:
    """The labels of a workload's pods: its namespace and a pod-name pattern by workload kind."""
    # Kubernetes names are DNS labels/subdomains: "." is the only regex metacharacter they can hold.
    pod = _POD_PATTERNS.get(kind, _DEFAULT_POD_PATTERN).format(name=name.replace(".", r"\."))
    return f'namespace="{quote(namespace)}",pod=~"{quote(pod)}"'


def istio_selector(*, namespace: str, name: str) -> str:
    """Istio's destination labels of a workload."""
    return f'destination_workload="{quote(name)}",destination_workload_namespace="{quote(namespace)}"'


def default_selector(preset: Preset, *, namespace: str, kind: str, name: str) -> str:
    if not preset.workload_selector:
        return istio_selector(namespace=namespace, name=name)
    return pods_selector(namespace=namespace, kind=kind, name=name)


def with_model(selector: str, label: str | None, model_name: str | None) -> str:
    """``selector`` narrowed to one model, when the server has a model label and a model is named."""
    if not (label and model_name):
        return selector
    return f'{selector},{label}="{quote(model_name)}"'


# -- rendering ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSource:
    """Where a policy's number comes from: a preset rendered for the target, or the spec's own PromQL.

    ``model_name`` and ``label_selector`` shape a preset's selection (see the module docstring);
    a query is used as written.
    """

    preset: str | None = None
    query: str | None = None
    model_name: str | None = None
    label_selector: str | None = None


@dataclass(frozen=True)
class RenderedQuery:
    """A source rendered for one workload: its value, and the age of the newest sample behind it.

    Prometheus answers an instant query from samples up to 5 minutes old; ``maxStaleness`` is
    enforced with ``freshness`` instead, on every raw series a preset may read. The spec's own
    PromQL has no known series, hence no freshness query.
    """

    value: str
    freshness: str | None


# A series selector of a template: an optional metric name and the braces holding a selector placeholder.
_PLACEHOLDER = "(?:" + re.escape(SELECTOR) + "|" + re.escape(EXPORTED_SELECTOR) + ")"
_SERIES = re.compile(r"(?:[A-Za-z_:][A-Za-z0-9_:]*)?\{[^{}]*" + _PLACEHOLDER + r"[^{}]*\}")
_POD_LABELS = re.compile(r"(?<![\w])(namespace|pod)(?==)")


def exported(selector: str) -> str:
    """The default selector with ``namespace`` and ``pod`` as an exporter's scrape renames them."""
    return _POD_LABELS.sub(r"exported_\1", selector)


#: Rendered presets kept: a cycle renders up to nine per policy, the same ones every cycle.
RENDERED_PRESETS_KEPT = 16_384


@functools.lru_cache(maxsize=RENDERED_PRESETS_KEPT)
def render_preset(
    preset_name: str,
    *,
    namespace: str,
    kind: str,
    name: str,
    model_name: str | None = None,
    label_selector: str | None = None,
) -> RenderedQuery:
    """The PromQL of a preset for one workload. Raises KeyError for an unknown preset.

    Kept once rendered (the answer is immutable): rendering was 4 % of the operator's CPU at 300
    predictive policies, each rendering the same queries every cycle.
    """
    preset = PRESETS[preset_name]
    selector = label_selector or default_selector(preset, namespace=namespace, kind=kind, name=name)
    selector = with_model(selector, preset.model_label, model_name)
    # A labelSelector names the labels as they are; the default selector has an exporter's renaming too.
    renamed = selector if label_selector else exported(selector)

    def fill(template: str) -> str:
        return template.replace(SELECTOR, selector).replace(EXPORTED_SELECTOR, renamed)

    # Every series the template may read (e.g. the kv-cache preset's deprecated fallback name).
    series = dict.fromkeys(fill(m.group(0)) for m in _SERIES.finditer(preset.template))
    assert series, f"preset {preset_name} has no series selector"
    return RenderedQuery(
        value=fill(preset.template),
        freshness=f"time() - max({' or '.join(f'timestamp({s})' for s in series)})",
    )


def render_source(
    source: MetricSource, *, namespace: str, kind: str, name: str, default_preset: str | None = None
) -> RenderedQuery:
    """The spec's query as written, or its preset (``default_preset`` when it names neither) for the workload."""
    if source.query:
        return RenderedQuery(source.query, None)
    preset = source.preset or default_preset
    assert preset is not None, "the spec parser guarantees a preset or a query"
    return render_preset(
        preset,
        namespace=namespace,
        kind=kind,
        name=name,
        model_name=source.model_name,
        label_selector=source.label_selector,
    )


# -- a traffic backend's health ----------------------------------------------------------------------------------


#: A pod fails when its own 5xx share is at least this many times the median pod's (and at least
#: the policy's error limit): an outlier among its peers, unlike a pool that fails as a whole.
FAILING_POD_FACTOR = 2.0
#: ... over this range: Envoy's longest ejection (300 s), so that a pod stays counted as failing
#: while it sits out an ejection and answers nothing.
FAILING_POD_WINDOW = "5m"


def failing_pods(errors: str, requests: str, floor: float, window: str = FAILING_POD_WINDOW) -> str:
    """The pods whose 5xx share is at least ``floor`` and :data:`FAILING_POD_FACTOR` times the median
    pod's, by the scrape's ``pod`` label (a pod without 5xx series has a share of 0): a vector."""
    per_pod = f"sum by (pod) (rate({requests}[{window}]))"
    share = f"((sum by (pod) (rate({errors}[{window}])) or {per_pod} * 0) / {per_pod})"
    threshold = f"scalar(clamp_min({FAILING_POD_FACTOR:g} * quantile(0.5, {share}), {floor:g}))"
    return f"({share} >= {threshold})"


def stalled(
    running: tuple[float | None, float | None],
    waiting: tuple[float | None, float | None],
    generated: tuple[float | None, float | None],
) -> bool | None:
    """Whether a replica stalled over a read interval, from its gauges of sequences running and waiting
    and its counter of tokens generated, each read at the interval's start and end: requests held
    at both ends (running, or waiting for a slot) and no token generated in between. ``None``
    (unknown) when that cannot be told: no counter, or no tokens and a gauge missing.

    It is an invariant of a decoding engine, not a statistic. An engine that holds a request steps:
    a waiting request with a free slot is scheduled at the next step, a full engine has running
    sequences. Every decode step emits a token for each sequence it decodes (vLLM and TGI: tens of
    milliseconds a step), and a step that prefills emits the first token of the sequence it
    prefills. So a healthy engine holding requests through an interval longer than its longest step
    (a whole prefill of the longest prompt; with vLLM's chunked prefill, one chunk) generates a
    token in it: the traffic simulator's longest prefill is 14,050 tokens at 12,000 tokens/s, 1.2 s,
    against the traffic policies' 5 s interval. Requests held and no token mean an engine that no
    longer steps: a hang (a stuck collective, a GPU fault that froze the process without killing
    it), whether it hung while decoding (its sequences stay running) or between steps (new requests
    pile up waiting). It has no false-alarm rate to budget: it is not one of the detector's tests
    (:data:`controller.traffic.signals.TESTS_PER_BACKEND`). A counter that went down was reset (the
    pod restarted): its increase is its new value, as Prometheus' ``increase``.
    """
    before, now = generated
    if before is None or now is None or not (math.isfinite(before) and math.isfinite(now)):
        return None
    if (now - before if now >= before else now) > 0:
        return False
    held = [_held_through(*gauge) for gauge in (running, waiting)]
    if True in held:
        return True
    return None if None in held else False


def _held_through(before: float | None, now: float | None) -> bool | None:
    """A gauge above 0 at both ends (``None``: a value missing or not a number)."""
    if before is None or now is None or not (math.isfinite(before) and math.isfinite(now)):
        return None
    return before > 0 and now > 0


def stalled_pods(profile: ServerProfile, pods: str, window: str) -> tuple[str, str] | None:
    """PromQL of the pods :func:`stalled` over ``window`` (the policy's interval) by their ``pod``
    label, and of the pods it can judge (the three series with samples in the window); ``None`` when
    the server has no stall signal. Every sample of a gauge in the window must be above 0 and the
    counter flat across them: a scrape interval longer than half the window leaves fewer than the
    two samples ``increase`` needs, and the stall is then unknown, never read as "not stalled"."""
    if profile.stall is None:
        return None
    running, waiting, generated = (profile.series(metric, pods) for metric in profile.stall)
    busy = f"min by (pod) (min_over_time({running}[{window}]))"
    queued = f"min by (pod) (min_over_time({waiting}[{window}]))"
    progress = f"sum by (pod) (increase({generated}[{window}]))"
    return (
        f"((({busy} > 0) or ({queued} > 0)) and ({progress} == 0))",
        f"({busy} and {queued} and {progress})",
    )


def backend_queries(
    *,
    namespace: str,
    kind: str,
    name: str,
    model_name: str | None,
    window: str,
    interval: str,
    server: Server = "vLLM",
    error_limit: float = 0.05,
) -> dict[str, str]:
    """PromQL per health signal of one backend (a workload), rates over ``window`` (e.g. ``1m``).

    The mesh gives the error rate, the request rate, the p95 latency and how many pods fail on their
    own (:func:`failing_pods`, over its own longer range, with ``error_limit`` as the least share that
    counts); the server gives
    p95 TTFT and TPOT, the mean KV-cache usage (``saturation``) of the workload's pods and, over the
    policy's ``interval``, how many of them stalled (:func:`stalled_pods`: nothing when no pod can be
    judged). A stalled pod fails on its own too: ``failing_replicas`` counts the pods of either kind once.
    """
    profile = SERVERS[server]
    mesh = istio_selector(namespace=namespace, name=name)
    pods = with_model(pods_selector(namespace=namespace, kind=kind, name=name), profile.model_label, model_name)

    def istio(template: str) -> str:
        return template.replace(SELECTOR, mesh)

    requests = rate_sum(istio(ISTIO_REQUESTS), window)
    queries = {
        # No 5xx series at all is a 0 error rate; no request series at all stays missing.
        "error_rate": f"({rate_sum(istio(ISTIO_ERRORS), window)} or vector(0)) / {requests}",
        "request_rate": requests,
        "latency_ms": p95(istio(ISTIO_DURATION_BUCKET), window),
    }
    failing = failing_pods(istio(ISTIO_ERRORS), istio(ISTIO_REQUESTS), error_limit)
    stall = stalled_pods(profile, pods, interval)
    if stall is None:
        queries["failing_replicas"] = f"(count({failing}) or vector(0))"
    else:
        stalled_vector, judged = stall
        queries["failing_replicas"] = f"(count({failing} or {stalled_vector}) or vector(0))"
        queries["stalled_replicas"] = f"(count({stalled_vector}) or (count({judged}) * 0))"
    if profile.ttft_bucket:
        queries["ttft_s"] = p95(profile.series(profile.ttft_bucket, pods), window)
    if profile.tpot_bucket:
        queries["tpot_s"] = p95(profile.series(profile.tpot_bucket, pods), window)
    if profile.cache_usage:
        queries["saturation"] = first_of(*(f"avg({profile.series(g, pods)})" for g in profile.cache_usage))
    return queries
