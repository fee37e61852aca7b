"""Prometheus credentials of a policy, read from the Secrets its spec names (any policy kind)."""

from __future__ import annotations

from controller.clients.kube import Kube, KubeError
from controller.clients.prometheus import Credentials
from controller.clients.refs import PrometheusSpec
from controller.errors import SpecError


async def read_credentials(kube: Kube, namespace: str, refs: PrometheusSpec) -> Credentials:
    """The bearer token and CA bundle; a Secret that is missing or forbidden is a :class:`SpecError`."""
    if not refs.bearer_token and not refs.ca:
        return Credentials()
    try:
        token = (
            await kube.read_secret_key(namespace, refs.bearer_token.name, refs.bearer_token.key)
            if refs.bearer_token
            else None
        )
        ca = await kube.read_secret_key(namespace, refs.ca.name, refs.ca.key) if refs.ca else None
    except KubeError as exc:
        if exc.status in (403, 404):
            raise SpecError("SecretNotFound", f"cannot read Prometheus credentials: {exc.message}") from exc
        raise
    return Credentials(bearer_token=token.strip() if token else None, ca_pem=ca)
