import os
import shutil
import tempfile
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
for helpers in ("book", "core"):  # tests/book/sitecheck.py, tests/core/test_data_fullscale.py's writers
    sys.path.insert(0, str(Path(__file__).parent / helpers))
os.environ["FAIRBOOK_PROGRESS"] = "0"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before anything imports torch
os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download
# The tests never see the developer's own data or cache: only what the Makefile installs.
os.environ.pop("FAIRBOOK_DATA", None)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fairbook-test-cache-")

TOY = '''---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Toy chapter

```{code-cell} ipython3
:tags: [parameters]

n: int = 3                 # >= 0 | how many rows
p: float = 0.5             # in [0, 1] | a probability
mode: str = "a"            # one of a, b | a choice
fail: bool = False         # | raise in the next cell
```

```{code-cell} ipython3
import pandas as pd
import fairbook as fb
if fail:
    raise ValueError("toy failure requested")
fb.io.save_table(pd.DataFrame({"i": range(n), "p": p}), "table")
print("rows", n)
```
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throwaway project root (real chapters + a toy chapter) with its own runs directory."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    for src in (REPO / "notebooks").glob("*.md"):
        shutil.copy(src, root / "notebooks" / src.name)
    (root / "notebooks" / "toy.md").write_text(TOY)
    monkeypatch.setenv("FAIRBOOK_ROOT", str(root))
    monkeypatch.setenv("FAIRBOOK_RUNS", str(root / "runs"))
    return root
