"""The README's Python snippets of the sections below run as written (they define their data)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = ["## Discrete key-value bottleneck", "## Continual-learning workbench"]


def snippets(heading: str) -> list[str]:
    text = README.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_snippet_runs_as_written(heading, tmp_path, monkeypatch, one_thread):
    code = snippets(heading)
    assert code, f"no python snippet under {heading!r}"
    monkeypatch.chdir(tmp_path)
    for block in code:
        namespace: dict = {}
        exec(compile(block, f"README.md {heading}", "exec"), namespace)  # noqa: S102 - our own README
        if "accuracy" in namespace:  # the kv snippet's stand-in data is easy: it must be learned
            assert float(namespace["accuracy"]) > 0.9
        if "results" in namespace:  # the continual snippet: the bottleneck keeps most of what it learned
            assert namespace["results"]["methods"]["dkvb"]["summary"]["final_accuracy"]["mean"] > 0.7
