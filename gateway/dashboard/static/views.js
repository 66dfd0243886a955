// modelgate dashboard: draws the state document (/ui/api/state): header, models with
// their split, rollouts with their steps, charts and timeline, workers.
"use strict";

// -- rendering ----------------------------------------------------------------------------

function render(state) {
  renderHeader(state);
  const problems = Object.entries(state.gateway.problems);
  banner(problems.length
    ? `Degraded — ${problems.map(([what, why]) => `${what}: ${why}`).join(" · ")}` : "", "bad");
  update($("rollouts"), renderRollouts(state));
  update($("models"), state.models.length ? state.models.map(renderModel)
    : [h("p", { class: "empty" }, "No model is published yet.")]);
  update($("workers"), [renderWorkers(state.workers)]);
}

function renderHeader(state) {
  const s = state.summary;
  const degraded = state.gateway.degraded || !state.gateway.registry_loaded;
  const noneReady = s.workers > 0 && s.ready_workers === 0;
  const overall = degraded ? ["Degraded", "bad"] : noneReady ? ["No ready worker", "bad"]
    : s.ejected_workers ? ["Serving, workers ejected", "warn"] : ["Healthy", "good"];
  update($("health"), [
    h("span", { class: `status ${overall[1]}`, "data-testid": "fleet-status" }, overall[0]),
    stat("ready workers", `${s.ready_workers}/${s.workers}`, s.ready_workers < s.workers ? "warn" : "",
      "ready-workers"),
    stat("ejected", String(s.ejected_workers), s.ejected_workers ? "bad" : ""),
    stat("models", String(s.models)),
    stat("active rollouts", String(s.active_rollouts), s.active_rollouts ? "info" : ""),
    stat("requests / min", String(s.requests_last_minute)),
    stat("revision", String(state.gateway.revision)),
  ]);
  const who = state.principal;
  setText($("replica"), `replica ${state.gateway.replica} · this replica's view`);
  $("replica").title = "Behind a load balancer, another replica may answer the next poll; "
    + "each shows what it holds in memory (workers, ejections, observed split).";
  setText($("who"), `${who.name} · ${who.can_act ? who.scopes.join(", ") : "read only"}`);
  $("updated").textContent = `updated ${new Date(state.generated_at).toLocaleTimeString()}`;
  $("updated").dataset.at = state.generated_at;
}

function stat(label, value, kind, testid) {
  return h("span", { class: `stat ${kind || ""}`, "data-testid": testid || null },
    h("b", {}, value), h("small", {}, label));
}

// -- models ---------------------------------------------------------------------------------

function renderModel(model) {
  const canAct = current.principal.can_act;
  return h("article", { class: "card model", "data-testid": `model-${model.name}` },
    h("header", {},
      h("h3", {}, model.name),
      h("div", { class: "aliases" }, model.aliases.map((a) => h("span", { class: "alias" },
        h("b", {}, a.alias), ` → ${a.version}`,
        canAct ? h("button", { class: "link", type: "button", "data-action": "move-alias",
          "data-alias": a.alias, onclick: () => moveAlias(model, a) }, "move") : null)))),
    renderSplit(model),
    h("table", { class: "versions" },
      h("thead", {}, h("tr", {}, ["version", "status", "aliases", "ready on", "published"]
        .map((c) => h("th", {}, c)))),
      h("tbody", {}, model.versions.map((v) => h("tr",
        { "data-testid": `version-${model.name}-${v.version}`, "data-status": v.status },
        h("td", {}, h("span", { class: "swatch", style: { "--c": colorFor(model.name, v.version) } }),
          h("code", {}, v.version)),
        h("td", {}, pill(v.status, { active: "good", deprecated: "warn", yanked: "bad" }[v.status] || "")),
        h("td", {}, v.aliases.join(", ") || ""),
        h("td", { class: v.ready_workers ? "" : "muted" },
          v.ready_workers ? `${v.ready_workers} worker${v.ready_workers > 1 ? "s" : ""}` : "none"),
        h("td", { title: v.published_at || "" },
          v.published_at ? `${ago(v.published_at)}${v.published_by ? ` by ${v.published_by}` : ""}` : "—"),
      )))),
    aliasHistory(model));
}

function aliasHistory(model) {
  const moved = model.aliases.filter((a) => a.history.length);
  if (!moved.length) return null;
  return h("div", { class: "hint alias-history", "data-testid": `aliases-${model.name}` },
    moved.map((a) => h("div", {}, h("b", {}, a.alias), ": ", a.history.slice(0, 3).map((e) =>
      `${e.from ? `${e.from} → ` : "set to "}${e.to} ${ago(e.at)} by ${e.by}`).join(" · "))));
}

function renderSplit(model) {
  const configured = model.configured;
  const observed = model.observed;
  const rows = [];
  const versions = new Set();
  if (configured) configured.arms.forEach((a) => versions.add(a.version));
  Object.keys(observed.shares).forEach((v) => versions.add(v));
  const conf = configured
    ? Object.fromEntries(configured.arms.map((a) => [a.version, a.share])) : null;
  rows.push(bar("configured", conf, model.name,
    configured ? null : "no traffic policy: the highest ready candidate serves"));
  const seen = observed.requests ? observed.shares : null;
  const span = Math.round(observed.window_s);
  rows.push(bar(span ? `observed, ${span} s` : "observed", seen, model.name,
    observed.requests ? null : "no requests in the last minute"));
  const legend = [...versions].sort().map((v) => {
    const c = conf ? conf[v] : undefined;
    const o = seen ? seen[v] : undefined;
    const arm = configured ? configured.arms.find((a) => a.version === v) : null;
    return h("span", { class: "key-item", "data-version": v },
      h("i", { class: "dot", style: { "--c": colorFor(model.name, v) } }), h("code", {}, v),
      ` ${conf ? pct(c ?? 0, 0) : "—"} → ${o === undefined ? "0%" : pct(o)}`,
      arm && !arm.ready ? pill("no ready worker", "bad") : null,
      errors(observed.versions[v]));
  });
  const counts = observed.requests
    ? `${observed.split_requests} of ${observed.requests} requests split by the policy`
      + (observed.requests > observed.split_requests ? " (the rest pinned a version or alias)" : "")
    : "";
  return h("div", { class: "split", "data-testid": `split-${model.name}`,
    "data-observed": JSON.stringify(observed.shares),
    "data-configured": JSON.stringify(conf || {}) },
    ...rows, h("div", { class: "legend" }, legend), h("p", { class: "hint" }, counts));
}

function errors(counts) {
  if (!counts || !counts.errors) return null;
  return pill(`${counts.errors} 5xx (${pct((100 * counts.errors) / counts.requests)})`, "bad");
}

function bar(label, shares, model, empty) {
  const track = h("div", { class: "track" });
  if (shares) {
    for (const [version, share] of Object.entries(shares).sort()) {
      if (share <= 0) continue;
      track.appendChild(h("span", { class: "segment", title: `${version}: ${pct(share)}`,
        style: { "--c": colorFor(model, version), width: `${share.toFixed(2)}%` } },
        share >= 12 ? `${version} ${share.toFixed(0)}%` : ""));
    }
  } else {
    track.appendChild(h("span", { class: "none" }, empty));
  }
  return h("div", { class: "bar" }, h("span", { class: "label" }, label), track);
}

// -- rollouts -------------------------------------------------------------------------------

const STATE_KIND = { waiting: "muted", running: "info", paused: "warn", promoted: "good",
  rolled_back: "bad", aborted: "bad" };

function renderRollouts(state) {
  if (!state.rollouts.length) return [h("p", { class: "empty" }, "No rollout yet.")];
  return state.rollouts.map(renderRollout);
}

function renderRollout(r) {
  const canAct = current.principal.can_act && r.active;
  const actions = [];
  if (canAct) {
    if (r.state === "running" || r.state === "waiting") actions.push(action(r, "pause", "Pause"));
    if (r.state === "paused") actions.push(action(r, "resume", "Resume"));
    actions.push(action(r, "promote", "Promote now"));
    actions.push(action(r, "abort", "Abort", "danger"));
  }
  const step = r.step >= 0 ? `step ${r.step + 1}/${r.steps.length} at ${r.weight}%` : "not started";
  const next = r.state === "running" && r.step_started_at
    ? nextJudgement(r) : null;
  return h("article", { class: `card rollout ${r.active ? "active" : "done"}`,
    "data-testid": `rollout-${r.model}`, "data-state": r.state, "data-step": r.step,
    "data-id": r.id },
    h("header", {},
      h("h3", {}, `${r.model} `, h("small", {}, `rollout #${r.id}`)),
      h("span", { class: "versions-move" }, h("code", {}, r.baseline), " → ", h("code", {}, r.version)),
      pill(r.state.replace("_", " "), STATE_KIND[r.state] || "", { "data-testid": "rollout-state" }),
      h("span", { class: "muted" }, step), next ? h("span", { class: "muted" }, next) : null,
      h("span", { class: "actions" }, actions)),
    r.reason ? h("p", { class: `reason ${r.state === "rolled_back" ? "bad" : ""}` }, r.reason) : null,
    stepTrack(r),
    h("div", { class: "rollout-body" },
      h("div", { class: "charts" }, ...rolloutCharts(r)),
      h("div", { class: "side" }, gatesLine(r), timeline(r))),
    r.previous.length ? h("p", { class: "hint" }, "earlier: ", r.previous.map((p) =>
      `#${p.id} ${p.version} ${p.state.replace("_", " ")}`).join(" · ")) : null);
}

function nextJudgement(r) {
  const started = Date.parse(r.step_started_at);
  const waited = r.waits.find((w) => w.step === r.step);
  const since = waited ? Math.max(started, Date.parse(waited.latest.at)) : started;
  const left = Math.round((since + r.interval_s * 1000 - Date.now()) / 1000);
  return left > 0 ? `judged in ${left} s` : "being judged";
}

function action(r, verb, label, kind) {
  return h("button", { type: "button", class: kind || "", "data-action": verb,
    onclick: () => confirmRollout(r, verb, label) }, label);
}

function stepTrack(r) {
  return h("ol", { class: "steps" }, r.steps.map((weight, i) => {
    const judged = r.judgements.filter((e) => e.step === i);
    const last = judged.length ? judged[judged.length - 1] : null;
    const waited = r.waits.find((w) => w.step === i);
    const waits = waited ? waited.count : 0;
    let kind = i < r.step ? "passed" : i === r.step ? "current" : "todo";
    if (last && last.verdict === "fail") kind = "failed";
    if (last && last.verdict === "pass") kind = "passed";
    if (i === r.step && r.state === "promoted") kind = "passed";
    const mark = { passed: "✓", failed: "✗", current: "●", todo: "" }[kind];
    return h("li", { class: kind, title: last ? last.reason : waited ? waited.latest.reason : "" },
      h("b", {}, `${weight}%`), h("span", {}, `${mark}${waits ? ` ${waits}× wait` : ""}`));
  }));
}

function rolloutCharts(r) {
  // NOTE: pass and fail verdicts only (and "now"): waits are counted, not plotted.
  const judged = r.judgements.filter((e) => e.candidate && e.baseline);
  const points = judged.map((e) => ({ c: e.candidate, b: e.baseline, live: false,
    label: `${e.weight}%` }));
  if (r.live) points.push({ c: r.live.candidate, b: r.live.baseline, live: true, label: "now" });
  const series = (pick) => [
    { name: `candidate ${r.version}`, cls: "candidate", color: colorFor(r.model, r.version),
      points: points.map((p) => ({ y: pick(p.c), hollow: p.live })) },
    { name: `baseline ${r.baseline}`, cls: "baseline", color: colorFor(r.model, r.baseline),
      points: points.map((p) => ({ y: pick(p.b), hollow: p.live })) },
  ];
  const labels = points.map((p) => p.label);
  const gates = r.gates || {};
  const rate = (f) => (f.requests ? 100 * f.error_rate : null);
  return [
    window.modelgateCharts.lineChart("error rate per judgement", series(rate),
      { unit: "%", xLabels: labels,
        limit: { y: 100 * (gates.max_error_rate ?? 0), label: `gate ${pct(100 * (gates.max_error_rate ?? 0))}` } }),
    window.modelgateCharts.lineChart("p99 latency per judgement", series((f) => f.p99_ms ?? null),
      { unit: " ms", xLabels: labels,
        limit: gates.max_p99_ms ? { y: gates.max_p99_ms, label: `gate ${ms(gates.max_p99_ms)}` } : null }),
  ];
}

function gatesLine(r) {
  const g = r.gates || {};
  const parts = [
    `error rate ≤ ${pct(100 * (g.max_error_rate ?? 0))}`,
    `p99 ≤ ${g.max_latency_ratio}× the baseline's`,
    g.max_p99_ms ? `p99 ≤ ${ms(g.max_p99_ms)}` : null,
    `≥ ${g.min_requests} candidate requests per step`,
    `${r.interval_s} s per step`,
  ].filter(Boolean);
  const live = r.live
    ? `this step, last ${Math.max(1, Math.ceil(r.live.window_s))} s: `
      + `candidate ${r.live.candidate.requests} requests, `
      + `${pct(100 * r.live.candidate.error_rate)} errors, p99 ${ms(r.live.candidate.p99_ms)}; `
      + `baseline ${r.live.baseline.requests} requests, ${pct(100 * r.live.baseline.error_rate)} `
      + `errors, p99 ${ms(r.live.baseline.p99_ms)}`
    : null;
  return h("div", { class: "hint gates" }, h("div", {}, `gates: ${parts.join(", ")}`),
    live ? h("div", { "data-testid": "live" }, live) : null);
}

function timeline(r) {
  // Each pass or fail, and each step's run of waits as one line (its latest one's time).
  const waits = r.waits.map((w) => ({ ...w.latest, count: w.count }));
  const entries = [...r.judgements, ...waits]
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || b.step - a.step).slice(0, 8);
  if (!entries.length) return h("p", { class: "hint" }, "no judgement yet");
  return h("ol", { class: "timeline", "data-testid": "timeline" }, entries.map((e) => {
    const where = `step ${e.step + 1} (${e.weight}%)`;
    const waited = e.verdict === "wait";
    return h("li", { class: e.verdict },
      h("time", { datetime: e.at, title: e.at }, new Date(e.at).toLocaleTimeString()),
      pill(e.verdict, { pass: "good", fail: "bad", wait: "muted" }[e.verdict] || ""),
      h("span", { class: "muted" }, waited ? `waited ${e.count}× at ${where}:` : where),
      h("span", {}, e.reason));
  }));
}

// -- workers --------------------------------------------------------------------------------

const WORKER_KIND = { ready: "good", degraded: "warn", ejected: "bad", unready: "bad",
  loading: "muted", draining: "warn", stopped: "muted" };

function renderWorkers(workers) {
  if (!workers.length) return h("p", { class: "empty" }, "No worker is announced.");
  return h("table", { class: "workers" },
    h("thead", {}, h("tr", {}, ["worker", "status", "loaded versions", "in flight", "EWMA latency",
      "weight", "failures", "why"].map((c) => h("th", {}, c)))),
    h("tbody", {}, workers.map((w) => h("tr", { "data-testid": `worker-${w.id}`,
      "data-status": w.status, class: w.status },
      h("td", {}, h("b", {}, w.id), h("div", { class: "muted small" },
        `${w.url || "gRPC"}${w.device ? ` · ${w.device}` : ""}${w.external ? " · external" : ""}`)),
      h("td", {}, pill(w.status, WORKER_KIND[w.status] || "")),
      h("td", {}, w.loaded.map((l) => {
        const unready = w.probe_unready.includes(l.ref);
        return h("span", { class: `chip ${unready ? "bad" : l.ready ? "good" : "muted"}`,
          title: unready ? "announced ready, probes find it not ready" : l.ready ? "ready" : "loading" },
        l.ref);
      })),
      h("td", {}, `${w.in_flight}${w.capacity ? ` / ${w.capacity}` : ""}`),
      h("td", {}, ms(w.ewma_ms)),
      h("td", {}, w.weight < 1 ? `${Math.round(w.weight * 100)}% (slow start)` : "100%"),
      h("td", {}, `${w.consecutive_failures} in a row · ${w.ejection_count} ejection${w.ejection_count === 1 ? "" : "s"}`),
      h("td", { class: "why", "data-testid": "ejection" }, w.status === "ejected"
        ? `${w.ejection || "ejected"} · back in ${Math.max(0, Math.round(w.ejected_for_s))} s`
        : w.probe_unready.length ? `probes: ${w.probe_unready.join(", ")} not ready` : ""),
    ))));
}
