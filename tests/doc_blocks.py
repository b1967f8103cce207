"""Code blocks taken from the documents, for the tests that run or compare them."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> str:
    """The ```python block of README.md whose text contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    found = [block for block in blocks if marker in block]
    assert len(found) == 1, (
        f"README.md: expected one python block with {marker!r}, found {len(found)}"
    )
    return found[0]
