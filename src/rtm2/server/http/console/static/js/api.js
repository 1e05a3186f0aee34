// The HTTP API, called with the console's session cookie; writes echo the CSRF token.

let csrf = "";

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.reason ? `${body.reason} (HTTP ${status}, code ${body.code})` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => call("GET", path);

/** /v1/apps/{app}/... with each part escaped. */
export function appPath(app, ...parts) {
  return ["/v1/apps", app, ...parts].map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join("/");
}
