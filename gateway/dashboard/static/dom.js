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
    else if (key.startsWith("on")) {
      // NOTE: through node._on, so that `update` can hand a drawn node the new handler
      // (and the state it closes over) without replacing the node.
      const event = key.slice(2);
      node._on = { ...(node._on || {}), [event]: value };
      node.addEventListener(event, (e) => node._on[event](e));
    }
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" || typeof child === "number"
      ? document.createTextNode(String(child)) : child);
  }
  return node;
}

// -- drawing in place -------------------------------------------------------------------
// The page is redrawn from each state document, but into the nodes already shown: a node
// whose tag (and data-testid: a model, a version, a worker, a rollout) is the same is kept
// and given the new attributes, style, handlers and children, so what the operator selected
// stays selected and an element handle stays attached; only what changed is touched.

function sameNode(old, next) {
  if (old.nodeType !== next.nodeType || old.nodeName !== next.nodeName) return false;
  if (old.nodeType !== Node.ELEMENT_NODE) return true;
  return old.getAttribute("data-testid") === next.getAttribute("data-testid");
}

function morph(old, next) {
  if (!sameNode(old, next)) {
    old.replaceWith(next);
    return;
  }
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== next.nodeValue) old.nodeValue = next.nodeValue;
    return;
  }
  for (const { name } of [...old.attributes]) {
    if (name !== "style" && !next.hasAttribute(name)) old.removeAttribute(name);
  }
  for (const { name, value } of [...next.attributes]) {
    if (name !== "style" && old.getAttribute(name) !== value) old.setAttribute(name, value);
  }
  // NOTE: CSSOM (cssText), not the style attribute: the page's CSP allows no inline style.
  if (old.style.cssText !== next.style.cssText) old.style.cssText = next.style.cssText;
  if (next._on) old._on = next._on;
  update(old, [...next.childNodes]);
}

// Make `parent`'s children look like `children` (nodes just built), keeping what matches.
function update(parent, children) {
  const olds = [...parent.childNodes];
  children.forEach((child, i) => {
    if (i < olds.length) morph(olds[i], child);
    else parent.appendChild(child);
  });
  for (const extra of olds.slice(children.length)) extra.remove();
}

// Set a node's text only when it changed (setting it anew drops a selection in it).
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
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
