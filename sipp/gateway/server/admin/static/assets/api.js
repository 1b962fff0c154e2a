// Admin API client: JSON over fetch, session cookie, CSRF header on mutating calls.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

let csrf = null;
let csrfHeader = "x-sipp-admin-csrf";

export function setSession(session) {
  csrf = session ? session.csrfToken : null;
  if (session && session.csrfHeader) csrfHeader = session.csrfHeader;
}

export async function call(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers[csrfHeader] = csrf;
  const response = await fetch(`api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data && data.error, data && data.message);
  }
  return data;
}

export const api = {
  session: () => call("GET", "session"),
  login: (password) => call("POST", "session", { password }),
  logout: () => call("DELETE", "session"),
  overview: () => call("GET", "overview"),
  timeseries: () => call("GET", "timeseries"),
  routes: () => call("GET", "routes"),
  targets: () => call("GET", "targets"),
  clients: () => call("GET", "clients"),
  security: () => call("GET", "security"),
  caches: () => call("GET", "caches"),
  flushCache: (name) => call("DELETE", `caches/${encodeURIComponent(name)}`),
  setRateLimit: (settings) => call("PUT", "security/rate-limit", settings),
  block: (client) => call("POST", `security/blocklist/${client}`),
  unblock: (client) => call("DELETE", `security/blocklist/${client}`),
  setConcurrency: (limit) => call("PUT", "controls/concurrency", { limit }),
  setTarget: (name, enabled) => call("PUT", `controls/targets/${encodeURIComponent(name)}`, { enabled }),
  setTokenLimit: (kind, name, tokensPerMinute) =>
    call("PUT", `controls/token-limits/${kind}/${encodeURIComponent(name)}`, { tokensPerMinute }),
};
