// quorumlb admin panel. Plain JS, no framework: one view per section, the REST API for
// data, the SSE stream (/api/v1/events) for live charts drawn on <canvas>.
// Every write sends the session's CSRF token; a 401 sends the browser to /login.
"use strict";

const state = { csrf: "", user: "", configVersion: null, configText: "", view: "" };

// ---------- API ----------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || ("HTTP " + status));
    this.status = status;
    this.code = e.code || "";
    this.details = e.details || null;
  }
}

async function api(method, path, body, extraHeaders) {
  const headers = Object.assign({}, extraHeaders || {});
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401) {
    window.location.assign("/login");
    throw new ApiError(401, null);
  }
  if (resp.status === 204) return null;
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

// ---------- small DOM helpers ----------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(text, kind) { return el("span", { class: "badge " + (kind || text) }, text); }

function flash(message, bad) {
  const f = $("flash");
  f.textContent = message;
  f.className = bad ? "bad" : "";
  f.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { f.hidden = true; }, 6000);
}

function fmtTime(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }
function fmtNum(x, digits) { return (typeof x === "number") ? x.toFixed(digits === undefined ? 1 : digits) : "–"; }

// ---------- views ----------

const views = {
  dashboard: { load: loadDashboard, every: 3000 },
  pools: { load: loadPools, every: 3000 },
  config: { load: loadConfig },
  audit: { load: loadAudit },
  users: { load: loadUsers },
};
let refreshTimer = null;

function showView() {
  const name = (location.hash || "#dashboard").slice(1);
  const view = views[name] ? name : "dashboard";
  state.view = view;
  for (const v of Object.keys(views)) {
    $("view-" + v).hidden = v !== view;
    const link = $("nav-" + v);
    link.classList.toggle("active", v === view);
    if (v === view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  clearInterval(refreshTimer);
  const run = () => views[view].load().catch(err => { if (err.status !== 401) flash(err.message, true); });
  run();
  if (views[view].every) refreshTimer = setInterval(run, views[view].every);
}

// ---------- dashboard ----------

async function loadDashboard() {
  const c = await api("GET", "/api/v1/cluster");
  const names = {};
  for (const n of c.nodes) names[n.id] = n.name || ("node " + n.id);
  $("sum-node").textContent = names[c.node_id] || c.node_id;
  $("sum-leader").textContent = c.leader === null ? "none" : (names[c.leader] || c.leader);
  $("sum-term").textContent = c.term;
  $("sum-commit").textContent = c.commit_index === null ? "–" : c.commit_index;
  $("sum-version").textContent = c.config_version;
  const nodes = $("nodes-table").tBodies[0];
  nodes.replaceChildren(...c.nodes.map(n => el("tr", { "data-node-id": n.id },
    el("td", {}, n.id),
    el("td", {}, n.name, c.leader === n.id ? " " : null, c.leader === n.id ? badge("leader") : null),
    el("td", {}, n.address),
    el("td", {}, badge(n.role)),
    el("td", { class: "raft-state" }, badge(n.raft_state)),
    el("td", {}, n.voter ? "yes" : "learner"),
    el("td", { class: "num" }, n.last_contact_ms === null ? "–" : n.last_contact_ms + " ms"),
  )));
  const vips = $("vips-table").tBodies[0];
  vips.replaceChildren(...(c.vips.length ? c.vips.map(v => el("tr", { "data-vip": v.address },
    el("td", {}, v.address),
    el("td", { class: "vip-owner" }, v.owner === null ? "unassigned" : (names[v.owner] || ("node " + v.owner))),
    el("td", { class: "num" }, v.epoch),
    el("td", { class: "vip-lease" }, v.lease_ms === null ? "–" : (v.lease_ms + " ms"
      + (v.lease_remaining_ms === null ? "" : ", " + v.lease_remaining_ms + " ms left")),
      v.owner_error ? el("div", { class: "vip-error muted" }, "not held by the owner: " + v.owner_error) : null),
  )) : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No VIPs configured."))]));
}

// Live charts: ring buffers per pool, redrawn on every SSE event.
const CHART_POINTS = 120;
const COLORS = ["#2456c7", "#18794e", "#c0262d", "#b25e09", "#7a3fb8", "#0f8a9d", "#8c6d1f", "#d4418e"];
const series = { rps: {}, p99: {}, errors: {} };
const poolColors = {};

function colorOf(pool) {
  if (!poolColors[pool]) poolColors[pool] = COLORS[Object.keys(poolColors).length % COLORS.length];
  return poolColors[pool];
}

function push(map, pool, value) {
  const arr = map[pool] || (map[pool] = []);
  arr.push(value);
  if (arr.length > CHART_POINTS) arr.shift();
}

function drawChart(canvas, data, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 44, right = 8, top = 8, bottom = 18;
  let max = 0;
  for (const arr of Object.values(data)) for (const v of arr) max = Math.max(max, v);
  max = max <= 0 ? 1 : niceCeil(max);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#667085";
  ctx.strokeStyle = "#e4e7ec";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * (1 - i / 4);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
    ctx.fillText(fmtAxis(max * i / 4), 2, y + 4);
  }
  ctx.fillText("last " + CHART_POINTS + " s" + (unit ? " · " + unit : ""), left, h - 4);
  const xStep = (w - left - right) / (CHART_POINTS - 1);
  for (const [pool, arr] of Object.entries(data)) {
    ctx.strokeStyle = colorOf(pool);
    ctx.lineWidth = 2;
    ctx.beginPath();
    const offset = CHART_POINTS - arr.length;
    arr.forEach((v, i) => {
      const x = left + (offset + i) * xStep;
      const y = top + (h - top - bottom) * (1 - v / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function niceCeil(x) {
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function fmtAxis(v) { return v >= 1000 ? (v / 1000).toFixed(1) + "k" : (Math.round(v * 10) / 10).toString(); }

function drawAll() {
  drawChart($("chart-rps"), series.rps, "req/s");
  drawChart($("chart-p99"), series.p99, "ms");
  drawChart($("chart-errors"), series.errors, "err/s");
  const legend = $("chart-legend");
  legend.replaceChildren(...Object.keys(series.rps).map(pool => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = colorOf(pool);
    const last = series.rps[pool][series.rps[pool].length - 1];
    return el("span", { "data-pool": pool }, sw, pool + " (" + fmtNum(last) + " req/s)");
  }));
}

function startStream() {
  const src = new EventSource("/api/v1/events");
  src.addEventListener("open", () => { $("stream-state").textContent = "(live)"; });
  src.addEventListener("error", () => {
    $("stream-state").textContent = "(reconnecting…)";
    // An expired session makes every reconnect fail: check once and go to login.
    fetch("/api/v1/session", { credentials: "same-origin" }).then(r => {
      if (r.status === 401) { src.close(); window.location.assign("/login"); }
    }).catch(() => {});
  });
  src.addEventListener("stats", ev => {
    let snap;
    try { snap = JSON.parse(ev.data); } catch (_) { return; }
    for (const p of snap.pools) {
      push(series.rps, p.pool, p.requests_per_sec);
      push(series.p99, p.pool, p.p99_ms);
      push(series.errors, p.pool, p.errors_per_sec);
    }
    $("stream-state").textContent = "(live, " + new Date(snap.time_ms).toLocaleTimeString() + ")";
    if (state.view === "dashboard") drawAll();
  });
}

// ---------- pools ----------

async function backendAction(pool, address, action, body) {
  const base = "/api/v1/pools/" + encodeURIComponent(pool) + "/backends/" + encodeURIComponent(address) + "/";
  try {
    if (action === "weight") await api("PUT", base + "weight", body);
    else await api("POST", base + action);
    flash(address + " in " + pool + ": " + (action === "weight" ? "weight set to " + body.weight : action + " done"));
    await loadPools();
  } catch (err) {
    if (err.status !== 401) flash(err.message, true);
  }
}

async function loadPools() {
  const pools = await api("GET", "/api/v1/pools");
  const container = $("pools");
  // Keep a weight the operator is typing: skip the refresh while one has focus.
  if (container.contains(document.activeElement) && document.activeElement.type === "number") return;
  container.replaceChildren(...pools.map(p => el("div", { class: "pool", "data-pool": p.name },
    el("h3", {}, p.name, " ", el("span", { class: "muted" }, p.algorithm),
      p.latency.samples ? el("span", { class: "muted pool-latency" },
        " · p50 " + fmtNum(p.latency.p50_ms) + " ms, p99 " + fmtNum(p.latency.p99_ms) + " ms") : null),
    el("table", { "aria-label": "Backends of pool " + p.name },
      el("thead", {}, el("tr", {}, ...["Backend", "Health", "State", "Weight", "Conns", "Req/s", "Errors", "p50", "p95", "p99", "Actions"]
        .map(t => el("th", {}, t)))),
      el("tbody", {}, ...p.backends.map(b => backendRow(p.name, b)))),
  )));
  if (!pools.length) container.replaceChildren(el("p", { class: "muted" }, "No pools configured."));
}

// p50/p95/p99 in ms from the last 10-15 s; "–" when the backend had no traffic.
function latencyCells(l) {
  const title = l.samples + " samples in the last 10-15 s";
  return ["p50", "p95", "p99"].map(q => el("td", { class: "num latency " + q, title },
    l.samples ? fmtNum(l[q + "_ms"]) : "–"));
}

function backendRow(pool, b) {
  const label = b.address + " in " + pool;
  const weightId = "weight-" + pool + "-" + b.address;
  const weight = el("input", { type: "number", min: 0, max: 256, value: b.weight, id: weightId, "aria-label": "Weight of " + label });
  return el("tr", { "data-pool": pool, "data-backend": b.address },
    el("td", {}, b.address, b.id !== b.address ? el("span", { class: "muted" }, " " + b.id) : null),
    el("td", { class: "health" }, badge(b.health)),
    el("td", { class: "admin-state" }, badge(b.admin_state)),
    el("td", { class: "num weight" }, b.weight),
    el("td", { class: "num" }, b.active_connections),
    el("td", { class: "num" }, fmtNum(b.requests_per_sec)),
    el("td", { class: "num" }, fmtNum(b.error_rate * 100) + " %"),
    ...latencyCells(b.latency),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "secondary drain", "aria-label": "Drain " + label, disabled: b.admin_state === "draining",
        onclick: () => backendAction(pool, b.address, "drain") }, "Drain"),
      " ",
      el("button", { type: "button", class: "secondary enable", "aria-label": "Enable " + label, disabled: b.admin_state === "enabled",
        onclick: () => backendAction(pool, b.address, "enable") }, "Enable"),
      " ",
      el("button", { type: "button", class: "danger disable", "aria-label": "Disable " + label, disabled: b.admin_state === "disabled",
        onclick: () => backendAction(pool, b.address, "disable") }, "Disable"),
      " ", weight, " ",
      el("button", { type: "button", class: "secondary set-weight", "aria-label": "Set weight of " + label,
        onclick: () => backendAction(pool, b.address, "weight", { weight: Number(weight.value) }) }, "Set weight"),
    ));
}

// ---------- config ----------

async function loadConfig() {
  const doc = await api("GET", "/api/v1/config");
  const editor = $("config-editor");
  const dirty = state.configText !== "" && editor.value !== state.configText;
  state.configVersion = doc.version;
  state.configText = doc.toml;
  $("config-version").textContent = "version " + doc.version;
  if (!dirty) editor.value = doc.toml;
  renderGutter([]);
}

function renderGutter(problems) {
  const lines = $("config-editor").value.split("\n").length;
  const bad = {};
  for (const p of problems) if (p.line > 0) bad[p.line] = (bad[p.line] ? bad[p.line] + "; " : "") + p.message;
  const gutter = $("config-gutter");
  const parts = [];
  for (let i = 1; i <= lines; i++) {
    parts.push(el("span", { id: "config-line-" + i, class: bad[i] ? "error" : null, title: bad[i] || null }, String(i)));
    if (i < lines) parts.push("\n");
  }
  gutter.replaceChildren(...parts);
  gutter.scrollTop = $("config-editor").scrollTop;
}

function showProblems(problems) {
  const list = $("config-errors");
  list.replaceChildren(...problems.map(p => el("li", {
    "data-line": p.line, "data-column": p.column, tabindex: 0,
    onclick: () => gotoLine(p.line, p.column),
    onkeydown: ev => { if (ev.key === "Enter") gotoLine(p.line, p.column); },
  }, (p.line > 0 ? "line " + p.line + ", column " + p.column + ": " : "") + p.message)));
  renderGutter(problems);
}

function gotoLine(line, column) {
  const editor = $("config-editor");
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, (column || 1) - 1);
  editor.focus();
  editor.setSelectionRange(offset, offset);
  editor.scrollTop = Math.max(0, (line - 5) * 20);
  $("config-gutter").scrollTop = editor.scrollTop;
}

function setStatus(text, ok) {
  const s = $("config-status");
  s.textContent = text;
  s.className = ok === undefined ? "" : (ok ? "ok" : "bad");
}

async function validateConfig() {
  const report = await api("POST", "/api/v1/config/validate", { toml: $("config-editor").value });
  showProblems(report.errors);
  setStatus(report.valid ? "Valid." : report.errors.length + " problem(s) found.", report.valid);
  return report.valid;
}

async function applyConfig() {
  const comment = $("config-comment").value.trim();
  try {
    const ack = await api("PUT", "/api/v1/config", {
      toml: $("config-editor").value, comment: comment || null, base_version: state.configVersion,
    });
    showProblems([]);
    state.configText = "";
    await loadConfig();
    $("config-comment").value = "";
    $("config-diff-output").hidden = true;
    setStatus("Applied: config version " + ack.config_version + ".", true);
  } catch (err) {
    if (err.code === "invalid_config" && Array.isArray(err.details)) {
      showProblems(err.details);
      setStatus("Not applied: " + err.details.length + " problem(s).", false);
    } else if (err.status === 409) {
      setStatus("Not applied: someone changed the config meanwhile. Use \"Diff against current\" after reloading (Discard edits).", false);
    } else if (err.status !== 401) {
      setStatus("Not applied: " + err.message, false);
    }
  }
}

// Line diff (LCS); plenty for config files of a few thousand lines.
function diffLines(a, b) {
  const n = a.length, m = b.length;
  if (n * m > 4e6) return [{ t: "note", s: "(too large to diff in the browser)" }];
  const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ t: "same", s: a[i] }); i++; j++; }
    else if (dp[i + 1][j] >= dp[i][j + 1]) out.push({ t: "del", s: a[i++] });
    else out.push({ t: "add", s: b[j++] });
  }
  while (i < n) out.push({ t: "del", s: a[i++] });
  while (j < m) out.push({ t: "add", s: b[j++] });
  return out;
}

function showDiff() {
  const out = $("config-diff-output");
  const d = diffLines(state.configText.split("\n"), $("config-editor").value.split("\n"));
  const changed = d.filter(x => x.t === "add" || x.t === "del").length;
  out.replaceChildren(...(changed === 0 ? [el("span", {}, "No changes against version " + state.configVersion + ".")]
    : d.map(x => el("span", { class: x.t === "same" ? null : x.t },
      (x.t === "add" ? "+ " : x.t === "del" ? "- " : "  ") + x.s + "\n"))));
  out.hidden = false;
}

// ---------- audit ----------

let auditEntries = [];

async function loadAudit() {
  auditEntries = await api("GET", "/api/v1/audit?limit=1000");
  renderAudit();
}

function renderAudit() {
  const q = $("audit-filter").value.trim().toLowerCase();
  const rows = auditEntries.filter(e => !q || (e.author + " " + e.action + " " + e.summary).toLowerCase().includes(q));
  $("audit-table").tBodies[0].replaceChildren(...(rows.length ? rows.map(e => el("tr", { "data-log-index": e.log_index },
    el("td", {}, fmtTime(e.time_ms)), el("td", {}, e.author), el("td", {}, e.action),
    el("td", {}, e.summary), el("td", { class: "num" }, e.log_index),
  )) : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No entries."))]));
}

// ---------- users & tokens ----------

async function loadUsers() {
  const [users, tokens] = await Promise.all([api("GET", "/api/v1/users"), api("GET", "/api/v1/tokens")]);
  $("users-table").tBodies[0].replaceChildren(...users.map(u => el("tr", { "data-username": u.username },
    el("td", {}, u.username, u.username === state.user ? el("span", { class: "muted" }, " (you)") : null),
    el("td", {}, fmtTime(u.updated_ms)),
    el("td", {}, el("button", { type: "button", class: "danger", "aria-label": "Delete user " + u.username,
      onclick: () => deleteUser(u.username) }, "Delete")),
  )));
  $("tokens-table").tBodies[0].replaceChildren(...(tokens.length ? tokens.map(t => el("tr", { "data-token-id": t.id },
    el("td", {}, el("code", {}, t.id)), el("td", {}, t.name), el("td", {}, t.author), el("td", {}, fmtTime(t.created_ms)),
    el("td", {}, el("button", { type: "button", class: "danger", "aria-label": "Revoke token " + t.name,
      onclick: () => revokeToken(t) }, "Revoke")),
  )) : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No tokens."))]));
}

async function deleteUser(name) {
  if (!window.confirm("Delete user " + name + "?")) return;
  try { await api("DELETE", "/api/v1/users/" + encodeURIComponent(name)); flash("User " + name + " deleted."); await loadUsers(); }
  catch (err) { if (err.status !== 401) flash(err.message, true); }
}

async function revokeToken(t) {
  if (!window.confirm("Revoke token " + t.name + " (" + t.id + ")?")) return;
  try { await api("DELETE", "/api/v1/tokens/" + encodeURIComponent(t.id)); flash("Token revoked."); await loadUsers(); }
  catch (err) { if (err.status !== 401) flash(err.message, true); }
}

// ---------- boot ----------

async function boot() {
  let session;
  try { session = await api("GET", "/api/v1/session"); } catch (_) { return; }
  state.csrf = session.csrf_token;
  state.user = session.username;
  $("whoami").textContent = session.username;

  $("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/api/v1/session"); } catch (_) { /* going to login anyway */ }
    window.location.assign("/login");
  });
  const editor = $("config-editor");
  editor.addEventListener("input", () => renderGutter([]));
  editor.addEventListener("scroll", () => { $("config-gutter").scrollTop = editor.scrollTop; });
  $("config-validate").addEventListener("click", () => validateConfig().catch(e => setStatus(e.message, false)));
  $("config-apply").addEventListener("click", applyConfig);
  $("config-diff").addEventListener("click", showDiff);
  $("config-reset").addEventListener("click", () => {
    state.configText = "";
    showProblems([]);
    setStatus("");
    $("config-diff-output").hidden = true;
    loadConfig().catch(e => setStatus(e.message, false));
  });
  $("audit-filter").addEventListener("input", renderAudit);
  $("audit-refresh").addEventListener("click", () => loadAudit().catch(e => flash(e.message, true)));
  $("user-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const username = $("new-username").value.trim();
    try {
      await api("POST", "/api/v1/users", { username, password: $("new-password").value });
      $("user-form").reset();
      flash("User " + username + " saved.");
      await loadUsers();
    } catch (err) { if (err.status !== 401) flash(err.message, true); }
  });
  $("token-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    try {
      const t = await api("POST", "/api/v1/tokens", { name: $("token-name").value.trim() });
      $("token-form").reset();
      $("token-plaintext").textContent = t.token;
      $("token-created").hidden = false;
      await loadUsers();
    } catch (err) { if (err.status !== 401) flash(err.message, true); }
  });
  window.addEventListener("hashchange", () => {
    // A token shown once disappears when the operator leaves the page.
    $("token-plaintext").textContent = "";
    $("token-created").hidden = true;
    showView();
  });
  window.addEventListener("resize", () => { if (state.view === "dashboard") drawAll(); });
  showView();
  startStream();
}

document.addEventListener("DOMContentLoaded", boot);
