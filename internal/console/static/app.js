// The sandboxd console. Everything it shows comes from the public API.
// Output is code's, and code is hostile: it is only ever put in the page
// as text (textContent, text nodes), as data: images, or as srcdoc of a
// frame sandboxed without scripts. Never innerHTML.
"use strict";

const KEY = "sandboxd.key";
const $ = sel => document.querySelector(sel);

const state = {
  selected: null,        // id of the context shown
  entries: new Map(),    // entry id -> its element in the notebook
  nextBefore: null,      // ?before= for older history entries
  history: true,         // false when the daemon has no history route
  local: new Map(),      // context id -> entries run from this page (without history)
  live: false,           // the events stream is up
};

// el makes an element; strings among the children become text nodes.
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  e.append(...children.filter(c => c !== null && c !== undefined && c !== ""));
  return e;
}

class APIError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

// api calls the daemon with the key of this tab, if any. A 401 asks for
// the key.
async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  if (body !== undefined && !(body instanceof Blob)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body, signal });
  if (r.status === 401) {
    showLogin(key ? "That key was refused." : "");
    throw new APIError(401, "credentials required", "UNAUTHORIZED");
  }
  if (raw && r.ok) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!r.ok) throw new APIError(r.status, (data && data.error) || r.statusText, data && data.code);
  return data;
}

const ctxPath = (id, rest = "") => "/api/v1/contexts/" + encodeURIComponent(id) + rest;
const filePath = p => p.split("/").map(encodeURIComponent).join("/");

function say(text, isError = false) {
  const m = $("#message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

// guarded runs f, showing what went wrong; 401s already asked for a key.
async function guarded(f) {
  try { return await f(); } catch (e) {
    if (e.status !== 401) say(e.message + (e.code ? " (" + e.code + ")" : ""), true);
  }
}

// ---- time ----

function ago(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!isFinite(s)) return "?";
  if (s < 60) return Math.floor(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h";
  return Math.floor(s / 86400) + " d";
}

function size(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
  return (n / (1 << 30)).toFixed(1) + " GiB";
}

// ---- login ----

function showLogin(error) {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = error || "";
  $("#key").focus();
}

$("#login").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("#key").value);
  $("#key").value = "";
  start();
});

$("#forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.reload();
});

// ---- contexts and pool ----

async function refreshList() {
  const { contexts } = await api("/api/v1/contexts");
  const ul = $("#contexts");
  ul.replaceChildren(...contexts.map(c => el("li", {
    class: c.context_id === state.selected ? "selected" : "",
    title: c.context_id,
    onclick: () => select(c.context_id),
  },
    el("div", {}, el("span", { class: "id mono" }, c.context_id.slice(0, 12)), " ",
      c.language, " ", el("span", { class: "badge " + c.status }, c.status)),
    el("div", { class: "meta" },
      "age " + ago(c.created_at) + " · active " + ago(c.last_activity) + " ago · " +
      c.execution_count + " run" + (c.execution_count === 1 ? "" : "s")))));
  for (const [i, c] of contexts.entries()) ul.children[i].dataset.id = c.context_id;
  $("#no-contexts").hidden = contexts.length > 0;
  const cur = contexts.find(c => c.context_id === state.selected);
  if (cur) {
    const b = $("#ctx-status");
    b.textContent = cur.status;
    b.className = "badge " + cur.status;
  } else if (state.selected) {
    deselect("That context no longer exists.");
  }
}

async function refreshPool() {
  const { pools } = await api("/api/v1/pool");
  $("#pool").replaceChildren(...(pools.length ? pools.map(p =>
    el("li", {}, p.language + ": " + p.ready + " of " + p.size + " warm kernels ready")) :
    [el("li", {}, "no warm pool")]));
}

async function loadLanguages() {
  const { languages } = await api("/api/v1/languages");
  $("#language").replaceChildren(...languages.filter(l => l.installed).map(l => el("option", { value: l.name }, l.name)));
}

$("#create").addEventListener("submit", ev => {
  ev.preventDefault();
  guarded(async () => {
    const c = await api("/api/v1/contexts", { method: "POST", body: { language: $("#language").value || "python" } });
    say("Created " + c.context_id.slice(0, 12) + ".");
    await refreshList();
    select(c.context_id);
  });
});

// ---- one context ----

function deselect(why) {
  state.selected = null;
  $("#context").hidden = true;
  $("#pick").hidden = false;
  if (location.hash) history.replaceState(null, "", location.pathname);
  if (why) say(why);
}

function select(id) {
  state.selected = id;
  state.entries.clear();
  state.nextBefore = null;
  $("#notebook").replaceChildren();
  $("#running").hidden = true;
  $("#title").textContent = "Context " + id;
  $("#pick").hidden = true;
  $("#context").hidden = false;
  $("#file-list tbody").replaceChildren();
  $("#files-path").value = "";
  history.replaceState(null, "", "#" + id);
  for (const li of $("#contexts").children) li.classList.toggle("selected", li.dataset.id === id);
  guarded(() => loadHistory());
  guarded(() => listFiles());
  guarded(() => refreshList());
}

// loadHistory reads the newest page of the history, or, with older, the
// page before the oldest shown, and adds the entries not shown yet.
async function loadHistory(older = false) {
  const id = state.selected;
  if (!id) return;
  if (!state.history) return showLocal(id);
  let q = "?limit=50";
  if (older && state.nextBefore !== null) q += "&before=" + state.nextBefore;
  let page;
  try {
    page = await api(ctxPath(id, "/history" + q));
  } catch (e) {
    // A daemon without the history route: show what ran from here.
    if (e.status === 404 && e.code !== "CONTEXT_NOT_FOUND") {
      state.history = false;
      return showLocal(id);
    }
    throw e;
  }
  if (id !== state.selected) return;
  if (older || state.entries.size === 0) state.nextBefore = page.next_before;
  $("#older").hidden = state.nextBefore === null || state.nextBefore === undefined;
  const note = $("#history-note");
  note.hidden = !page.dropped;
  note.textContent = page.dropped ? page.dropped + " older entries were dropped to keep the history bounded." : "";
  for (const entry of page.entries) addEntry(entry);
}

function showLocal(id) {
  const note = $("#history-note");
  note.hidden = false;
  note.textContent = "This daemon keeps no history: only what runs from this page is shown.";
  for (const entry of state.local.get(id) || []) addEntry(entry);
}

// addEntry puts an entry into the notebook in id order, once.
function addEntry(entry) {
  if (state.entries.has(entry.id)) return;
  const node = renderEntry(entry);
  const ids = [...state.entries.keys()].filter(k => k > entry.id).sort((a, b) => a - b);
  $("#notebook").insertBefore(node, ids.length ? state.entries.get(ids[0]) : null);
  state.entries.set(entry.id, node);
  if (!ids.length) node.scrollIntoView({ block: "nearest" });
}

// richest picks the representation of a MIME bundle to show.
const preferred = ["image/png", "image/jpeg", "image/svg+xml", "text/html", "text/markdown", "application/json", "text/plain"];

function renderResult(result) {
  const data = result.data || {};
  const mime = preferred.find(m => m in data) || Object.keys(data).find(m => typeof data[m] === "string");
  if (!mime) return null;
  let value = data[mime];
  const box = el("div", { class: "result" });
  box.dataset.mime = mime;
  if (mime === "image/png" || mime === "image/jpeg") {
    box.append(el("img", { src: "data:" + mime + ";base64," + String(value).replace(/\s/g, ""), alt: "image output" }));
  } else if (mime === "image/svg+xml") {
    // As an <img>, an SVG runs none of its scripts.
    box.append(el("img", { src: "data:image/svg+xml;base64," + base64(String(value)), alt: "SVG output" }));
  } else if (mime === "text/html") {
    // A frame with an opaque origin and no scripts: the markup shows, and
    // can do nothing. Its height is a guess from its rows; it can be resized.
    const html = String(value);
    const rows = (html.match(/<(tr|br|p|li|div|h\d)\b/gi) || []).length;
    box.append(el("iframe", { sandbox: "", srcdoc: html, title: "HTML output", height: Math.min(600, 40 + 24 * rows) }));
  } else {
    if (typeof value !== "string") value = JSON.stringify(value, null, 2);
    box.append(el("pre", { class: "text" }, value));
  }
  return box;
}

// base64 encodes a string's UTF-8 bytes.
function base64(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function renderEntry(e) {
  const out = e.output || {};
  const tb = e.error ? (e.error.traceback || e.error.name + ": " + e.error.value) : "";
  // The kernel sends the traceback to stderr too; show it once.
  let stderr = out.stderr || "";
  if (tb && stderr.includes(tb)) stderr = stderr.replace(tb, "").trim();
  const failed = e.success === false;
  const when = e.started_at ? new Date(e.started_at).toLocaleTimeString() : "";
  const source = e.kind === "command" ? "$ " + e.command : e.code;
  const node = el("article", { class: "entry" + (failed ? " failed" : "") + (e.pending ? " pending" : "") },
    el("header", {},
      el("span", {}, e.local || e.pending ? "this page" : "#" + e.id),
      el("span", {}, e.kind || "execution"),
      el("span", {}, when),
      el("span", {}, e.pending ? "running…" : (e.duration || 0).toFixed(3) + " s"),
      el("span", {}, e.pending ? "" : failed ? "failed" : "ok"),
      e.kind === "command" ? el("span", {}, "exit " + e.exit_code) : null),
    el("pre", { class: "code" }, source || ""),
    out.stdout ? el("pre", { class: "stdout" }, out.stdout) : null,
    stderr ? el("pre", { class: "stderr" }, stderr) : null,
    ...(e.results || []).map(renderResult),
    tb ? el("pre", { class: "traceback" }, tb) : null,
    e.truncated ? el("div", { class: "note" }, "Output was cut to fit the bounds.") : null);
  node.dataset.id = String(e.id);
  return node;
}

$("#older").addEventListener("click", () => guarded(() => loadHistory(true)));

// ---- running code ----

let localSeq = 0;

async function run() {
  const id = state.selected;
  const code = $("#code").value;
  if (!id || !code.trim()) return;
  $("#run").disabled = true;
  const pending = renderEntry({ id: "pending", code, pending: true, started_at: new Date().toISOString() });
  $("#notebook").append(pending);
  pending.scrollIntoView({ block: "nearest" });
  try {
    const started = new Date().toISOString();
    const x = await api(ctxPath(id, "/execute"), { method: "POST", body: { code } });
    $("#code").value = "";
    if (!state.history) {
      // Without history, what ran from here is all there is to show.
      const entry = { id: ++localSeq, local: true, kind: "execution", code, started_at: started, duration: x.execution_time,
        success: x.success, output: x.output, results: x.results, error: x.error || null, truncated: x.truncated };
      if (!state.local.has(id)) state.local.set(id, []);
      state.local.get(id).push(entry);
      if (id === state.selected) addEntry(entry);
    }
  } catch (e) {
    if (e.status !== 401) say(e.message + (e.code ? " (" + e.code + ")" : ""), true);
  } finally {
    pending.remove();
    $("#run").disabled = false;
  }
  if (state.history && id === state.selected) await guarded(() => loadHistory());
  guarded(() => refreshList());
}

$("#cell").addEventListener("submit", ev => { ev.preventDefault(); run(); });
$("#code").addEventListener("keydown", ev => {
  if (ev.key === "Enter" && ev.shiftKey) { ev.preventDefault(); run(); }
});

function contextAction(path, done) {
  return () => guarded(async () => {
    const id = state.selected;
    await api(ctxPath(id, path), { method: "POST" });
    say(done);
    await refreshList();
  });
}
$("#interrupt").addEventListener("click", contextAction("/interrupt", "Interrupted."));
$("#restart").addEventListener("click", contextAction("/restart", "Restarted: the kernel's state is gone."));

// Delete asks twice: a context's variables and files go with it.
let confirmTimer;
$("#delete").addEventListener("click", ev => {
  const b = ev.currentTarget;
  if (!b.dataset.armed) {
    b.dataset.armed = "1";
    b.textContent = "Click again to delete";
    confirmTimer = setTimeout(() => { delete b.dataset.armed; b.textContent = "Delete"; }, 4000);
    return;
  }
  clearTimeout(confirmTimer);
  delete b.dataset.armed;
  b.textContent = "Delete";
  guarded(async () => {
    await api(ctxPath(state.selected), { method: "DELETE" });
    deselect("Deleted.");
    await refreshList();
  });
});

// ---- files ----

async function listFiles() {
  const id = state.selected;
  const dir = $("#files-path").value.trim();
  const { files } = await api(ctxPath(id, "/files?path=" + encodeURIComponent(dir)));
  if (id !== state.selected) return;
  const rows = files.map(f => el("tr", {},
    el("td", {}, f.is_dir ? el("a", { onclick: () => { $("#files-path").value = f.path; guarded(listFiles); } }, f.name + "/") : f.name),
    el("td", { class: "size" }, f.is_dir ? "" : size(f.size)),
    el("td", {}, f.mtime ? new Date(f.mtime).toLocaleString() : ""),
    el("td", {}, f.is_dir ? "" : el("a", { onclick: () => guarded(() => download(id, f)) }, "download"))));
  if (dir) {
    const up = dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : "";
    rows.unshift(el("tr", {}, el("td", {}, el("a", { onclick: () => { $("#files-path").value = up; guarded(listFiles); } }, "../"))));
  }
  $("#file-list tbody").replaceChildren(...rows);
}

// download fetches with the key (a plain link could not send it) and
// hands the browser a blob to save.
async function download(id, f) {
  const r = await api(ctxPath(id, "/files/" + filePath(f.path)), { raw: true });
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: f.name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

$("#files-nav").addEventListener("submit", ev => { ev.preventDefault(); guarded(listFiles); });
$("#upload").addEventListener("click", () => guarded(async () => {
  const file = $("#upload-file").files[0];
  if (!file) return say("Choose a file first.", true);
  const dir = $("#files-path").value.trim().replace(/\/+$/, "");
  const path = (dir ? dir + "/" : "") + file.name;
  await api(ctxPath(state.selected, "/files/" + filePath(path)), { method: "PUT", body: file });
  say("Uploaded " + path + ".");
  $("#upload-file").value = "";
  await listFiles();
}));

// ---- live updates ----

function setLive(live) {
  state.live = live;
  const b = $("#live");
  b.textContent = live ? "live" : "polling";
  b.className = "badge" + (live ? " live" : "");
}

function onEvent(type, data) {
  switch (type) {
    case "context.created":
    case "context.deleted":
      guarded(refreshList);
      guarded(refreshPool);
      break;
    case "execution.started":
      if (data.context_id === state.selected) {
        const r = $("#running");
        r.hidden = false;
        r.textContent = "Running: " + (data.code || data.command || "").split("\n")[0];
      }
      break;
    case "execution.finished":
      if (data.context_id === state.selected) {
        $("#running").hidden = true;
        if (data.entry) addEntry(data.entry);
      }
      guarded(refreshList);
      break;
  }
}

// streamEvents reads /api/v1/events with fetch, since EventSource cannot
// send the key. While it is down, the page polls every 2 s instead.
async function streamEvents() {
  for (;;) {
    let wait = 5000;
    try {
      const r = await api("/api/v1/events", { raw: true });
      setLive(true);
      // Events missed while the stream was down.
      guarded(refreshList);
      guarded(() => loadHistory());
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trimStart();
          }
          if (data) {
            try { onEvent(type, JSON.parse(data)); } catch { /* a malformed event is skipped */ }
          }
        }
      }
    } catch (e) {
      if (e.status === 401) return setLive(false);
      // A daemon without the events route: poll, and look again later.
      if (e.status === 404) wait = 30000;
    }
    setLive(false);
    await new Promise(res => setTimeout(res, wait));
  }
}

function poll() {
  setInterval(() => {
    if (state.live || $("#app").hidden) return;
    guarded(refreshList);
    if (state.selected && state.history) guarded(() => loadHistory());
  }, 2000);
  // Ages and the pool move on their own.
  setInterval(() => { if (!$("#app").hidden) { guarded(refreshList); guarded(refreshPool); } }, 10000);
}

// ---- start ----

let polling = false, streaming = false;

async function start() {
  try {
    await refreshList();
  } catch (e) {
    if (e.status !== 401) say(e.message, true);
    return;
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#forget").hidden = !sessionStorage.getItem(KEY);
  say("");
  guarded(refreshPool);
  guarded(loadLanguages);
  const id = location.hash.slice(1);
  if (id && [...$("#contexts").children].some(li => li.dataset.id === id)) select(id);
  if (!polling) {
    polling = true;
    setLive(false);
    poll();
  }
  if (!streaming) {
    streaming = true;
    streamEvents().finally(() => { streaming = false; });
  }
}

start();
