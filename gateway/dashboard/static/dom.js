// modelgate dashboard: DOM and formatting helpers shared by the other scripts (classic
// scripts: their top-level names are shared). Text is always set as text, never as HTML:
// model names, reasons and ids come from the registry.
"use strict";

const PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#a855f7", "#ef4444", "#14b8a6", "#ec4899",
  "#84cc16"];

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "style") {
      // NOTE: CSSOM, not a style attribute: the page's CSP allows no inline style.
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
    }
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" || typeof child === "number"
      ? document.createTextNode(String(child)) : child);
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

function ago(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function pct(value, digits) {
  return value === null || value === undefined ? "—" : `${value.toFixed(digits ?? 1)}%`;
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(value < 10 ? 2 : 1)} ms`;
}

function pill(text, kind, extra) {
  return h("span", { class: `pill ${kind}`, ...(extra || {}) }, text);
}

function colorFor(model, version) {
  const versions = (current && current.models.find((m) => m.name === model)) || { versions: [] };
  // NOTE: counted from the lowest version, so publishing one changes no colour.
  const index = versions.versions.findIndex((v) => v.version === version);
  const rank = index < 0 ? 0 : versions.versions.length - 1 - index;
  return PALETTE[rank % PALETTE.length];
}

function toast(message, kind) {
  const node = $("toast");
  node.textContent = message;
  node.className = `toast ${kind || ""}`;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 6000);
}
