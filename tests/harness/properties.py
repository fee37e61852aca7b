"""How many examples a hypothesis property runs: few by default, the profile's many under ``make chaos``.

A property with its own ``max_examples`` ignores the profile's, so each says ``examples(n)``:
``n`` in the default profile, the profile's number when that is larger (``--hypothesis-profile=chaos``
asks for 10,000, see tests/conftest.py). Decorators run at import, after pytest loaded the profile.
"""

from __future__ import annotations

from hypothesis import settings

#: The default profile's number: a profile asking for more than this is a long run.
DEFAULT_EXAMPLES = 100


def examples(fast: int) -> int:
    loaded = settings().max_examples
    return loaded if loaded > DEFAULT_EXAMPLES and loaded > fast else fast
