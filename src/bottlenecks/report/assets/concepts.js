// Concept page: the sparse view of the weight table and the per-sample explanation.
(function () {
  "use strict";
  const BN = (window.BN = window.BN || {});
  BN.inits = BN.inits || [];

  function sparseView(on) {
    const table = document.getElementById("weights-table");
    if (!table) return;
    let shown = 0;
    Array.from(table.tBodies[0].rows).forEach((row) => {
      const cells = Array.from(row.cells);
      const weights = cells.slice(1, cells.length - 2);
      const used = weights.some((td) => Math.abs(parseFloat(td.dataset.v)) > 1e-9);
      row.hidden = on && !used;
      if (!row.hidden) shown++;
      weights.forEach((td) => {
        const zero = Math.abs(parseFloat(td.dataset.v)) <= 1e-9;
        if (!td.dataset.text) td.dataset.text = td.textContent;
        td.textContent = on && zero ? "·" : td.dataset.text;
        td.classList.toggle("bn-zero", zero);
      });
    });
    document.getElementById("weights-count").textContent = shown + " of " + table.tBodies[0].rows.length + " concepts shown";
  }

  function explain(sample, data) {
    const box = document.getElementById("explain-image");
    const right = sample.predicted === sample.true_class;
    box.innerHTML = (sample.src ? '<img alt="sample" src="' + sample.src + '">' : "") +
      "<p><b>predicted:</b> " + BN.escape(sample.predicted) + " (" + BN.fmt(100 * sample.proba, 1) + "%)</p>" +
      "<p><b>true:</b> " + BN.escape(sample.true_class === undefined ? "?" : sample.true_class) +
      (right ? "" : ' <span class="bn-error">✗</span>') + "</p>" +
      "<p><b>bias:</b> " + BN.fmt(sample.bias, 3) + (sample.residual ? ", residual " + BN.fmt(sample.residual, 3) : "") + "</p>";
    const rows = sample.concepts.slice().sort((a, b) => data.concepts.indexOf(a.concept) - data.concepts.indexOf(b.concept));
    const names = rows.map((c) => c.concept);
    const truth = sample.true_concepts ? rows.map((c) => sample.true_concepts[data.concepts.indexOf(c.concept)]) : null;
    const traces = [
      { type: "bar", orientation: "h", y: names, x: rows.map((c) => c.score), name: "concept score", xaxis: "x", yaxis: "y",
        marker: { color: truth ? truth.map((t) => (t ? "#2f6fde" : "#a9b8d6")) : "#2f6fde" },
        hovertemplate: "%{y}: score %{x:.3f}<extra></extra>" },
      { type: "bar", orientation: "h", y: names, x: rows.map((c) => c.contribution), name: "contribution", xaxis: "x2", yaxis: "y",
        marker: { color: rows.map((c) => (c.contribution >= 0 ? "#2ca02c" : "#d62728")) },
        hovertemplate: "%{y}: contributes %{x:.3f} to '" + BN.escape(sample.predicted) + "'<extra></extra>" },
    ];
    const layout = {
      height: 80 + 26 * names.length, template: "plotly_white", showlegend: false, margin: { t: 30, l: 130, r: 10, b: 40 },
      grid: { rows: 1, columns: 2 }, yaxis: { autorange: "reversed" },
      xaxis: { domain: [0, 0.45], title: { text: "concept score" + (truth ? " (dark: concept present)" : "") } },
      xaxis2: { domain: [0.55, 1], title: { text: "contribution to the logit" } },
    };
    Plotly.react("explain-plot", traces, layout, BN.config);
  }

  BN.inits.push(function (data) {
    const cb = document.getElementById("sparse-view");
    if (cb) { cb.addEventListener("change", () => sparseView(cb.checked)); sparseView(cb.checked); }
    const gallery = document.getElementById("gallery");
    if (!gallery || !data.samples) return;
    data.samples.forEach((s, i) => {
      const b = document.createElement("button");
      b.className = "bn-thumb" + (s.true_class !== undefined && s.predicted !== s.true_class ? " bn-wrong" : "");
      b.title = "true " + s.true_class + ", predicted " + s.predicted;
      b.dataset.index = i;
      b.innerHTML = s.src ? '<img alt="sample ' + i + '" src="' + s.src + '">' : String(i);
      b.addEventListener("click", () => {
        gallery.querySelectorAll(".bn-selected").forEach((e) => e.classList.remove("bn-selected"));
        b.classList.add("bn-selected");
        explain(s, data);
      });
      gallery.appendChild(b);
    });
    gallery.firstChild && gallery.firstChild.click();
  });
})();
