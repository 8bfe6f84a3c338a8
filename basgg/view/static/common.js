/* basgg view: shared helpers. Data files call BASGG.put(key, value); pages build the DOM with
   createElement and textContent only, never innerHTML, so no label can inject markup. */
"use strict";
window.BASGG = (function () {
  const store = {};
  const PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
    "#843c39", "#7b4173", "#3182bd", "#e6550d",
  ];
  const SVG_NS = "http://www.w3.org/2000/svg";

  function put(key, value) { store[key] = value; }
  function get(key) { return store[key]; }

  /** Load a data script (file:// allows <script src>, not fetch); resolves when it ran. */
  function load(src) {
    return new Promise(function (resolve, reject) {
      const script = document.createElement("script");
      script.src = src;
      script.onload = function () { resolve(); };
      script.onerror = function () { reject(new Error("cannot load " + src)); };
      document.head.appendChild(script);
    });
  }

  function fill(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  /** An HTML element; strings among the children become text nodes. */
  function el(tag, attrs, ...children) { return fill(document.createElement(tag), attrs, children); }
  /** An SVG element. */
  function svg(tag, attrs, ...children) {
    return fill(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function percent(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return (100 * value).toFixed(digits === undefined ? 2 : digits);
  }
  function colour(index) { return PALETTE[index % PALETTE.length]; }
  function pad(number, width) { return String(number).padStart(width, "0"); }

  /** Where a GT row stands: the smallest K that recalls it, or null (missed). */
  function recalledAt(first, ks) {
    if (first < 0) return null;
    for (const k of ks) if (first < k) return k;
    return null;
  }

  function showError(error) {
    console.error(error);
    const box = document.getElementById("error");
    if (box) { box.hidden = false; box.textContent = String(error && error.message || error); }
  }

  return { put, get, load, el, svg, percent, colour, pad, recalledAt, showError, PALETTE };
})();
