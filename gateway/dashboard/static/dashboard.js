// modelgate dashboard: polls /ui/api/state with the token kept in sessionStorage and
// draws it (views.js); actions call the admin API (/admin/v1/...) with the same token.
// No framework; charts.js, dom.js and views.js are loaded before this script.
"use strict";

const TOKEN_KEY = "modelgate.dashboard.token";
const POLL_MS = 1500;
const STATE_URL = "/ui/api/state";

let current = null;       // the latest state document
let pollTimer = null;

// -- session ------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(message) {
  clearTimeout(pollTimer);
  current = null;
  $("main").hidden = true;
  $("signout").hidden = true;
  $("who").textContent = "";
  $("replica").textContent = "";
  $("updated").textContent = "";
  $("health").replaceChildren();
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// One poll at a time: a call while one is in flight (an action just done, the tab shown
// again) asks for another right after it, so what is drawn is never older than the call.
let polling = false;
let again = false;

async function poll() {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  clearTimeout(pollTimer);
  let signedIn = false;
  try {
    signedIn = await refresh();
  } finally {
    polling = false;
  }
  if (!signedIn) return;
  if (again) {
    again = false;
    poll();
    return;
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

// Fetch and draw the state; false when there is no usable token (the login form is shown).
async function refresh() {
  const secret = token();
  if (!secret) {
    showLogin();
    return false;
  }
  let response;
  try {
    response = await fetch(STATE_URL, { headers: { Authorization: `Bearer ${secret}` },
      cache: "no-store" });
  } catch (err) {
    banner(`The gateway does not answer (${err.message}); retrying…`, "bad");
    return true;
  }
  if (response.status === 401 || response.status === 403) {
    const why = await errorText(response);
    signOut(response.status === 401
      ? `That token was refused: ${why}`
      : `That token may not read the dashboard: ${why}`);
    return false;
  }
  if (!response.ok) {
    banner(`The state could not be read: ${await errorText(response)}; retrying…`, "bad");
    return true;
  }
  current = await response.json();
  $("login").hidden = true;
  $("main").hidden = false;
  $("signout").hidden = false;
  render(current);
  return true;
}

function banner(message, kind) {
  const node = $("banner");
  node.hidden = !message;
  setText(node, message || "");
  node.className = `banner ${kind || ""}`;
}

// -- actions --------------------------------------------------------------------------------

function ask(title, text, extra) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-extra").replaceChildren(...(extra ? [extra] : []));
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function admin(method, path, body, headers) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}`, ...(body ? { "Content-Type": "application/json" } : {}),
      ...(headers || {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json().catch(() => null);
}

const CONSEQUENCE = {
  pause: "The rollout holds its current step; the weights stay as they are.",
  resume: "The rollout continues; the current step's window starts again.",
  promote: "The candidate takes 100% of the traffic now and the alias moves to it.",
  abort: "The baseline takes 100% of the traffic now; the rollout ends as aborted.",
};

async function confirmRollout(r, verb, label) {
  const ok = await ask(`${label}: ${r.model} rollout #${r.id}?`,
    `${r.baseline} → ${r.version}, ${r.state}. ${CONSEQUENCE[verb]}`);
  if (!ok) return;
  try {
    const out = await admin("POST", `/admin/v1/models/${enc(r.model)}/rollouts/${r.id}/${verb}`);
    toast(`rollout #${r.id} is ${out.state.replace("_", " ")}`, "good");
  } catch (err) {
    toast(`${label} failed: ${err.message}`, "bad");
  }
  poll();
}

async function moveAlias(model, alias) {
  const select = h("select", { id: "alias-target", "data-testid": "alias-target" },
    model.versions.filter((v) => v.status !== "yanked").map((v) =>
      h("option", { value: v.version, selected: v.version === alias.version }, `${v.version} (${v.status})`)));
  const ok = await ask(`Move alias "${alias.alias}" of ${model.name}?`,
    `It points at ${alias.version}; clients asking for "${alias.alias}" get the version chosen here.`,
    h("label", {}, "to version ", select));
  if (!ok || select.value === alias.version) return;
  try {
    await admin("PUT", `/admin/v1/models/${enc(model.name)}/aliases/${enc(alias.alias)}`,
      { version: select.value }, alias.etag ? { "If-Match": alias.etag } : null);
    toast(`alias ${alias.alias} → ${select.value}`, "good");
  } catch (err) {
    toast(`Moving ${alias.alias} failed: ${err.message}`, "bad");
  }
  poll();
}

// -- start ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("login-error").textContent = "";
    poll();
  });
  $("signout").addEventListener("click", () => signOut(""));
  document.addEventListener("visibilitychange", () => { if (!document.hidden && token()) poll(); });
  if (token()) poll(); else showLogin();
});
