"""Build ``report.html`` for a run folder from the files the study wrote there (``metrics.json``,
and ``codes.json`` for a codebook run): the study calls it after writing its report, and
``bottlenecks browse RUN_DIR`` calls it on a saved run."""

from __future__ import annotations

import base64
import html as _html
import json
import webbrowser
from collections.abc import Mapping
from pathlib import Path

from .html import Page

__all__ = ["build_html", "page_kind", "generic_page"]

RESULT_FILES = ("metrics.json", "results.json", "report.json")


def page_kind(results: Mapping) -> str:
    """Which page a results dict gets: ``codebook``, ``concepts``, ``continual``, ``info`` or ``generic``."""
    if not isinstance(results, Mapping):
        return "generic"
    runs, methods, models = results.get("runs"), results.get("methods"), results.get("models")
    if isinstance(runs, Mapping) and runs and all(isinstance(r, Mapping) and "history" in r for r in runs.values()):
        return "info"
    if isinstance(methods, Mapping) and methods and all(isinstance(m, Mapping) and "runs" in m
                                                        for m in methods.values()):
        return "continual"
    if isinstance(models, Mapping) and models and all(isinstance(m, Mapping) and "transition_accuracy" in m
                                                      for m in models.values()):
        return "codebook"
    if all(k in results for k in ("concept_names", "class_names", "weights")):
        return "concepts"
    return "generic"


def _title(run: Path) -> str | None:
    report = run / "report.md"
    if report.exists():
        for line in report.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return None


def _scalars(value, prefix: str = "", out: list | None = None, limit: int = 300) -> list:
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(value, Mapping):
        for k, v in value.items():
            _scalars(v, f"{prefix}.{k}" if prefix else str(k), out, limit)
    elif isinstance(value, (int, float)) or (isinstance(value, str) and len(value) < 120):
        out.append([prefix, value])
    return out


def generic_page(results: Mapping | None, run: Path, title: str | None = None) -> Page:
    """Any run: its PNGs, its ``report.md`` text and its numbers (a sortable table of the scalars
    in its results), in one page."""
    page = Page(title or _title(run) or run.name, kind="generic", subtitle=str(run))
    pngs = sorted(run.glob("*.png"))
    if pngs:
        page.heading("Figures")
        for p in pngs:
            uri = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
            page.html(f'<figure class="bn-figure"><img style="max-width:100%" alt="{_html.escape(p.name)}" '
                      f'src="{uri}"><figcaption>{_html.escape(p.name)}</figcaption></figure>')
    report = run / "report.md"
    if report.exists():
        page.heading("report.md")
        page.html(f'<pre style="white-space:pre-wrap">{_html.escape(report.read_text(encoding="utf-8"))}</pre>')
    if results:
        page.heading("Numbers")
        page.table(["key", "value"], _scalars(results), table_id="numbers",
                   caption="every number of the run's results (first 300); click a header to sort")
    return page


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _extra(run: Path, name: str):
    """A page's optional second file (code records, explanations, key usage), or None."""
    return _load(run / name) if (run / name).exists() else None


def build_html(run_dir, out=None, open_browser: bool = False) -> Path:
    """Write ``report.html`` into ``run_dir`` (or ``out``) from the run's files; returns its path.

    The page kind follows the results (``metrics.json``, ``results.json`` or ``report.json``): a continual or
    comparison run (with ``key_usage.json`` for the key-usage heat map), a codebook run (with
    ``codes.json`` for the code browser), a concept-bottleneck run (with ``explanations.json`` for
    the per-sample view), an information-plane run, or a generic page of the numbers, figures and
    report.md of any other run."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder; expected the folder a study wrote "
                                f"(with {' or '.join(RESULT_FILES)})")
    found = [run / f for f in RESULT_FILES if (run / f).exists()]
    if not found and not (run / "report.md").exists():
        raise FileNotFoundError(f"{run}: no {' or '.join(RESULT_FILES)} or report.md; expected the folder a study "
                                "wrote")
    results = _load(found[0]) if found else None
    kind = page_kind(results)
    title = _title(run)
    if kind == "continual":
        from .html_continual import continual_page

        page = continual_page(results, _extra(run, "key_usage.json"), title=title)
    elif kind == "codebook":
        from .html_codebook import codebook_page

        page = codebook_page(results, _extra(run, "codes.json"), title=title)
    elif kind == "concepts":
        from .html_concepts import concepts_page

        page = concepts_page(results, _extra(run, "explanations.json"), title=title)
    elif kind == "info":
        from .html_info import info_page

        page = info_page(results, title=title)
    else:
        page = generic_page(results, run, title=title)
    path = page.write(Path(out) if out is not None else run / "report.html")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
    return path
