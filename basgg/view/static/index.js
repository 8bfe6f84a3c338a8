/* basgg view: the index page (metrics, per-predicate recall, confusion, hierarchy, grid). */
"use strict";
(function (B) {
  const el = B.el;
  const PER_PAGE = 48;
  let S, ROWS, KS;

  function main() {
    S = B.get("summary");
    if (!S) throw new Error("data/summary.js did not load");
    ROWS = [];
    for (let c = 0; c < S.index_chunks; c++) ROWS = ROWS.concat(B.get("index-" + B.pad(c, 4)) || []);
    KS = S.ks;
    document.title = S.title;
    document.getElementById("title").textContent = S.title;
    const models = S.models.map(function (m) { return m.name; }).join(" vs ");
    const parts = [S.num_images + " images", S.split && S.split + " split", S.mode, models,
      S.dataset];
    document.getElementById("subtitle").textContent = parts.filter(Boolean).join(" · ");
    if (KS.length) {
      metrics();
      recallSection();
      confusionSection();
      hierarchySection();
    } else {
      document.getElementById("metrics-section").hidden = true;
      document.getElementById("recall-section").hidden = true;
    }
    gridSection();
    document.body.dataset.ready = "1";
  }

  /* ---- metrics: every key the evaluator produced, rows by name, columns by K ---- */
  function metrics() {
    const rows = [], byRow = {}, plain = [];
    for (const model of S.models) {
      for (const key of Object.keys(model.metrics)) {
        const match = /^(.*)@(\d+)(?:\/(.*))?$/.exec(key);
        if (!match) { if (!plain.includes(key)) plain.push(key); continue; }
        const name = match[1] + (match[3] ? " " + match[3] : "");
        if (!byRow[name]) { byRow[name] = {}; rows.push(name); }
        byRow[name][match[2]] = key;
      }
    }
    const multi = S.models.length > 1;
    const table = el("table", { class: "metrics", id: "metrics-table" });
    const head = el("tr", {}, el("th", { rowspan: multi ? 2 : 1, text: "metric" }));
    const names = el("tr");
    for (const k of KS) {
      head.appendChild(el("th", { class: "num k", colspan: S.models.length, text: "@" + k }));
      S.models.forEach(function (model, m) { names.appendChild(el("th", { class: "num model-" + m + (m === 0 ? " k" : ""), text: model.name })); });
    }
    table.appendChild(el("thead", {}, head, multi ? names : null));
    const body = el("tbody");
    function add(label, keys) {
      const tr = el("tr", { "data-metric": label }, el("th", { text: label }));
      for (const key of keys) {
        const values = S.models.map(function (model) { return key ? model.metrics[key] : undefined; });
        const top = Math.max.apply(null, values.map(function (v) { return v === null || v === undefined ? -Infinity : v; }));
        values.forEach(function (value, m) {
          const best = multi && value !== null && value !== undefined && value === top && values.some(function (v) { return v !== value; });
          tr.appendChild(el("td", { class: "num model-" + m + (m === 0 ? " k" : "") + (best ? " best" : ""), text: key ? B.percent(value) : "" }));
        });
      }
      body.appendChild(tr);
    }
    for (const name of rows) add(name, KS.map(function (k) { return byRow[name][k] || null; }));
    table.appendChild(body);
    const box = document.getElementById("metrics");
    box.appendChild(table);
    if (plain.length) {  // metrics without a K, e.g. informative_recall
      const other = el("table", { class: "metrics other", id: "other-metrics" });
      const top = el("tr", {}, el("th", { text: "metric" }));
      S.models.forEach(function (model, m) { top.appendChild(el("th", { class: "num model-" + m, text: model.name })); });
      other.appendChild(el("thead", {}, top));
      const rowsBody = el("tbody");
      for (const key of plain) {
        const tr = el("tr", { "data-metric": key }, el("th", { text: key.replace(/_/g, " ") }));
        const values = S.models.map(function (model) { return model.metrics[key]; });
        const topValue = Math.max.apply(null, values.map(function (v) { return v === null || v === undefined ? -Infinity : v; }));
        values.forEach(function (value, m) {
          const best = multi && value !== null && value === topValue && values.some(function (v) { return v !== value; });
          tr.appendChild(el("td", { class: "num" + (best ? " best" : ""), text: B.percent(value) }));
        });
        rowsBody.appendChild(tr);
      }
      other.appendChild(rowsBody);
      box.appendChild(other);
    }
    const counts = S.models[0].counts || {};
    box.appendChild(el("p", { class: "muted", text:
      "×100. " + (counts.images_scored !== undefined ? counts.images_scored + " of " + counts.images +
      " images scored (images without GT relation or prediction are skipped, as SGB does); " : "") +
      (S.zero_shot_triplets !== undefined ? S.zero_shot_triplets + " zero-shot triplets. " : "") +
      (S.models.length > 1 ? "Bold: the better model." : "") }));
  }

  /* ---- per-predicate recall bars ---- */
  function groupOf(p) {
    for (const [name, members] of Object.entries(S.predicate_groups || {})) if (members.includes(p)) return name;
    return "";
  }
  function recallSection() {
    const controls = document.getElementById("recall-controls");
    const k = select("recall-k", KS.map(function (v) { return [v, "R@" + v]; }), KS[KS.length - 1]);
    const sort = select("recall-sort", [["frequency", "train frequency"], ["recall", "recall (" + S.models[0].name + ")"], ["name", "name"]], "frequency");
    controls.append(label("K", k), label("sort by", sort), legend());
    function draw() {
      const box = document.getElementById("recall-bars");
      box.replaceChildren();
      const recalls = S.models.map(function (m) { return m.per_predicate_recall[k.value]; });
      const counts = S.predicate_train_counts || S.predicate_split_counts;
      const order = [];
      for (let p = 1; p < S.predicates.length; p++) order.push(p);
      if (sort.value === "frequency") order.sort(function (a, b) { return counts[b] - counts[a] || a - b; });
      if (sort.value === "recall") order.sort(function (a, b) { return recalls[0][b] - recalls[0][a] || a - b; });
      if (sort.value === "name") order.sort(function (a, b) { return S.predicates[a].localeCompare(S.predicates[b]); });
      for (const p of order) {
        const bars = el("div", { class: "bars" });
        recalls.forEach(function (r, m) {
          bars.appendChild(el("div", { class: "bar-row" },
            el("div", { class: "bar model-" + m, style: "width:" + (100 * r[p]).toFixed(1) + "%" }),
            el("span", { class: "bar-value", text: B.percent(r[p], 1) })));
        });
        box.appendChild(el("div", { class: "recall-row", title: S.predicates[p] + ": " + counts[p] + " train relations" },
          el("span", { class: "predicate-name group-" + groupOf(p), text: S.predicates[p] }),
          el("span", { class: "count muted", text: counts[p] }), bars));
      }
    }
    k.addEventListener("change", draw);
    sort.addEventListener("change", draw);
    draw();
  }
  function legend() {
    const box = el("span", { class: "legend" });
    S.models.forEach(function (m, i) { box.append(el("span", { class: "swatch model-" + i }), m.name + " "); });
    for (const g of Object.keys(S.predicate_groups || {})) box.append(el("span", { class: "group-" + g, text: g + " " }));
    return box;
  }

  /* ---- confusion matrix: row-normalised heatmap, predicates by train frequency ---- */
  function confusionSection() {
    const models = S.models.map(function (m, i) { return [i, m]; }).filter(function (x) { return x[1].confusion; });
    if (!models.length) return;
    document.getElementById("confusion-section").hidden = false;
    const choose = select("confusion-model", models.map(function (x) { return [x[0], x[1].name]; }), models[0][0]);
    document.getElementById("confusion-controls").append(label("model", choose),
      el("span", { class: "muted", text: "rows: ground truth, columns: prediction on GT pairs; row-normalised" }));
    function draw() {
      const matrix = S.models[Number(choose.value)].confusion;
      const counts = S.predicate_train_counts || S.predicate_split_counts;
      const order = [];
      for (let p = 1; p < S.predicates.length; p++) order.push(p);
      order.sort(function (a, b) { return counts[b] - counts[a] || a - b; });
      const cell = 14, margin = 8 + 6.2 * Math.max.apply(null, order.map(function (p) { return S.predicates[p].length; }));
      const size = margin + cell * order.length + 4;
      const root = B.svg("svg", { class: "confusion", width: size, height: size, viewBox: "0 0 " + size + " " + size });
      order.forEach(function (g, r) {
        const total = order.reduce(function (s, p) { return s + matrix[g][p]; }, 0) || 1;
        root.appendChild(B.svg("text", { x: margin - 4, y: margin + r * cell + 10, class: "axis-label end", text: S.predicates[g] }));
        root.appendChild(B.svg("text", { transform: "translate(" + (margin + r * cell + 10) + "," + (margin - 4) + ") rotate(-90)", class: "axis-label", text: S.predicates[g] }));
        order.forEach(function (p, c) {
          const share = matrix[g][p] / total;
          const rect = B.svg("rect", { x: margin + c * cell, y: margin + r * cell, width: cell - 1, height: cell - 1,
            fill: "rgba(31,119,180," + Math.max(share, 0.02).toFixed(3) + ")" });
          rect.appendChild(B.svg("title", { text: S.predicates[g] + " → " + S.predicates[p] + ": " + matrix[g][p] + " (" + B.percent(share, 1) + "%)" }));
          root.appendChild(rect);
        });
      });
      document.getElementById("confusion").replaceChildren(root);
    }
    choose.addEventListener("change", draw);
    draw();
  }

  function hierarchySection() {
    if (!S.hierarchy || !Object.keys(S.hierarchy).length) return;
    document.getElementById("hierarchy-section").hidden = false;
    document.getElementById("hierarchy-source").textContent =
      "General predicate ← the informative predicates it absorbs (share of their pairs labelled general); " + (S.hierarchy_source || "");
    const list = el("ul", { class: "hierarchy" });
    for (const [general, members] of Object.entries(S.hierarchy)) {
      const children = el("span", { class: "children" });
      for (const m of members) children.append(el("span", { class: "chip", text: m.predicate + " " + B.percent(m.share, 0) + "%" }));
      list.append(el("li", {}, el("strong", { text: general }), " ← ", children));
    }
    document.getElementById("hierarchy").append(list);
  }

  /* ---- image grid with filters, sorting and pages; state lives in the URL hash ---- */
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    return {
      predicate: params.get("predicate") || "", object: params.get("object") || "",
      missed: params.get("missed") === "1", zeroshot: params.get("zeroshot") === "1",
      differ: params.get("differ") === "1",
      sort: params.get("sort") || "order", k: params.get("k") || (KS.length ? String(KS[0]) : ""),
      model: params.get("model") || "0", page: Number(params.get("page") || "1"),
    };
  }
  function writeHash(state) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value === true) params.set(key, "1");
      else if (value !== false && value !== "" && !(key === "page" && value === 1)) params.set(key, value);
    }
    try { history.replaceState(null, "", "#" + params.toString()); } catch (error) { /* some file:// setups refuse it */ }
  }
  function nameOptions(names, used) {
    const options = [["", "any"]];
    names.forEach(function (name, i) { if (i > 0 && used.has(i)) options.push([String(i), name]); });
    return options.sort(function (a, b) { return a[0] === "" ? -1 : b[0] === "" ? 1 : a[1].localeCompare(b[1]); });
  }
  function gridSection() {
    const state = readHash();
    const usedP = new Set(), usedC = new Set();
    for (const row of ROWS) { row.p.forEach(function (p) { usedP.add(p); }); row.c.forEach(function (c) { usedC.add(c); }); }
    const controls = document.getElementById("grid-controls");
    const predicate = select("filter-predicate", nameOptions(S.predicates, usedP), state.predicate);
    const object = select("filter-object", nameOptions(S.objects, usedC), state.object);
    controls.append(label(S.kind === "dataset" ? "GT predicate" : "predicate", predicate), label("object class", object));
    let k = null, model = null, missed = null, zeroshot = null, differ = null;
    const sortOptions = [["order", "dataset order"]];
    if (KS.length) {
      k = select("filter-k", KS.map(function (v) { return [v, "@" + v]; }), state.k);
      model = select("filter-model", S.models.map(function (m, i) { return [i, m.name]; }), state.model);
      missed = checkbox("filter-missed", state.missed);
      zeroshot = checkbox("filter-zeroshot", state.zeroshot);
      controls.append(label("model", model), label("K", k), label("has missed GT relations", missed, true),
        label("has zero-shot triplets", zeroshot, true));
      if (S.models.length > 1) { differ = checkbox("filter-differ", state.differ); controls.append(label("models differ", differ, true)); }
      sortOptions.push(["recall-asc", "recall, lowest first"], ["recall-desc", "recall, highest first"], ["gt-desc", "most GT relations"]);
    }
    const sort = select("sort", sortOptions, state.sort);
    controls.append(label("sort", sort));
    let page = state.page;
    function current() {
      return { predicate: predicate.value, object: object.value, missed: missed ? missed.checked : false,
        zeroshot: zeroshot ? zeroshot.checked : false, differ: differ ? differ.checked : false,
        sort: sort.value, k: k ? k.value : "", model: model ? model.value : "0", page: page };
    }
    function draw() {
      const st = current();
      writeHash(st);
      const column = KS.indexOf(Number(st.k)), m = Number(st.model);
      const recall = function (row) { return row.n ? row.h[m][column] / row.n : 0; };
      let rows = ROWS.filter(function (row) {
        if (st.predicate && !row.p.includes(Number(st.predicate))) return false;
        if (st.object && !row.c.includes(Number(st.object))) return false;
        if (st.missed && !(row.h[m][column] < row.n)) return false;
        if (st.zeroshot && !(row.z > 0)) return false;
        if (st.differ && row.h.every(function (h) { return h[column] === row.h[0][column]; })) return false;
        return true;
      });
      if (st.sort === "recall-asc") rows = rows.slice().sort(function (a, b) { return recall(a) - recall(b) || a.i - b.i; });
      if (st.sort === "recall-desc") rows = rows.slice().sort(function (a, b) { return recall(b) - recall(a) || a.i - b.i; });
      if (st.sort === "gt-desc") rows = rows.slice().sort(function (a, b) { return b.n - a.n || a.i - b.i; });
      const pages = Math.max(1, Math.ceil(rows.length / PER_PAGE));
      page = Math.min(Math.max(1, page), pages);
      const count = document.getElementById("grid-count");
      count.textContent = rows.length + " of " + ROWS.length + " images";
      count.dataset.count = rows.length;
      const grid = document.getElementById("grid");
      grid.replaceChildren();
      for (const row of rows.slice((page - 1) * PER_PAGE, page * PER_PAGE)) grid.appendChild(card(row, column));
      pager(page, pages, function (p) { page = p; draw(); window.scrollTo(0, document.getElementById("images-section").offsetTop); });
      writeHash(current());
    }
    for (const control of [predicate, object, k, model, missed, zeroshot, differ, sort]) {
      if (control) control.addEventListener("change", function () { page = 1; draw(); });
    }
    draw();
  }
  function card(row, column) {
    const link = el("a", { class: "card", href: "image.html?i=" + row.i, "data-index": row.i });
    link.appendChild(row.t ? el("img", { src: row.t, loading: "lazy", alt: row.name, width: 200, height: 150 })
      : el("div", { class: "no-thumb", text: "no image" }));
    const caption = el("div", { class: "caption" }, el("span", { class: "name", text: row.name }));
    if (KS.length) {
      caption.append(el("span", { class: "muted", text: row.n + " GT · R@" + KS[column] }));
      row.h.forEach(function (h, m) {
        const r = row.n ? h[column] / row.n : 0;
        caption.append(el("span", { class: "badge model-" + m, title: S.models[m].name + " R@" + KS[column], text: B.percent(r, 0) }));
      });
      if (row.z) caption.append(el("span", { class: "badge zs", title: "zero-shot GT triplets", text: "zs " + row.z }));
    }
    link.appendChild(caption);
    return link;
  }
  function pager(page, pages, go) {
    const box = document.getElementById("pager");
    box.replaceChildren();
    if (pages <= 1) return;
    box.append(el("button", { disabled: page <= 1, onclick: function () { go(page - 1); }, text: "‹ previous" }),
      el("span", { text: " page " + page + " of " + pages + " " }),
      el("button", { disabled: page >= pages, onclick: function () { go(page + 1); }, text: "next ›" }));
  }

  /* ---- small form helpers ---- */
  function select(id, options, value) {
    const node = el("select", { id: id });
    for (const [v, text] of options) node.appendChild(el("option", { value: v, text: text }));
    if (value !== undefined && options.some(function (o) { return String(o[0]) === String(value); })) node.value = String(value);
    return node;
  }
  function checkbox(id, checked) { const node = el("input", { type: "checkbox", id: id }); node.checked = checked; return node; }
  function label(text, control, after) {
    return after ? el("label", { class: "control" }, control, " " + text) : el("label", { class: "control" }, text + " ", control);
  }

  try { main(); } catch (error) { B.showError(error); }
})(window.BASGG);
