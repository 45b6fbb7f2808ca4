// The page's runtime: unpack the inlined plotly.js, draw the figures, make tables sortable,
// build per-method toggles, then run each page kind's init (BN.init). No network.
(function () {
  "use strict";
  const BN = (window.BN = window.BN || {});
  BN.inits = BN.inits || [];
  BN.data = JSON.parse(document.getElementById("bn-data").textContent);
  BN.figures = JSON.parse(document.getElementById("bn-figures").textContent);
  BN.config = { responsive: true, displaylogo: false };

  function status(text, isError) {
    const el = document.getElementById("bn-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("bn-error", !!isError);
    el.hidden = !text;
  }

  async function loadPlotly() {
    const src = document.getElementById("bn-plotly");
    if (!("DecompressionStream" in window)) {
      throw new Error("this browser has no DecompressionStream (needs Chrome/Edge 80+, Firefox 113+, Safari 16.4+)");
    }
    const bin = atob(src.textContent.trim());
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const code = await new Response(stream).text();
    const s = document.createElement("script");
    s.textContent = code;
    document.head.appendChild(s);
    if (!window.Plotly) throw new Error("plotly.js did not load");
  }

  // Sortable tables: click a header; numbers sort by data-v, text alphabetically.
  function sortKey(td) {
    if (!td) return "";
    const v = td.getAttribute("data-v");
    if (v !== null) return v === "" ? -Infinity : parseFloat(v);
    return td.textContent.toLowerCase();
  }
  BN.makeSortable = function (table) {
    const heads = table.querySelectorAll("thead th");
    heads.forEach((th, col) => {
      th.classList.add("bn-sort");
      th.title = "sort by " + th.textContent;
      th.addEventListener("click", () => {
        const desc = th.dataset.order !== "desc";
        heads.forEach((h) => delete h.dataset.order);
        th.dataset.order = desc ? "desc" : "asc";
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = sortKey(a.cells[col]), y = sortKey(b.cells[col]);
          const c = x < y ? -1 : x > y ? 1 : 0;
          return desc ? -c : c;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  };

  // One checkbox per legend group (a method): shows or hides all its traces.
  function makeToggles(box) {
    const plot = document.getElementById(box.dataset.fig);
    const groups = [];
    plot.data.forEach((t) => {
      const g = t.legendgroup || t.name;
      if (g && !groups.includes(g)) groups.push(g);
    });
    groups.forEach((g) => {
      const label = document.createElement("label");
      label.className = "bn-toggle";
      const cb = document.createElement("input");
      cb.type = "checkbox";
      cb.checked = true;
      cb.value = g;
      cb.addEventListener("change", () => {
        const idx = [];
        plot.data.forEach((t, i) => { if ((t.legendgroup || t.name) === g) idx.push(i); });
        Plotly.restyle(plot, { visible: cb.checked ? true : "legendonly" }, idx);
      });
      label.appendChild(cb);
      label.appendChild(document.createTextNode(" " + g));
      box.appendChild(label);
    });
  }

  BN.escape = function (s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  };
  BN.fmt = function (v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return Number(v).toFixed(digits === undefined ? 3 : digits);
  };

  async function main() {
    document.querySelectorAll("table.bn-sortable").forEach(BN.makeSortable);
    try {
      await loadPlotly();
      for (const [id, spec] of Object.entries(BN.figures)) {
        const el = document.getElementById(id);
        if (el) await Plotly.newPlot(el, spec.data, spec.layout, BN.config);
      }
      document.querySelectorAll(".bn-toggles").forEach(makeToggles);
      for (const init of BN.inits) await init(BN.data);
      status("");
    } catch (err) {
      status("could not draw the page: " + err.message, true);
      console.error(err);
    }
    document.body.dataset.ready = "1";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
