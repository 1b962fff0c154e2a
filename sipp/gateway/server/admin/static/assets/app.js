// Sipp gateway admin dashboard: login, live polling, security and traffic controls.
import { api, ApiError, setSession } from "./api.js";
import { barChart, densify } from "./charts.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let timer = null;
let securityState = null;
let targetNames = [];

function show(view) {
  $("login-view").hidden = view !== "login";
  $("dashboard-view").hidden = view !== "dashboard";
  document.body.dataset.view = view;
}

function status(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function button(text, onClick, className = "small") {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

function fillRows(tableId, rows, makeRow) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows.map(makeRow));
}

function formatUptime(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return `up ${h}h ${m}m ${seconds % 60}s`;
}

// ---------------------------------------------------------------- session
function onSessionLost(message) {
  stopPolling();
  setSession(null);
  show("login");
  $("login-error").textContent = message;
  $("password").focus();
}

async function guarded(action, success) {
  try {
    const result = await action();
    if (success) status(success);
    return result;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      onSessionLost("Your session has expired. Sign in again.");
    } else {
      status(err.message, true);
    }
    return null;
  }
}

async function login(event) {
  event.preventDefault();
  const button = $("login-button");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const session = await api.login($("password").value);
    $("password").value = "";
    startDashboard(session);
  } catch (err) {
    $("login-error").textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  await guarded(() => api.logout());
  onSessionLost("Signed out.");
}

function startDashboard(session) {
  setSession(session);
  show("dashboard");
  status("");
  refresh();
  stopPolling();
  timer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

// ---------------------------------------------------------------- rendering
function renderOverview(o) {
  const t = o.metrics.totals;
  $("total-requests").textContent = t.requests;
  $("total-errors").textContent = t.errors;
  $("total-active").textContent = t.activeRequests;
  $("total-tokens").textContent = t.totalTokens;
  $("latency").textContent = `${t.p50LatencyMs} / ${t.p90LatencyMs} / ${t.p99LatencyMs}`;
  $("total-rate-limited").textContent = t.rateLimitHits;
  $("total-blocked").textContent = t.blocklistHits;
  $("uptime").textContent = formatUptime(o.uptimeSeconds);
  const state = o.draining ? "draining" : o.ready ? "ready" : "loading";
  // with [state] backend = "redis" several replicas share controls: say which one answers
  const r = o.replica || {};
  const replica = r.sharedState === "redis" ? ` · replica ${r.id}` : "";
  const degraded = r.degraded ? " · degraded: shared state unavailable" : "";
  $("gateway-state").textContent = `${state} · v${o.version}${replica}${degraded}`;
  $("gateway-state").title = r.degraded || "";
  $("gateway-state").dataset.state = state;
  const c = o.controls.concurrency;
  $("conc-active").textContent = `${c.active} active, limit ${c.limit ?? "unbounded"}`;
  if (document.activeElement !== $("conc-limit")) $("conc-limit").value = c.limit ?? "";
}

function renderTargets(data) {
  const metrics = Object.fromEntries(data.metrics.map((m) => [m.name, m]));
  targetNames = data.targets.map((t) => t.name);
  fillRows("targets", data.targets, (t) => {
    const tr = document.createElement("tr");
    tr.dataset.target = t.name;
    const m = metrics[t.name] || { requests: 0, totalTokens: 0 };
    const backend = t.backend ? `${t.backend.selected ?? t.backend.requested} (${t.backend.reason})` : t.providerBaseUrl || "provider default";
    const state = t.enabled ? t.status : "disabled";
    tr.append(cell(t.name), cell(t.kind), cell(t.model), cell(backend), cell(state, `state-${state}`),
      cell(m.requests), cell(m.totalTokens), cell(t.tokensPerMinute ?? "none"));
    const td = document.createElement("td");
    td.append(button(t.enabled ? "Disable" : "Enable", () =>
      guarded(async () => renderTargets(await api.setTarget(t.name, !t.enabled)),
        `${t.enabled ? "Disabled" : "Enabled"} target ${t.name}`)));
    tr.append(td);
    return tr;
  });
  renderDeployments(data.targets.filter((t) => t.routing));
}

// Routed targets: one row per deployment (health, cooldown, load) and the fallback chain.
function renderDeployments(routed) {
  $("routing").hidden = routed.length === 0;
  const rows = routed.flatMap((t) => t.routing.deployments.map((d, i) => ({ t, d, i })));
  fillRows("deployments", rows, ({ t, d, i }) => {
    const tr = document.createElement("tr");
    tr.dataset.deployment = d.name;
    const r = t.routing;
    const chain = [t.name, ...r.fallbacks].join(" → ");
    const cooldown = d.cooldownRemainingSeconds > 0 ? `${d.cooldownRemainingSeconds.toFixed(1)} s` : "—";
    tr.append(cell(i === 0 ? t.name : ""), cell(i === 0 ? `${r.strategy}, ${r.retries} retries` : ""),
      cell(d.name), cell(d.kind), cell(d.health, `state-${d.health}`), cell(cooldown),
      cell(d.inFlight), cell(`${d.served} / ${d.attempts}`), cell(d.failures),
      cell(d.latencyMs === null ? null : `${Math.round(d.latencyMs)} ms`),
      cell(i === 0 ? chain : ""));
    return tr;
  });
}

// Response caches (hit rate, size, evictions, route-on-hit counts, a flush control) and
// RAG collections (status and size).
function renderCaches(data) {
  $("caching").hidden = data.caches.length === 0 && data.collections.length === 0;
  fillRows("caches", data.caches, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.cache = c.name;
    const rate = c.hitRate === null ? null : `${(c.hitRate * 100).toFixed(1)} %`;
    const routed = c.routed.map((r) => `${r.on} → ${r.target}: ${r.count}`).join(", ");
    tr.append(cell(c.name), cell(c.mode), cell(c.scope), cell(rate),
      cell(`${c.hits} / ${c.misses} / ${c.bypasses}`), cell(c.entries), cell(c.bytes),
      cell(c.evictions), cell(routed || null));
    const td = document.createElement("td");
    td.append(button("Flush", () =>
      guarded(async () => renderCaches(await api.flushCache(c.name)), `Flushed cache ${c.name}`)));
    tr.append(td);
    return tr;
  });
  fillRows("collections", data.collections, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.collection = c.name;
    tr.append(cell(c.name), cell(c.error ? `${c.status}: ${c.error}` : c.status, `state-${c.status}`),
      cell(c.documents), cell(c.chunks), cell(c.searches), cell(c.embedding_target));
    return tr;
  });
}

function renderClients(data) {
  fillRows("clients", data.clients, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.client = c.client;
    tr.append(cell(c.client), cell(c.caller), cell(c.requests), cell(c.totalTokens), cell(c.errors));
    const td = document.createElement("td");
    const blocked = securityState && securityState.blocklist.some((b) => b.client === c.client);
    if (!blocked) td.append(button("Block", () => block(c.client)));
    tr.append(td);
    return tr;
  });
  fillRows("recent", data.recent.slice(0, 30), (e) => {
    const tr = document.createElement("tr");
    const time = new Date(e.unixSeconds * 1000).toLocaleTimeString();
    tr.append(cell(time), cell(e.operation), cell(e.client), cell(e.caller), cell(e.target),
      cell(e.status, e.status >= 400 ? "bad" : "good"), cell(e.latencyMs), cell(e.totalTokens),
      cell(e.rejection || (e.streaming ? "stream" : "")));
    return tr;
  });
}

function renderSecurity(data) {
  const s = data.security;
  securityState = s;
  $("blocklist").replaceChildren(...s.blocklist.map((b) => {
    const li = document.createElement("li");
    li.dataset.entry = b.client;
    const span = document.createElement("span");
    span.textContent = `${b.client} · ${b.ageSeconds}s ago`;
    li.append(span, button("Unblock", () => unblock(b.client)));
    return li;
  }));
  if (!s.blocklist.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "No blocked clients.";
    $("blocklist").append(li);
  }
  const form = $("rate-form");
  if (!form.contains(document.activeElement)) {
    $("rl-enabled").checked = s.rateLimit.enabled;
    $("rl-rpm").value = s.rateLimit.requestsPerMinute;
    $("rl-burst").value = s.rateLimit.burst;
  }
  $("token-limits").replaceChildren(...s.tokenLimits.map((l) => {
    const li = document.createElement("li");
    li.textContent = `${l.kind} ${l.name}: ${l.available} of ${l.tokensPerMinute} tokens/min left`;
    return li;
  }));
  if (!$("token-form").contains(document.activeElement)) fillLimitNames(s);
}

function fillLimitNames(s) {
  const names = $("tl-kind").value === "caller" ? s.callers : targetNames;
  const current = $("tl-name").value;
  $("tl-name").replaceChildren(...names.map((n) => {
    const o = document.createElement("option");
    o.value = n;
    o.textContent = n;
    return o;
  }));
  if (names.includes(current)) $("tl-name").value = current;
}

function renderSeries(data) {
  const series = densify(data.timeseries, data.bucketSeconds);
  barChart($("chart-requests"), series.map((b) => (b ? b.requests : 0)));
  barChart($("chart-tokens"), series.map((b) => (b ? b.totalTokens : 0)));
  barChart($("chart-latency"), series.map((b) => (b ? b.averageLatencyMs : 0)));
}

function renderRoutes(data) {
  fillRows("routes", data.routes, (r) => {
    const tr = document.createElement("tr");
    tr.append(cell(r.name), cell(r.path), cell(r.listener));
    return tr;
  });
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [overview, targets, security, clients, series, routes, caches] = await Promise.all([
      api.overview(), api.targets(), api.security(), api.clients(), api.timeseries(), api.routes(),
      api.caches(),
    ]);
    renderOverview(overview);
    renderTargets(targets);
    renderSecurity(security);
    renderClients(clients);
    renderSeries(series);
    renderRoutes(routes);
    renderCaches(caches);
    document.body.dataset.refreshed = String(Date.now());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      onSessionLost("Your session has expired. Sign in again.");
    } else {
      status(`Refresh failed: ${err.message}`, true);
    }
  } finally {
    refreshing = false;
  }
}

// ---------------------------------------------------------------- controls
async function block(client) {
  const result = await guarded(() => api.block(client), `Blocked ${client}`);
  if (result) {
    renderSecurity(result);
    refresh();
  }
}

async function unblock(client) {
  const result = await guarded(() => api.unblock(client), `Unblocked ${client}`);
  if (result) {
    renderSecurity(result);
    refresh();
  }
}

function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

function bind() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("blocklist-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("block-input").value.trim();
    if (value) block(value).then(() => { $("block-input").value = ""; });
  });
  $("rate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const settings = { enabled: $("rl-enabled").checked, requestsPerMinute: Number($("rl-rpm").value),
      burst: Number($("rl-burst").value) };
    const result = await guarded(() => api.setRateLimit(settings),
      `Rate limit ${settings.enabled ? "on" : "off"}: ${settings.requestsPerMinute}/min, burst ${settings.burst}`);
    if (result) { document.activeElement.blur(); renderSecurity(result); }
  });
  $("tl-kind").addEventListener("change", () => securityState && fillLimitNames(securityState));
  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = $("tl-kind").value;
    const name = $("tl-name").value;
    const value = numberOrNull($("tl-value"));
    const result = await guarded(() => api.setTokenLimit(kind, name, value),
      `Token limit of ${kind} ${name}: ${value ?? "none"}`);
    if (result) { document.activeElement.blur(); renderSecurity(result); refresh(); }
  });
  $("conc-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const limit = numberOrNull($("conc-limit"));
    const result = await guarded(() => api.setConcurrency(limit),
      `Concurrency limit: ${limit ?? "unbounded"}`);
    if (result) { document.activeElement.blur(); refresh(); }
  });
}

async function boot() {
  bind();
  try {
    startDashboard(await api.session());
  } catch (err) {
    show("login");
    if (!(err instanceof ApiError && err.status === 401)) {
      $("login-error").textContent = err.message;
    }
  }
}

boot();
