/* basgg view: one image page (image.html?i=N): boxes, graphs, the fate of every triplet. */
"use strict";
(function (B) {
  const el = B.el;
  const OUTCOME = { 2: ["match", "matches GT"], 1: ["pair", "right pair, wrong predicate"], 0: ["miss", "unmatched"] };
  let S, R, KS, K, EDGES;

  function start() {
    S = B.get("summary");
    if (!S) throw new Error("data/summary.js did not load");
    const index = Number(new URLSearchParams(location.search).get("i") || "0");
    if (!Number.isInteger(index) || index < 0 || index >= S.num_images) throw new Error("no image " + index + " in this site");
    const page = Math.floor(index / S.page_size);
    const key = "page-" + B.pad(page, 4);
    B.load("data/pages/" + key + ".js").then(function () {
      R = B.get(key)[index - page * S.page_size];
      render();
    }).catch(B.showError);
  }

  function objectsOf(m) { return S.models[m] && R.models[m].objects ? R.models[m].objects : R.objects; }
  function ownBoxes(m) { return Boolean(R.models[m].objects) && S.kind === "dataset"; }
  function tripletText(objects, s, o, p) {
    return [s + " " + S.objects[objects[s][0]], S.predicates[p], o + " " + S.objects[objects[o][0]]];
  }

  function render() {
    KS = S.ks;
    K = KS.length ? (KS.includes(S.top_k) ? S.top_k : KS[0]) : 0;
    EDGES = Number(new URLSearchParams(location.search).get("edges") || S.top_k);
    document.title = "basgg view: " + R.name;
    document.getElementById("title").textContent = "Image " + R.name;
    const n = S.num_images;
    const nav = document.getElementById("nav");
    nav.append(el("a", { href: "index.html", text: "← all images" }), " ",
      R.i > 0 ? el("a", { href: "image.html?i=" + (R.i - 1), id: "previous", text: "‹ previous" }) : "", " ",
      R.i + 1 < n ? el("a", { href: "image.html?i=" + (R.i + 1), id: "next", text: "next ›" }) : "");
    document.getElementById("subtitle").textContent = [
      "image " + (R.i + 1) + " of " + n, R.w + "×" + R.h + " px", S.mode,
      S.kind === "dataset" ? R.gt.length + " GT triplets" : "", R.src ? "" : "image file not found",
    ].filter(Boolean).join(" · ");
    controls();
    draw();
    const chosen = new URLSearchParams(location.search).get("select");  // e.g. gt-3, m0-1
    const item = chosen && document.querySelector('tr[data-key="' + CSS.escape(chosen) + '"]');
    if (item) { highlight(item); pinned = chosen; }
    document.body.dataset.ready = "1";
  }

  function controls() {
    const box = document.getElementById("image-controls");
    const layers = [];
    if (S.kind === "dataset") layers.push(["gt", "ground-truth boxes", true]);
    S.models.forEach(function (m, i) { if (ownBoxes(i) || S.kind !== "dataset") layers.push(["m" + i, (S.kind === "dataset" ? m.name + " " : "") + "predicted boxes", true]); });
    for (const [name, text, on] of layers) {
      const input = el("input", { type: "checkbox", id: "show-" + name });
      input.checked = on;
      input.addEventListener("change", function () {
        for (const g of document.querySelectorAll('[data-layer="' + name + '"]')) g.style.display = input.checked ? "" : "none";
      });
      box.append(el("label", { class: "control" }, input, " " + text));
    }
    if (KS.length) {
      const k = el("select", { id: "status-k" });
      for (const v of KS) k.append(el("option", { value: v, text: "@" + v }));
      k.value = String(K);
      k.addEventListener("change", function () { K = Number(k.value); draw(); });
      box.append(el("label", { class: "control" }, "GT colours and comparison at K ", k));
    }
    const edges = el("select", { id: "graph-edges" });
    const choices = [5, 10, 20, 50, 100].filter(function (v) { return v < S.top_k; }).concat([S.top_k]);
    if (!choices.includes(EDGES)) { choices.push(EDGES); choices.sort(function (a, b) { return a - b; }); }
    for (const v of choices) edges.append(el("option", { value: v, text: "top " + v }));
    edges.value = String(EDGES);
    edges.addEventListener("change", function () { EDGES = Number(edges.value); draw(); });
    box.append(el("label", { class: "control" }, "predicted graphs show ", edges));
    box.append(el("span", { class: "muted", text: "hover or click a triplet to see its boxes" }));
  }

  function draw() {
    const panels = document.getElementById("panels");
    panels.replaceChildren();
    const layers = [];
    if (S.kind === "dataset") layers.push({ name: "gt", objects: R.objects, dashed: false });
    S.models.forEach(function (m, i) { if (ownBoxes(i) || S.kind !== "dataset") layers.push({ name: "m" + i, objects: objectsOf(i), dashed: S.kind === "dataset" }); });
    const scene = B.scene(R, R.src, layers, S.objects);
    scene.id = "scene";
    panels.append(panel("image", scene, R.src ? "" : "image file not found; boxes only"));
    for (const layer of layers) {
      const input = document.getElementById("show-" + layer.name);
      if (input && !input.checked) for (const g of scene.querySelectorAll('[data-layer="' + layer.name + '"]')) g.style.display = "none";
    }
    if (S.kind === "dataset") {
      const edges = R.gt.map(function (t, j) {
        const states = t[5].map(function (first) { return B.recalledAt(first, KS); });
        const hit = states[0] !== null && states[0] <= K;
        return { sub: t[0], obj: t[1], label: S.predicates[t[2]], cls: hit ? "gt-hit" : "gt-miss", key: "gt-" + j,
          title: tripletText(R.objects, t[0], t[1], t[2]).join(" — ") + (hit ? "" : " (missed at @" + K + " by " + S.models[0].name + ")") };
      });
      panels.append(panel("ground truth", B.graph(R.objects, edges, R, S.objects, { id: "gt", title: "ground truth" }),
        "green: recalled by " + S.models[0].name + " at @" + K + ", red: missed"));
    }
    S.models.forEach(function (model, m) {
      const objects = objectsOf(m);
      const edges = R.models[m].rows.slice(0, EDGES).map(function (t, r) {
        const cls = t[4] >= 0 ? OUTCOME[t[4]][0] : "none";
        return { sub: t[0], obj: t[1], label: (r + 1) + ". " + S.predicates[t[2]], cls: cls, key: "m" + m + "-" + r,
          title: tripletText(objects, t[0], t[1], t[2]).join(" — ") + " " + t[3] + (t[4] >= 0 ? " (" + OUTCOME[t[4]][1] + ")" : "") };
      });
      const shown = Math.min(EDGES, R.models[m].rows.length);
      const note = S.kind === "dataset" ? "top " + shown + "; green: matches GT, orange: right pair, wrong predicate, grey: unmatched" : "top " + shown;
      panels.append(panel(model.name, B.graph(objects, edges, R, S.objects, { id: "m" + m, title: model.name }), note));
    });
    gtTable();
    predictedTables();
    comparison();
    wireHighlights();
  }

  function panel(title, content, note) {
    return el("figure", { class: "panel" }, el("figcaption", { text: title }), content, note ? el("p", { class: "muted note", text: note }) : null);
  }

  function chip(first) {
    const k = B.recalledAt(first, KS);
    if (k === null) return el("span", { class: "chip miss", text: "missed" });
    return el("span", { class: "chip match", title: "first matched by prediction #" + (first + 1), text: "R@" + k + " (#" + (first + 1) + ")" });
  }

  function gtTable() {
    const box = document.getElementById("gt-table");
    box.replaceChildren();
    if (S.kind !== "dataset") { document.getElementById("gt-section").hidden = true; return; }
    const table = el("table", { class: "triplets", id: "gt-triplets" });
    const head = el("tr", {}, el("th", { text: "#" }), el("th", { text: "subject" }), el("th", { text: "predicate" }), el("th", { text: "object" }));
    if (S.has_specific) head.append(el("th", { text: "true specific" }));
    S.models.forEach(function (m, i) { head.append(el("th", { class: "model-" + i, text: m.name })); });
    table.append(el("thead", {}, head));
    const body = el("tbody");
    R.gt.forEach(function (t, j) {
      const [s, p, o] = tripletText(R.objects, t[0], t[1], t[2]);
      const row = el("tr", { class: "gt-row", "data-key": "gt-" + j, "data-sub": "gt-" + t[0], "data-obj": "gt-" + t[1] },
        el("td", { class: "num", text: j + 1 }), el("td", { text: s }), el("td", { class: "predicate", text: p }), el("td", { text: o }));
      if (S.has_specific) row.append(el("td", { class: t[3] !== t[2] ? "specific" : "muted", text: t[3] !== t[2] ? S.predicates[t[3]] : "=" }));
      t[5].forEach(function (first, m) {
        const k = B.recalledAt(first, KS);
        row.dataset["status" + m] = k === null ? "missed" : "recalled@" + k;
        row.append(el("td", {}, chip(first), t[4] ? el("span", { class: "chip zs", title: "zero-shot triplet", text: "zero-shot" }) : null));
      });
      body.append(row);
    });
    table.append(body);
    box.append(table);
  }

  function predictedTables() {
    const box = document.getElementById("predicted");
    box.replaceChildren();
    S.models.forEach(function (model, m) {
      const objects = objectsOf(m);
      const table = el("table", { class: "triplets", id: "predicted-" + m });
      const head = el("tr", {}, el("th", { text: "rank" }), el("th", { text: "subject" }), el("th", { text: "predicate" }), el("th", { text: "object" }), el("th", { class: "num", text: "score" }));
      if (S.kind === "dataset") head.append(el("th", { text: "outcome" }));
      table.append(el("thead", {}, head));
      const body = el("tbody");
      R.models[m].rows.forEach(function (t, r) {
        const [s, p, o] = tripletText(objects, t[0], t[1], t[2]);
        const prefix = ownBoxes(m) || S.kind !== "dataset" ? "m" + m + "-" : "gt-";
        const row = el("tr", { class: "predicted-row", "data-key": "m" + m + "-" + r, "data-sub": prefix + t[0], "data-obj": prefix + t[1],
          "data-outcome": t[4] >= 0 ? OUTCOME[t[4]][0] : "" },
          el("td", { class: "num", text: r + 1 }), el("td", { text: s }), el("td", { class: "predicate", text: p }), el("td", { text: o }),
          el("td", { class: "num", text: Number(t[3]).toFixed(3) }));
        if (S.kind === "dataset") {
          let text = OUTCOME[t[4]][1];
          if (t[4] === 2) text = "matches GT #" + (t[5] + 1);
          if (t[4] === 1) text = "right pair; GT: " + S.predicates[R.gt[t[5]][2]];
          row.append(el("td", {}, el("span", { class: "chip " + OUTCOME[t[4]][0], text: text })));
        }
        body.append(row);
      });
      table.append(body);
      box.append(el("div", { class: "column" }, el("h3", { class: "model-title model-" + m, text: model.name + " (top " + R.models[m].rows.length + ")" }), table));
    });
  }

  function comparison() {
    const section = document.getElementById("compare-section");
    if (S.models.length < 2 || S.kind !== "dataset") { section.hidden = true; return; }
    section.hidden = false;
    section.querySelector("h2").textContent = "Recalled at @" + K + " by one model only";
    const box = document.getElementById("compare");
    box.replaceChildren();
    S.models.forEach(function (model, a) {
      const list = el("ul", { class: "only", id: "only-" + a });
      R.gt.forEach(function (t, j) {
        const mine = t[5][a] >= 0 && t[5][a] < K;
        const others = t[5].some(function (f, b) { return b !== a && f >= 0 && f < K; });
        if (mine && !others) {
          list.append(el("li", { "data-key": "gt-" + j, "data-sub": "gt-" + t[0], "data-obj": "gt-" + t[1], text: tripletText(R.objects, t[0], t[1], t[2]).join(" — ") }));
        }
      });
      if (!list.children.length) list.append(el("li", { class: "muted", text: "none" }));
      box.append(el("div", { class: "column" }, el("h3", { class: "model-title model-" + a, text: "only " + model.name }), list));
    });
  }

  /* hovering (or clicking, to pin) a triplet highlights its two boxes, its edge and its row */
  let pinned = null;
  function wireHighlights() {
    const items = document.querySelectorAll("[data-key]");
    for (const item of items) {
      item.addEventListener("mouseenter", function () { if (!pinned) highlight(item); });
      item.addEventListener("mouseleave", function () { if (!pinned) clear(); });
      item.addEventListener("click", function () {
        if (pinned === item.dataset.key) { pinned = null; clear(); return; }
        pinned = null; highlight(item); pinned = item.dataset.key;
      });
    }
  }
  function boxesOf(item) {
    if (item.closest && item.closest("svg.graph")) {
      const key = item.dataset.key;
      const row = document.querySelector('tr[data-key="' + key + '"], li[data-key="' + key + '"]');
      return row ? [row.dataset.sub, row.dataset.obj] : [];
    }
    return [item.dataset.sub, item.dataset.obj];
  }
  function highlight(item) {
    clear();
    const key = item.dataset.key;
    for (const node of document.querySelectorAll('[data-key="' + key + '"]')) node.classList.add("hl");
    const [sub, obj] = boxesOf(item);
    const scene = document.getElementById("scene");
    scene.classList.add("dim");
    for (const id of [sub, obj]) {
      const box = scene.querySelector('[data-box="' + id + '"]');
      if (box) box.classList.add("hl");
    }
  }
  function clear() {
    for (const node of document.querySelectorAll(".hl")) node.classList.remove("hl");
    const scene = document.getElementById("scene");
    if (scene) scene.classList.remove("dim");
  }

  try { start(); } catch (error) { B.showError(error); }
})(window.BASGG);
