"""Render a kustomize directory with ``kubectl kustomize``: the objects a user's ``kubectl apply -k`` sends."""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
OVERLAYS = REPO / "deploy" / "overlays"
Object = dict[str, Any]


def render(directory: pathlib.Path) -> list[Object]:
    built = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]
