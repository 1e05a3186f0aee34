// The console: log in, then one page at a time, chosen by the URL's #fragment.
import { ApiError, call, get, setCsrf } from "./api.js";
import { h, fill } from "./dom.js";
import * as live from "./live.js";
import { pages } from "./pages.js";
import { ctx, report, status } from "./state.js";

const $ = (id) => document.getElementById(id);

let cleanup = null;

function showLogin() {
  ctx.me = null;
  live.stop();
  $("nav").hidden = true;
  $("who").hidden = true;
  $("page").hidden = true;
  $("login").hidden = false;
  $("login-key").focus();
}

function startLive() {
  live.start(ctx.admin ? "/v1/live" : `/v1/apps/${encodeURIComponent(ctx.app)}/live`);
}

function loggedIn(me) {
  ctx.me = me;
  setCsrf(me.csrf);
  const kept = sessionStorage.getItem("rtm2-app");
  ctx.app = me.apps.includes(kept) ? kept : me.apps[0] || "";
  const select = $("app-select");
  fill(select, me.apps.map((a) => h("option", { value: a }, a)));
  select.value = ctx.app;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("page").hidden = false;
  startLive();
  if (!location.hash || location.hash === "#") location.hash = "#/overview";
  else route();
}

function route() {
  if (!ctx.me) return;
  if (cleanup) cleanup();
  cleanup = null;
  status("");
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = pages[name] || pages.overview;
  for (const a of document.querySelectorAll("#nav a")) {
    const current = a.getAttribute("href") === `#/${name}` || (name === "channel" && a.getAttribute("href") === "#/channels");
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = fill($("page"));
  try {
    cleanup = page(root, rest.map(decodeURIComponent)) || null;
  } catch (err) {
    report(err);
  }
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  fill($("login-error"));
  try {
    const me = await call("POST", "/console/login", { key: $("login-key").value });
    $("login-key").value = "";
    loggedIn(me);
  } catch (err) {
    fill($("login-error"), err instanceof ApiError && err.status === 401 ? "Wrong key: not logged in." : String(err));
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await call("POST", "/console/logout");
  } catch (err) {
    report(err);
  }
  if (cleanup) cleanup();
  cleanup = null;
  showLogin();
});

$("app-select").addEventListener("change", (e) => {
  ctx.app = e.target.value;
  sessionStorage.setItem("rtm2-app", ctx.app);
  if (!ctx.admin) startLive();
  route();
});

window.addEventListener("hashchange", route);
window.addEventListener("rtm2-logged-out", () => {
  if (cleanup) cleanup();
  cleanup = null;
  showLogin();
  status("The session ended: log in again.", "error");
});

(async () => {
  try {
    loggedIn(await get("/console/session"));
  } catch {
    showLogin();
  }
})();
