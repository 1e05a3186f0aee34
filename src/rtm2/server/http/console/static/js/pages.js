// The pages. Each draws into `root` and returns a function that stops its timers and streams.
import { appPath, call, get } from "./api.js";
import { draw } from "./chart.js";
import { ago, field, fill, fromB64, h, hex, table, when } from "./dom.js";
import * as live from "./live.js";
import { ctx, report, status } from "./state.js";

function every(ms, f) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      await f();
    } catch (err) {
      report(err);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function input(attrs = {}) {
  return h("input", { type: "text", autocomplete: "off", ...attrs });
}

function select(options, attrs = {}) {
  return h("select", attrs, options.map(([v, label]) => h("option", { value: v }, label ?? v)));
}

function channelLink(type, name) {
  return h("a", { href: `#/channel/${type}/${encodeURIComponent(name)}` }, name);
}

let sections = 0;
/** A section named by its heading (a landmark: "region" with that name). */
function section(title, attrs, ...children) {
  const id = `s${++sections}`;
  return h("section", { ...attrs, "aria-labelledby": id }, h("h3", { id }, title), ...children);
}

const rate = (v) => (v === undefined ? "" : v.toFixed(1));

// --- Overview -----------------------------------------------------------------------------

function overview(root) {
  const nodes = h("div");
  const apps = h("div");
  const charts = {
    connections: h("div", { class: "chart" }),
    messages: h("div", { class: "chart" }),
    errors: h("div", { class: "chart" }),
  };
  const svg = {};
  for (const [k, el] of Object.entries(charts)) {
    svg[k] = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    el.append(svg[k]);
  }
  root.append(
    h("h2", {}, "Overview"),
    section("Nodes", {}, nodes),
    section("Apps", {}, apps),
    section("Last 10 minutes (this node; rates over 5 s)", { class: "charts" },
      h("figure", {}, h("figcaption", {}, "Connections"), charts.connections),
      h("figure", {}, h("figcaption", {}, "Messages/s ", h("span", { class: "key in" }, "in"), " ", h("span", { class: "key out" }, "out")), charts.messages),
      h("figure", {}, h("figcaption", {}, "Errors/s"), charts.errors)),
  );
  let info = null;
  let channelCounts = {};

  function rates() {
    const s = live.series();
    const last = (xs) => (xs.length ? xs[xs.length - 1][1] : undefined);
    return { s, in: last(s.in), out: last(s.out), errors: last(s.errors) };
  }

  function render() {
    const sample = live.latest();
    const r = rates();
    const now = sample ? sample.time : Date.now() / 1000;
    const rows = [];
    if (info) {
      // Every live node as it told at its last sweep; this one from the live feed.
      for (const n of info.nodes) {
        const here = n.id === info.node.id;
        rows.push([
          here ? `${n.id} (this node)` : n.id, n.address, ago(now - n.started), n.version || "?",
          String(here && sample ? sample.connections : n.connections),
          here ? rate(r.in) : rate(n.messages_per_second), here ? rate(r.out) : rate(n.delivered_per_second ?? 0),
        ]);
      }
    } else if (sample) {
      rows.push([sample.node, "", "", "", String(sample.connections), rate(r.in), rate(r.out)]);
    }
    fill(nodes, table("", ["Node", "Address", "Uptime", "Version", "Connections", "Messages/s in", "Messages/s out"], rows, "waiting for the live feed…"));
    if (info) {  // admin: every app, on every node
      const appRows = info.apps.map((a) => [a.app_id, String(a.users_online), String(a.channels), rate(a.messages_per_second), rate(a.delivered_per_second ?? 0)]);
      fill(apps, table("", ["App", "Users online (all nodes)", "Live channels (all nodes)", "Messages/s in (all nodes)", "Messages/s out (all nodes)"], appRows, "no apps"));
    } else {
      const appRows = (sample ? sample.apps : []).map((a) => [a.app_id, String(a.users_online), String(channelCounts[a.app_id] ?? "")]);
      fill(apps, table("", ["App", "Users online (this node)", "Live channels (all nodes)"], appRows, "waiting for the live feed…"),
        h("p", { class: "hint" }, "Messages/s are counted per node, not per app: see the node table."));
    }
    draw(svg.connections, "Connections", [{ name: "connections", class: "c1", points: r.s.connections }], now, live.SPAN);
    draw(svg.messages, "Messages per second", [
      { name: "in", class: "in", points: r.s.in },
      { name: "out", class: "out", points: r.s.out },
    ], now, live.SPAN);
    draw(svg.errors, "Errors per second", [{ name: "errors", class: "err", points: r.s.errors }], now, live.SPAN);
  }

  const stopInfo = every(5000, async () => {
    if (ctx.admin) {
      info = await get("/v1/info");
      channelCounts = Object.fromEntries(info.apps.map((a) => [a.app_id, a.channels]));
    } else {
      const page = await get(`${appPath(ctx.app, "channels")}?limit=1000`);
      channelCounts = { [ctx.app]: page.next_cursor ? "1000+" : page.channels.length };
    }
    render();
  });
  const unlisten = live.onSample(render);
  render();
  return () => {
    stopInfo();
    unlisten();
  };
}

// --- Channels -----------------------------------------------------------------------------

const listing = { prefix: "", type: "", limit: 50, cursors: [""] };

function channels(root) {
  const prefix = input({ value: listing.prefix, placeholder: "room-", type: "search" });
  const type = select([["", "all"], ["message"], ["stream"]]);
  type.value = listing.type;
  const limit = select([["25"], ["50"], ["100"], ["200"]]);
  limit.value = String(listing.limit);
  const prev = h("button", { type: "button" }, "Previous page");
  const next = h("button", { type: "button" }, "Next page");
  const where = h("span", { class: "hint" });
  const list = h("div", { "aria-live": "off" });
  let nextCursor = "";
  const restart = () => {
    listing.cursors = [""];
    load();
  };
  prefix.addEventListener("input", () => {
    listing.prefix = prefix.value;
    restart();
  });
  type.addEventListener("change", () => {
    listing.type = type.value;
    restart();
  });
  limit.addEventListener("change", () => {
    listing.limit = Number(limit.value);
    restart();
  });
  prev.addEventListener("click", () => {
    if (listing.cursors.length > 1) listing.cursors.pop();
    load();
  });
  next.addEventListener("click", () => {
    if (nextCursor) listing.cursors.push(nextCursor);
    load();
  });
  root.append(
    h("h2", {}, "Channels"),
    h("form", { class: "controls", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Name starts with", prefix), field("Type", type), field("Per page", limit)),
    list,
    h("div", { class: "pager" }, prev, next, where),
  );
  async function load() {
    const cursor = listing.cursors[listing.cursors.length - 1];
    const q = new URLSearchParams({ limit: String(listing.limit), prefix: listing.prefix, cursor });
    if (listing.type) q.set("type", listing.type);
    const page = await get(`${appPath(ctx.app, "channels")}?${q}`);
    nextCursor = page.next_cursor;
    prev.disabled = listing.cursors.length <= 1;
    next.disabled = !nextCursor;
    fill(where, `page ${listing.cursors.length}`);
    fill(list, table("", ["Channel", "Type", "Users"],
      page.channels.map((c) => [channelLink(c.type, c.channel), c.type, String(c.users)]), "no live channel"));
  }
  return every(1000, load);
}

// --- Channel detail -----------------------------------------------------------------------

function channel(root, [type, name]) {
  if (!["message", "stream"].includes(type) || !name) {
    root.append(h("p", { class: "error" }, "No such channel page."));
    return null;
  }
  const base = appPath(ctx.app, "channels", type, name);
  const members = h("div");
  const metadata = h("div");
  const locks = h("div");
  const topics = h("div");
  const tailList = h("ol", { class: "tail", "aria-live": "off" });
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
  const format = select([["text"], ["hex"]]);
  const keep = select([["50"], ["100"], ["500"]]);
  keep.value = "100";
  const tailState = h("span", { class: "hint" });
  root.append(
    h("h2", {}, `${type} channel `, h("q", { class: "name" }, name)),
    h("p", {}, h("a", { href: "#/channels" }, "All channels"), " · ",
      h("a", { href: `#/actions/${type}/${encodeURIComponent(name)}` }, "Actions on this channel")),
    section("Members", {}, members),
    ...(type === "stream" ? [section("Topics", {}, topics)] : []),
    section("Metadata", {}, metadata),
    section("Locks", {}, locks),
    section("Live tail", {},
      h("div", { class: "controls" }, pause, field("Payload as", format), field("Keep last", keep), tailState),
      tailList),
  );

  async function loadMembers() {
    const users = [];
    let page = "";
    let total = 0;
    do {
      const r = await get(`${base}/presence?include_state=true&page=${encodeURIComponent(page)}`);
      users.push(...r.users);
      total = r.total;
      page = r.next_page;
    } while (page && users.length < 1000);
    fill(members, table(`${total} present`, ["User", "State"], users.map((u) => [u.user_id,
      Object.keys(u.state).length ? h("dl", { class: "state" }, Object.entries(u.state).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : ""]), "nobody"));
  }

  async function loadStorage() {
    const md = await get(`${base}/metadata`);
    fill(metadata, table(`major revision ${md.major_revision}`, ["Key", "Value", "Revision", "Author", "Updated"],
      md.items.map((i) => [i.key, h("span", { class: "value" }, i.value), String(i.revision), i.author, i.update_ts ? when(i.update_ts / 1000) : ""]), "no item"));
    const lk = await get(`${base}/locks`);
    const w = await get(`${base}/lock-waiters`);
    const waiting = Object.fromEntries(w.waiters.map((x) => [x.lock, x.users]));
    fill(locks, table("", ["Lock", "Owner", "TTL (s)", "Waiters"], lk.locks.map((l) => [l.name, l.owner || "(free)", String(l.ttl), (waiting[l.name] || []).join(", ")]), "no lock"),
      h("p", { class: "hint" }, `Waiters: those waiting through node ${w.node} (each node queues its own sessions' requests).`));
  }

  // Topics: those seen in the tail, and any looked up, with their publishers from the API.
  const seen = new Set();
  const lookup = input({ placeholder: "topic name" });
  async function loadTopics() {
    if (type !== "stream") return;
    const rows = [];
    for (const t of [...seen].sort()) {
      const r = await get(`${appPath(ctx.app, "channels", "stream", name, "topics", t, "publishers")}`);
      rows.push([t, r.publishers.join(", ")]);
    }
    fill(topics, h("form", { class: "controls", onsubmit: (e) => {
      e.preventDefault();
      if (lookup.value) seen.add(lookup.value);
      lookup.value = "";
      loadTopics().catch(report);
    } }, field("Look a topic up", lookup), h("button", { type: "submit" }, "Add")),
    table("topics seen in the tail or looked up", ["Topic", "Publishers"], rows, "none yet"));
  }

  // The tail: the last N messages, kept while paused and shown on resume.
  const messages = [];
  let paused = false;
  let scheduled = false;
  function renderTail() {
    scheduled = false;
    if (paused) return;
    const n = Number(keep.value);
    messages.splice(0, Math.max(0, messages.length - n));
    fill(tailList, messages.slice().reverse().map((m) => {
      const bytes = fromB64(m.payload_b64);
      const shown = format.value === "hex" || m.text === null ? hex(bytes) : m.text;
      return h("li", {},
        h("span", { class: "meta" }, new Date(m.timestamp).toLocaleTimeString(), " ",
          m.topic ? `[${m.topic}] ` : "", m.publisher, m.custom_type ? ` (${m.custom_type})` : "", ` #${m.offset}`),
        h("code", { class: "payload" }, shown));
    }));
  }
  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(renderTail);
    }
  };
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    schedule();
  });
  format.addEventListener("change", schedule);
  keep.addEventListener("change", schedule);
  const source = new EventSource(`${base}/tail`);
  source.addEventListener("ready", () => fill(tailState, "tailing"));
  source.addEventListener("error", () => fill(tailState, "reconnecting…"));
  source.addEventListener("dropped", () => fill(tailState, "dropped (too slow); reconnecting…"));
  source.addEventListener("message", (e) => {
    const m = JSON.parse(e.data);
    messages.push(m);
    if (messages.length > 1000) messages.shift();
    if (m.topic && !seen.has(m.topic)) {
      seen.add(m.topic);
      loadTopics().catch(report);
    }
    schedule();
  });

  const stops = [every(2000, loadMembers), every(3000, loadStorage), every(5000, loadTopics)];
  return () => {
    source.close();
    for (const s of stops) s();
  };
}

// --- Users --------------------------------------------------------------------------------

function users(root, [initial]) {
  const user = input({ value: initial || "", required: true, placeholder: "user id" });
  const found = h("div");
  const kickArea = h("div");
  root.append(
    h("h2", {}, "Users"),
    h("form", { class: "controls", role: "search", onsubmit: (e) => {
      e.preventDefault();
      lookUp().catch(report);
    } }, field("User id", user), h("button", { type: "submit" }, "Find")),
    found, kickArea);

  async function lookUp() {
    const id = user.value;
    if (!id) return;
    const u = await get(appPath(ctx.app, "users", id));
    fill(found, table(`user ${id}`, ["Online", "Node", "Since", "Where now"], [[
      u.online ? "online" : "offline", u.node ?? (u.online ? "another node" : ""),
      u.since ? when(u.since) : "",
      h("ul", { class: "inline" }, u.channels.map((c) => h("li", {}, channelLink(c.type, c.channel), ` (${c.type})`))),
    ]]));
    showKick(id);
  }

  function showKick(id) {
    const reason = input({ value: "" });
    const ban = h("input", { type: "number", min: "0", max: String(30 * 86400), value: "0" });
    const ask = h("button", { type: "submit" }, "Kick…");
    const confirmArea = h("div", { role: "alert" });
    const form = h("form", { class: "controls", onsubmit: (e) => {
      e.preventDefault();
      const confirmBtn = h("button", { type: "button", class: "danger" }, `Kick ${id}`);
      const cancel = h("button", { type: "button" }, "Cancel");
      confirmBtn.addEventListener("click", async () => {
        try {
          const r = await call("POST", appPath(ctx.app, "users", id, "kick"), { reason: reason.value, ban_seconds: Number(ban.value) });
          status(r.kicked ? `${id} kicked` : `${id} had no session (the ban applies anyway)`);
          fill(confirmArea);
          lookUp().catch(report);
        } catch (err) {
          report(err);
        }
      });
      cancel.addEventListener("click", () => fill(confirmArea));
      fill(confirmArea, h("p", {}, `End ${id}'s session${Number(ban.value) ? ` and refuse its logins for ${ban.value} s` : ""}?`), confirmBtn, " ", cancel);
      confirmBtn.focus();
    } }, field("Reason", reason), field("Ban (seconds)", ban), ask);
    fill(kickArea, h("h3", {}, "Kick"), form, confirmArea);
  }
  if (initial) lookUp().catch(report);
  return null;
}

// --- Actions ------------------------------------------------------------------------------

function actions(root, [ctype, cname]) {
  // Publish
  const pubKind = select([["channel", "message channel"], ["user", "user (peer message)"]]);
  const pubTo = input({ required: true, value: ctype === "message" ? cname || "" : "" });
  const pubText = h("textarea", { rows: "3", required: true });
  const pubBinary = h("input", { type: "checkbox" });
  const pubCustom = input();
  const pubFrom = input({ value: "server" });
  const publish = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    const body = { custom_type: pubCustom.value, publisher: pubFrom.value };
    if (pubBinary.checked) body.message_b64 = pubText.value.trim();
    else body.message = pubText.value;
    const path = pubKind.value === "channel" ? appPath(ctx.app, "channels", pubTo.value, "messages") : appPath(ctx.app, "users", pubTo.value, "messages");
    try {
      await call("POST", path, body);
      status(`published to ${pubTo.value}`);
    } catch (err) {
      report(err);
    }
  } }, field("To", pubKind), field("Name", pubTo), field("Message", pubText),
  field("Base64 (binary message)", pubBinary), field("Custom type", pubCustom), field("Publisher", pubFrom),
  h("button", { type: "submit" }, "Publish"));

  // Metadata
  const mdKind = select([["message", "message channel"], ["stream", "stream channel"], ["user", "user"]]);
  if (ctype) mdKind.value = ctype;
  const mdName = input({ required: true, value: cname || "" });
  const mdOp = select([["PUT", "set"], ["PATCH", "update (existing items only)"], ["DELETE", "remove"]]);
  const mdKey = input({ required: true });
  const mdValue = input();
  const mdRev = h("input", { type: "number", value: "-1", min: "-1" });
  const mdMajor = h("input", { type: "number", value: "-1", min: "-1" });
  const mdAuthor = h("input", { type: "checkbox", checked: true });
  const mdResult = h("div");
  const meta = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    const path = mdKind.value === "user" ? appPath(ctx.app, "users", mdName.value, "metadata") : appPath(ctx.app, "channels", mdKind.value, mdName.value, "metadata");
    const item = { key: mdKey.value, revision: Number(mdRev.value) };
    if (mdOp.value !== "DELETE") item.value = mdValue.value;
    const body = { items: [item], major_revision: Number(mdMajor.value) };
    if (mdOp.value !== "DELETE") Object.assign(body, { record_author: mdAuthor.checked, record_ts: true });
    try {
      const r = await call(mdOp.value, path, body);
      status(`metadata of ${mdName.value} written`);
      fill(mdResult, table(`now at major revision ${r.major_revision}`, ["Key", "Value", "Revision", "Author"], r.items.map((i) => [i.key, i.value, String(i.revision), i.author])));
    } catch (err) {
      report(err);
    }
  } }, field("Of", mdKind), field("Name", mdName), field("Operation", mdOp), field("Key", mdKey), field("Value", mdValue),
  field("Item revision", mdRev, "-1 any, 0 only if new, n only at n"), field("Set's major revision", mdMajor, "-1 any"),
  field("Record the author", mdAuthor), h("button", { type: "submit" }, "Write"), mdResult);

  // Locks
  const lkType = select([["message"], ["stream"]]);
  if (ctype) lkType.value = ctype;
  const lkChannel = input({ required: true, value: cname || "" });
  const lkName = input({ required: true });
  const lkOwner = input({ placeholder: "the user holding it" });
  const lkOp = select([["revoke"], ["remove"], ["set"]]);
  const lkTtl = h("input", { type: "number", value: "30", min: "10", max: "300" });
  const lock = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    const path = appPath(ctx.app, "channels", lkType.value, lkChannel.value, "locks", lkName.value);
    try {
      if (lkOp.value === "revoke") await call("POST", `${path}/revoke`, { owner: lkOwner.value });
      else if (lkOp.value === "remove") await call("DELETE", path);
      else await call("PUT", path, { ttl: Number(lkTtl.value) });
      status(`lock ${lkName.value}: ${lkOp.value} done`);
    } catch (err) {
      report(err);
    }
  } }, field("Channel type", lkType), field("Channel", lkChannel), field("Lock", lkName), field("Action", lkOp),
  field("Owner (revoke)", lkOwner), field("TTL in s (set)", lkTtl), h("button", { type: "submit" }, "Apply"));

  root.append(h("h2", {}, "Actions"),
    section("Publish", { class: "card" }, publish),
    section("Metadata", { class: "card" }, meta),
    section("Locks", { class: "card" }, lock));
  return null;
}

// --- Apps ---------------------------------------------------------------------------------

function apps(root) {
  root.append(h("h2", {}, "Apps"), h("p", { class: "hint" }, "Limits and policies, read-only: they come from the server's configuration."));
  const list = h("div");
  root.append(list);
  (async () => {
    for (const app of ctx.me.apps) {
      const s = await get(appPath(app, "settings"));
      list.append(section(app, { class: "card" },
        table("policies", ["Setting", "Value"], [
          ["stream_join_policy", s.stream_join_policy], ["user_metadata_write", s.user_metadata_write],
          ["lock_admin", s.lock_admin], ["certificates", String(s.certificates)], ["api_keys", String(s.api_keys)]]),
        table("limits", ["Limit", "Value"], Object.entries(s.limits).map(([k, v]) => [k, String(v)]))));
    }
  })().catch(report);
  return null;
}

export const pages = { overview, channels, channel, users, actions, apps };
