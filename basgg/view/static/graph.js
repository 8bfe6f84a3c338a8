/* basgg view: the picture with its boxes and the node-link scene graphs, as SVG. */
"use strict";
(function (B) {
  const NODE_HEIGHT = 22;
  const CHAR_WIDTH = 6.6;

  /** The image with boxes. layers: [{name, objects: [[label, x1, y1, x2, y2, ...]], dashed}] */
  function scene(record, src, layers, names) {
    const root = B.svg("svg", {
      class: "scene", viewBox: "0 0 " + record.w + " " + record.h,
      preserveAspectRatio: "xMidYMid meet", role: "img",
    });
    if (src) {
      root.appendChild(B.svg("image", { href: src, x: 0, y: 0, width: record.w, height: record.h }));
    } else {
      root.appendChild(B.svg("rect", { x: 0, y: 0, width: record.w, height: record.h, class: "no-image" }));
    }
    const stroke = Math.max(1.5, Math.max(record.w, record.h) / 300);
    const font = Math.max(10, Math.max(record.w, record.h) / 40);
    for (const layer of layers) {
      const group = B.svg("g", { class: "boxes boxes-" + layer.name, "data-layer": layer.name });
      layer.objects.forEach(function (object, index) {
        const [label, x1, y1, x2, y2] = object;
        const colour = B.colour(index);
        const box = B.svg("g", { class: "box", "data-box": layer.name + "-" + index });
        box.appendChild(B.svg("rect", {
          x: x1, y: y1, width: Math.max(x2 - x1, 1), height: Math.max(y2 - y1, 1),
          stroke: colour, "stroke-width": stroke, fill: "none",
          "stroke-dasharray": layer.dashed ? stroke * 3 + " " + stroke * 2 : null,
        }));
        const text = index + " " + names[label];
        box.appendChild(B.svg("text", {
          x: x1 + stroke, y: Math.max(y1 - stroke, font), "font-size": font, fill: colour,
          class: "box-label", text: text,
        }));
        box.appendChild(B.svg("title", { text: text }));
        group.appendChild(box);
      });
      root.appendChild(group);
    }
    return root;
  }

  /** Deterministic layout: each node starts where its box centre is in the image (scaled to
      the drawing), then overlapping nodes are pushed apart along the axis of least overlap. */
  function layout(nodes, record, width, height, sizes) {
    const margin = 16;
    const xs = nodes.map(function (n) { return n.cx; }), ys = nodes.map(function (n) { return n.cy; });
    // stretch the nodes' extent (not the whole image) over the drawing
    const x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    const y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    const fx = function (x) { return x1 > x0 ? (x - x0) / (x1 - x0) : 0.5; };
    const fy = function (y) { return y1 > y0 ? (y - y0) / (y1 - y0) : 0.5; };
    const at = {};
    for (const node of nodes) {
      const [w, h] = sizes[node.index];
      at[node.index] = [
        margin + w / 2 + fx(node.cx) * (width - 2 * margin - w),
        margin + h / 2 + fy(node.cy) * (height - 2 * margin - h),
      ];
    }
    const gap = 26;
    for (let round = 0; round < 300; round++) {
      let moved = false;
      for (let a = 0; a < nodes.length; a++) {
        for (let b = a + 1; b < nodes.length; b++) {
          const p = at[nodes[a].index], q = at[nodes[b].index];
          const sa = sizes[nodes[a].index], sb = sizes[nodes[b].index];
          const overlapX = (sa[0] + sb[0]) / 2 + gap - Math.abs(p[0] - q[0]);
          const overlapY = (sa[1] + sb[1]) / 2 + gap - Math.abs(p[1] - q[1]);
          if (overlapX <= 0 || overlapY <= 0) continue;
          moved = true;
          // ties (same centre) part by index, so the result never depends on chance
          const sx = p[0] < q[0] || (p[0] === q[0] && a < b) ? -1 : 1;
          const sy = p[1] < q[1] || (p[1] === q[1] && a < b) ? -1 : 1;
          if (overlapY / (sa[1] + sb[1]) < overlapX / (sa[0] + sb[0])) {
            p[1] += (sy * overlapY) / 2; q[1] -= (sy * overlapY) / 2;
          } else {
            p[0] += (sx * overlapX) / 2; q[0] -= (sx * overlapX) / 2;
          }
        }
      }
      for (const node of nodes) {  // stay inside the drawing
        const [w, h] = sizes[node.index], c = at[node.index];
        c[0] = Math.min(Math.max(c[0], w / 2 + 2), width - w / 2 - 2);
        c[1] = Math.min(Math.max(c[1], h / 2 + 2), height - h / 2 - 2);
      }
      if (!moved) break;
    }
    return at;
  }

  /** A node-link graph. edges: [{sub, obj, label, cls, key, title}], objects as in scene(). */
  function graph(objects, edges, record, names, options) {
    const width = options.width || 520, height = options.height || 400;
    const root = B.svg("svg", {
      class: "graph", viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": options.title || "graph",
    });
    const defs = B.svg("defs");
    for (const cls of ["match", "pair", "miss", "none", "gt-hit", "gt-miss"]) {
      defs.appendChild(B.svg("marker", {
        id: "arrow-" + options.id + "-" + cls, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", class: "arrow-" + cls,
      }, B.svg("path", { d: "M0,0 L10,5 L0,10 z" })));
    }
    root.appendChild(defs);
    const used = new Set();
    for (const edge of edges) { used.add(edge.sub); used.add(edge.obj); }
    const nodes = [...used].sort(function (a, b) { return a - b; }).map(function (index) {
      const o = objects[index];
      return { index: index, cx: (o[1] + o[3]) / 2, cy: (o[2] + o[4]) / 2 };
    });
    const sizes = {};
    for (const node of nodes) {
      const text = node.index + " " + names[objects[node.index][0]];
      sizes[node.index] = [text.length * CHAR_WIDTH + 14, NODE_HEIGHT, text];
    }
    const at = layout(nodes, record, width, height, sizes);
    const seen = {};
    const edgeLayer = B.svg("g", { class: "edges" });
    edges.forEach(function (edge) {
      if (edge.sub === edge.obj || !at[edge.sub] || !at[edge.obj]) return;
      const pairKey = Math.min(edge.sub, edge.obj) + "-" + Math.max(edge.sub, edge.obj);
      const count = seen[pairKey] = (seen[pairKey] || 0) + 1;
      const [x1, y1] = at[edge.sub], [x2, y2] = at[edge.obj];
      const dx = x2 - x1, dy = y2 - y1, length = Math.hypot(dx, dy) || 1;
      const bend = 12 + (count - 1) * 24;  // reversed edges bend the other way (dx, dy flip)
      const mx = (x1 + x2) / 2 - (dy / length) * bend, my = (y1 + y2) / 2 + (dx / length) * bend;
      const start = clip(x1, y1, mx, my, sizes[edge.sub]);
      const end = clip(x2, y2, mx, my, sizes[edge.obj]);
      const group = B.svg("g", {
        class: "edge " + edge.cls, "data-key": edge.key, "data-sub": edge.sub, "data-obj": edge.obj,
        tabindex: 0,
      });
      group.appendChild(B.svg("path", {
        d: "M" + start[0] + "," + start[1] + " Q" + mx + "," + my + " " + end[0] + "," + end[1],
        class: "edge-line", "marker-end": "url(#arrow-" + options.id + "-" + edge.cls + ")",
      }));
      const lx = 0.25 * start[0] + 0.5 * mx + 0.25 * end[0];
      const ly = 0.25 * start[1] + 0.5 * my + 0.25 * end[1];
      group.appendChild(B.svg("text", { x: lx, y: ly + 4, class: "edge-label", text: edge.label }));
      group.appendChild(B.svg("title", { text: edge.title || edge.label }));
      edgeLayer.appendChild(group);
    });
    const nodeLayer = B.svg("g", { class: "nodes" });
    for (const node of nodes) {
      const [w, h, text] = sizes[node.index];
      const [x, y] = at[node.index];
      const group = B.svg("g", { class: "node", "data-node": node.index });
      group.appendChild(B.svg("rect", {
        x: x - w / 2, y: y - h / 2, width: w, height: h, rx: 6, fill: "#fff",
        stroke: B.colour(node.index), "stroke-width": 2,
      }));
      group.appendChild(B.svg("text", { x: x, y: y + 4, class: "node-label", text: text }));
      nodeLayer.appendChild(group);
    }
    root.appendChild(edgeLayer);
    root.appendChild(nodeLayer);
    if (!nodes.length) {
      root.appendChild(B.svg("text", { x: width / 2, y: height / 2, class: "empty", text: "no triplet" }));
    }
    return root;
  }

  /** Where the segment from a node centre towards (tx, ty) leaves the node's box. */
  function clip(x, y, tx, ty, size) {
    const dx = tx - x, dy = ty - y;
    const w = size[0] / 2 + 3, h = size[1] / 2 + 3;
    const scale = Math.min(dx ? w / Math.abs(dx) : Infinity, dy ? h / Math.abs(dy) : Infinity, 1);
    return [x + dx * scale, y + dy * scale];
  }

  B.scene = scene;
  B.graph = graph;
})(window.BASGG);
