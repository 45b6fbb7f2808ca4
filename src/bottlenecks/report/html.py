"""Self-contained interactive HTML pages: one ``report.html`` that opens from ``file://`` with no
network, built from the plain data a study writes (its results dict / JSON files).

A :class:`Page` collects headings, text, sortable tables, Plotly figures and JSON data for the
page's own scripts, and renders one HTML file. Plotly's JavaScript comes from the ``plotly``
Python package (the ``html`` extra) and is inlined once per page, gzip-compressed and
base64-encoded (about 2 MB instead of 4.8 MB for plotly.js 3); the page decompresses it with the
browser's ``DecompressionStream`` (Chrome/Edge 80+, Firefox 113+, Safari 16.4+). The page kinds
live beside this module (``html_codebook``, ``html_concepts``, ``html_continual``, ``html_info``);
``html_browse.build_html(run_dir)`` picks one from the files in a run folder.

A page's size is the fixed bundle (about 2 MB) plus its data: figures and tables grow with what
they show (for example codes x contexts for a codebook page), never with the training set.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html as _html
import io
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["Page", "image_data_uri", "plain_json"]

_ASSETS = "assets"


def _require_plotly():
    try:
        import plotly
    except ImportError as err:  # a core dependency: only a hand-trimmed install lacks it
        raise ImportError("report.html needs plotly (a dependency of bottlenecks): pip install plotly") from err
    return plotly


@functools.lru_cache(maxsize=1)
def _plotly_bundle() -> tuple[str, str]:
    """-> (plotly.js version, its minified bundle gzip-compressed and base64-encoded)."""
    _require_plotly()
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)  # mtime 0: same bytes
    return get_plotlyjs_version(), base64.b64encode(packed).decode("ascii")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(_ASSETS, name).read_text(encoding="utf-8")


def plain_json(value, digits: int = 6):
    """NumPy / torch values, tuples and dataclass-free containers -> plain JSON values; floats
    rounded to ``digits`` significant digits (the page's size) and NaN / inf -> None (JSON has none)."""
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, digits) for k, v in value.items()}
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain_json(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return float(f"{value:.{digits}g}") if math.isfinite(value) else None
    return value


def _script_json(value) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can close it early)."""
    text = json.dumps(plain_json(value), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


def image_data_uri(image, vmin: float = 0.0, vmax: float = 1.0, cmap: str = "gray") -> str:
    """``(H, W)`` or ``(H, W, 3)`` array (values in ``[vmin, vmax]``) -> a PNG ``data:`` URI."""
    from matplotlib.image import imsave

    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"image: expected shape (H, W), (H, W, 3) or (3, H, W), got {tuple(np.shape(image))}")
    buf = io.BytesIO()
    if arr.ndim == 3:
        imsave(buf, np.clip((arr - vmin) / max(vmax - vmin, 1e-12), 0, 1), format="png")
    else:
        imsave(buf, arr, format="png", vmin=vmin, vmax=vmax, cmap=cmap)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(value) -> str:
    """A table cell: numbers carry ``data-v`` so the page sorts them as numbers."""
    if isinstance(value, tuple) and len(value) == 2:  # (shown text, sort value)
        text, key = value
        return f'<td data-v="{_html.escape(str(key))}">{_html.escape(str(text))}</td>'
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return '<td data-v="">–</td>'
        text = f"{int(value):,}" if isinstance(value, (int, np.integer)) else f"{v:.4g}"
        return f'<td data-v="{v!r}">{text}</td>'
    return f"<td>{_html.escape('' if value is None else str(value))}</td>"


class Page:
    """One self-contained HTML page. Add parts in reading order, then :meth:`write`.

    >>> page = Page("My run")
    >>> page.heading("Accuracy")
    >>> page.figure(plotly_figure, caption="accuracy over steps")
    >>> page.write("runs/my-run/report.html")
    """

    def __init__(self, title: str, subtitle: str | None = None, kind: str = "generic"):
        self.title, self.subtitle, self.kind = str(title), subtitle, kind
        self._parts: list[str] = []
        self._figures: dict[str, dict] = {}
        self._data: dict[str, object] = {}
        self._scripts: list[str] = []
        self._ids = 0

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def heading(self, text: str, level: int = 2) -> Page:
        self._parts.append(f"<h{level}>{_html.escape(text)}</h{level}>")
        return self

    def text(self, text: str, cls: str | None = None) -> Page:
        """A paragraph of plain text (escaped)."""
        attr = f' class="{cls}"' if cls else ""
        self._parts.append(f"<p{attr}>{_html.escape(text)}</p>")
        return self

    def html(self, markup: str) -> Page:
        """Raw markup written by a page builder (never user text: escape that with :meth:`text`)."""
        self._parts.append(markup)
        return self

    def figure(self, fig, caption: str | None = None, fig_id: str | None = None, height: int | None = None,
               toggles: bool = False) -> str:
        """A Plotly figure (a ``plotly.graph_objects.Figure`` or its ``{"data", "layout"}`` dict);
        returns its element id. ``toggles``: one checkbox per legend group (method) above it."""
        if hasattr(fig, "to_plotly_json"):
            fig = json.loads(fig.to_json())
        spec = {"data": fig.get("data", []), "layout": fig.get("layout", {})}
        fig_id = fig_id or self._new_id("fig")
        self._figures[fig_id] = spec
        style = f' style="height:{int(height)}px"' if height else ""
        parts = ['<figure class="bn-figure">']
        if toggles:
            parts.append(f'<div class="bn-toggles" data-fig="{fig_id}"></div>')
        parts.append(f'<div class="bn-plot" id="{fig_id}"{style}></div>')
        if caption:
            parts.append(f"<figcaption>{_html.escape(caption)}</figcaption>")
        parts.append("</figure>")
        self._parts.append("".join(parts))
        return fig_id

    def table(self, columns: Sequence[str], rows: Sequence[Sequence], caption: str | None = None,
              table_id: str | None = None, sortable: bool = True) -> str:
        """A table; with ``sortable`` a click on a header sorts by that column (numbers as numbers).
        A cell given as ``(text, value)`` shows ``text`` and sorts by ``value``."""
        table_id = table_id or self._new_id("table")
        cls = "bn-table bn-sortable" if sortable else "bn-table"
        head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
        cap = f"<caption>{_html.escape(caption)}</caption>" if caption else ""
        self._parts.append(f'<div class="bn-table-wrap"><table class="{cls}" id="{table_id}">{cap}'
                           f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
        return table_id

    def data(self, name: str, value) -> Page:
        """JSON data for the page's scripts (``BN.data[name]`` in the browser)."""
        self._data[name] = value
        return self

    def script(self, asset: str) -> Page:
        """Include one of the package's JavaScript assets (e.g. ``"codes.js"``) once."""
        if asset not in self._scripts:
            _asset(asset)  # fail here, not in the browser, if it is missing
            self._scripts.append(asset)
        return self

    def render(self) -> str:
        from .. import __version__

        version, bundle = _plotly_bundle()
        sub = f'<p class="bn-sub">{_html.escape(self.subtitle)}</p>' if self.subtitle else ""
        scripts = "".join(f"<script>{_asset(s)}</script>" for s in self._scripts)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{_html.escape(self.title)}</title>"
            f'<meta name="generator" content="bottlenecks {__version__}; plotly.js {version}">'
            f"<style>{_asset('page.css')}</style></head>\n"
            f'<body data-kind="{_html.escape(self.kind)}"><header><h1>{_html.escape(self.title)}</h1>{sub}'
            '<p class="bn-status" id="bn-status">loading the plots…</p></header>\n<main>'
            + "\n".join(self._parts) +
            "</main>\n<footer>Written by bottlenecks " + _html.escape(__version__) + "; plots by plotly.js "
            + _html.escape(version) + " (MIT licence), inlined: this file opens offline.</footer>\n"
            f'<script type="application/json" id="bn-figures">{_script_json(self._figures)}</script>\n'
            f'<script type="application/json" id="bn-data">{_script_json(self._data)}</script>\n'
            f'<script type="application/octet-stream" id="bn-plotly" data-encoding="gzip+base64">{bundle}</script>\n'
            f"{scripts}<script>{_asset('page.js')}</script>\n</body></html>\n")

    def write(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path
