"""Prometheus credentials of a policy, read from the Secrets its spec names (any policy kind).

A policy author may name any Secret of their namespace, including ones they cannot read
themselves (a database password); the operator, which can, would then send it as a bearer token.
So a Secret is usable only if it *opted in*: it carries the label the cluster admin chose
(:data:`DEFAULT_SECRET_LABEL` unless configured), which whoever controls the Secret sets. Neither
the value nor anything of a refused Secret appears in an error.
"""

from __future__ import annotations

import base64
import binascii

from controller.clients.kube import SECRETS, Kube, KubeError
from controller.clients.prometheus import Credentials
from controller.clients.refs import PrometheusSpec, SecretKeyRef
from controller.errors import SpecError

#: The label (key, value) a Secret must carry to be sent to Prometheus, unless the admin picks another.
DEFAULT_SECRET_LABEL = ("infercast.io/prometheus-credentials", "true")


async def read_credentials(
    kube: Kube, namespace: str, refs: PrometheusSpec, opt_in: tuple[str, str] = DEFAULT_SECRET_LABEL
) -> Credentials:
    """The bearer token and CA bundle; a Secret missing, forbidden or not opted in is a :class:`SpecError`."""
    token = await _secret_value(kube, namespace, refs.bearer_token, opt_in) if refs.bearer_token else None
    ca = await _secret_value(kube, namespace, refs.ca, opt_in) if refs.ca else None
    return Credentials(bearer_token=token.strip() if token else None, ca_pem=ca)


async def _secret_value(kube: Kube, namespace: str, ref: SecretKeyRef, opt_in: tuple[str, str]) -> str:
    try:
        secret = await kube.get(SECRETS, namespace, ref.name)
    except KubeError as exc:
        if exc.status in (403, 404):
            raise SpecError("SecretNotFound", f"cannot read Prometheus credentials: {exc.message}") from None
        raise
    label, value = opt_in
    if ((secret.get("metadata") or {}).get("labels") or {}).get(label) != value:
        raise SpecError(
            "SecretNotOptedIn",
            f"Secret {ref.name} is not labelled {label}={value}: only Secrets labelled so are sent to Prometheus",
        )
    data = (secret.get("data") or {}).get(ref.key)
    if data is None:
        raise SpecError("SecretNotFound", f"Secret {ref.name} has no key {ref.key!r}")
    try:
        return base64.b64decode(data).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SpecError("SecretNotFound", f"key {ref.key!r} of Secret {ref.name} is not text") from None
