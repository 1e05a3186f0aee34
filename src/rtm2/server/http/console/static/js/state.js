// What every page shares: who is logged in, the app shown, and the status line.
import { ApiError } from "./api.js";
import { h, fill } from "./dom.js";

export const ctx = {
  me: null, // {owner, apps, csrf}
  app: "", // the app shown
  get admin() {
    return this.me !== null && this.me.owner === "*";
  },
};

export function status(text, kind = "info") {
  fill(document.getElementById("status"), text ? h("p", { class: kind }, text) : null);
}

export function report(err) {
  if (err instanceof ApiError && err.status === 401 && ctx.me !== null) {
    // The session ended (expired, logged out elsewhere, the node restarted): log in again.
    window.dispatchEvent(new Event("rtm2-logged-out"));
    return;
  }
  status(err instanceof ApiError ? err.message : String(err), "error");
}
