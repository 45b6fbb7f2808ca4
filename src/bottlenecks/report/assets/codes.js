// Code browser: every code with its usage and best labels; search by token or label, sort, and
// click a code to see the contexts where it fires (the firing token highlighted).
(function () {
  "use strict";
  const BN = (window.BN = window.BN || {});
  BN.inits = BN.inits || [];

  function haystack(c) {
    const firing = c.contexts.map((x) => String(x.tokens[x.at]).trim());
    const labels = (c.top || []).map((t) => String(t.label));
    c._tokens = new Set(firing.map((t) => t.toLowerCase()));
    c._labels = new Set(labels.map((t) => t.toLowerCase()));
    c._text = [c.name, c.site, labels.join(" "), firing.join(" ")].join(" ").toLowerCase();
  }

  // "token:7" = fires on token 7; "label:37" = best labels include 37; other words: anywhere.
  function matches(c, terms) {
    return terms.every((t) => {
      if (t.startsWith("token:")) return c._tokens.has(t.slice(6));
      if (t.startsWith("label:")) return c._labels.has(t.slice(6));
      return c._text.includes(t);
    });
  }

  function best(c) { return (c.top && c.top[0]) || { label: "", precision: null, recall: null }; }

  function showDetail(c, data) {
    const el = document.getElementById("code-detail");
    const tops = (c.top || []).map((t) =>
      "<tr><td>" + BN.escape(t.label) + "</td><td>" + BN.fmt(t.precision) + "</td><td>" + BN.fmt(t.recall) +
      "</td><td>" + (t.count === undefined ? "" : t.count) + "</td></tr>").join("");
    const ctx = c.contexts.map((x) => {
      const toks = x.tokens.map((t, i) => (i === x.at ? "<mark>" + BN.escape(t) + "</mark>" : BN.escape(t))).join("");
      return '<div class="bn-context">' + toks + (x.label !== undefined && x.label !== null ?
        '<span class="bn-ctx-label">' + BN.escape(data.label_name || "label") + " " + BN.escape(x.label) + "</span>" : "") + "</div>";
    }).join("");
    el.innerHTML = "<h3>" + BN.escape(c.name) + "</h3>" +
      "<p>chosen on " + c.usage.toLocaleString() + " tokens (" + BN.fmt(100 * c.share, 2) + "% of the tokens of " +
      BN.escape(data.tokens_name || "the run") + ")</p>" +
      (tops ? '<table class="bn-table"><thead><tr><th>' + BN.escape(data.label_name || "label") +
        "</th><th>precision</th><th>recall</th><th>tokens</th></tr></thead><tbody>" + tops + "</tbody></table>" : "") +
      "<h3>Contexts (" + c.contexts.length + ")</h3>" + (ctx || '<p class="bn-empty">no context recorded</p>');
  }

  BN.inits.push(function (data) {
    const codes = data.codes || [];
    codes.forEach(haystack);
    const body = document.querySelector("#code-list tbody");
    const search = document.getElementById("code-search");
    const sort = document.getElementById("code-sort");
    const site = document.getElementById("code-site");
    const count = document.getElementById("code-count");
    const sites = Array.from(new Set(codes.map((c) => c.site)));
    sites.forEach((s) => { const o = document.createElement("option"); o.value = s; o.textContent = s; site.appendChild(o); });
    const keys = {
      usage: (c) => -c.usage, precision: (c) => -(best(c).precision || 0), recall: (c) => -(best(c).recall || 0),
      name: (c) => c.order,
    };
    codes.forEach((c, i) => (c.order = i));
    function render() {
      const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      const key = keys[sort.value];
      const shown = codes.filter((c) => (!site.value || c.site === site.value) && matches(c, terms));
      shown.sort((a, b) => key(a) - key(b) || a.order - b.order);
      body.innerHTML = "";
      const frag = document.createDocumentFragment();
      shown.forEach((c) => {
        const tr = document.createElement("tr");
        const b = best(c);
        tr.dataset.code = c.order;
        tr.innerHTML = "<td>" + BN.escape(c.name) + "</td><td>" + c.usage.toLocaleString() + "</td><td>" +
          BN.escape(b.label) + "</td><td>" + BN.fmt(b.precision) + "</td><td>" + BN.fmt(b.recall) + "</td>";
        tr.addEventListener("click", () => {
          body.querySelectorAll(".bn-selected").forEach((r) => r.classList.remove("bn-selected"));
          tr.classList.add("bn-selected");
          showDetail(c, data);
        });
        frag.appendChild(tr);
      });
      body.appendChild(frag);
      count.textContent = shown.length + " of " + codes.length + " codes";
    }
    search.addEventListener("input", render);
    sort.addEventListener("change", render);
    site.addEventListener("change", render);
    render();
  });
})();
