"""The documentation a user reads from a clone: every doc reachable from the README, every command runnable there.

Commands use repository-relative paths only (a clone lives anywhere), and a ``kubectl`` command on a
namespaced object names its namespace (nothing we install lives in ``default``).
"""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "docs").glob("*.json"))
USER_DOCS = [
    README,
    REPO / "CHANGELOG.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "data/traces/README.md",
    REPO / "tests/upstream_crds/README.md",
]
# kubectl verbs that act on named, namespaced objects (get -A and apply -f/-k carry their own namespaces).
NAMESPACED_VERBS = ("describe", "logs", "patch", "rollout status")
OURS = r"(sp|cbp|rp|scalingpolic\w*|circuitbreakerpolic\w*|routingpolic\w*|deploy\w*/infercast-operator)\b"


def commands(text: str) -> list[str]:
    """``kubectl`` command lines in code blocks and inline code, continuation lines joined."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL) + re.findall(r"`([^`\n]+)`", text)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if "kubectl " in line]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_doc_is_linked_from_the_readme(doc: pathlib.Path) -> None:
    assert f"]({doc.relative_to(REPO)})" in README.read_text()


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_names_an_absolute_path_of_this_machine(doc: pathlib.Path) -> None:
    assert not re.search(r"(?<![\w.])/(work|root|home|tmp)/", doc.read_text())


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_kubectl_commands_on_our_objects_name_their_namespace(doc: pathlib.Path) -> None:
    for line in commands(doc.read_text()):
        acting = any(re.search(rf"kubectl\s+(-n\s+\S+\s+)?{verb}\s+{OURS}", line) for verb in NAMESPACED_VERBS)
        if acting:
            assert re.search(r"\s(-n|--namespace)[\s=]\S+|--all-namespaces|\s-A\b", line), line


def test_the_namespace_check_sees_a_missing_namespace() -> None:
    """The control for the test above."""
    (line,) = commands("```sh\nkubectl describe sp vllm-llama   # conditions\n```\n")
    assert re.search(rf"kubectl\s+(-n\s+\S+\s+)?describe\s+{OURS}", line)
    assert not re.search(r"\s(-n|--namespace)[\s=]\S+|--all-namespaces|\s-A\b", line)
