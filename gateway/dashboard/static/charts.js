// modelgate dashboard: small SVG charts drawn by hand (no library).
// lineChart(title, series, options) -> <figure> with one line per series.
//   series: [{name, cls, color, points: [{y, hollow}]}] (y null: no figure, the line breaks)
//   options: {unit, limit: {y, label}, xLabels: [string]}
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function formatTick(value, unit) {
  const text = value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  // NOTE: zeros are dropped only after a decimal point: 100 stays "100", 2.50 reads "2.5".
  return (text.includes(".") ? text.replace(/\.?0+$/, "") : text) + unit;
}

function lineChart(title, series, options) {
  const opts = options || {};
  const unit = opts.unit || "";
  const width = 360, height = 150;
  const left = 44, right = 10, top = 12, bottom = 24;
  const innerW = width - left - right, innerH = height - top - bottom;
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.appendChild(caption);
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  figure.appendChild(svg);

  const count = Math.max(0, ...series.map((s) => s.points.length));
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y !== null);
  if (opts.limit && opts.limit.y !== null && opts.limit.y !== undefined) ys.push(opts.limit.y);
  const maxY = niceMax(Math.max(0, ...ys) * 1.1);
  const xOf = (i) => left + (count <= 1 ? innerW / 2 : (innerW * i) / (count - 1));
  const yOf = (y) => top + innerH - (innerH * y) / maxY;

  for (const fraction of [0, 0.5, 1]) {
    const y = yOf(maxY * fraction);
    svg.appendChild(svgEl("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
    svg.appendChild(
      svgEl("text", { x: left - 6, y: y + 4, class: "tick", "text-anchor": "end" },
        formatTick(maxY * fraction, unit)),
    );
  }
  // At most about 8 labels on the x axis, the last one always ("now"), evenly spaced:
  // more would overlap.
  const every = Math.max(1, Math.ceil(count / 8));
  const shown = (i) => i === count - 1 || (i % every === 0 && count - 1 - i >= every);
  (opts.xLabels || []).forEach((label, i) => {
    if (!label || !shown(i)) return;
    const anchor = count > 1 && i === 0 ? "start" : count > 1 && i === count - 1 ? "end" : "middle";
    svg.appendChild(
      svgEl("text", { x: xOf(i), y: height - 6, class: "tick", "text-anchor": anchor }, label),
    );
  });
  if (opts.limit && opts.limit.y !== null && opts.limit.y !== undefined) {
    const y = yOf(opts.limit.y);
    svg.appendChild(svgEl("line", { x1: left, x2: width - right, y1: y, y2: y, class: "limit" }));
    svg.appendChild(
      svgEl("text", { x: width - right - 2, y: y - 4, class: "limit-label", "text-anchor": "end" },
        opts.limit.label),
    );
  }
  if (!ys.length) {
    svg.appendChild(
      svgEl("text", { x: left + innerW / 2, y: top + innerH / 2, class: "empty",
        "text-anchor": "middle" }, "no figures yet"),
    );
  }
  for (const line of series) {
    let path = "";
    let pen = false;
    line.points.forEach((point, i) => {
      if (point.y === null) {
        pen = false;
        return;
      }
      path += `${pen ? "L" : "M"}${xOf(i).toFixed(1)},${yOf(point.y).toFixed(1)} `;
      pen = true;
    });
    const stroke = svgEl("path", { d: path.trim(), class: `line ${line.cls}` });
    stroke.style.setProperty("--c", line.color);
    svg.appendChild(stroke);
    line.points.forEach((point, i) => {
      if (point.y === null) return;
      const dot = svgEl("circle", {
        cx: xOf(i), cy: yOf(point.y), r: 3.2,
        class: `dot ${line.cls}${point.hollow ? " hollow" : ""}`,
      });
      dot.style.setProperty("--c", line.color);
      dot.appendChild(svgEl("title", {}, `${line.name}: ${formatTick(point.y, unit)}`));
      svg.appendChild(dot);
    });
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const line of series) {
    const item = document.createElement("span");
    item.className = `key ${line.cls}`;
    item.style.setProperty("--c", line.color);
    item.textContent = line.name;
    legend.appendChild(item);
  }
  figure.appendChild(legend);
  return figure;
}

window.modelgateCharts = { lineChart };
