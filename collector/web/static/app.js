// The labscope web page: nodes live from /api/stream (server-sent events), the rest polled from /api/.
// Values are placed with textContent only: nothing from the collector is ever parsed as HTML.
"use strict";

const POLL_MS = 2000;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, toCells) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.append(...toCells(row));
    return tr;
  }));
  const empty = document.getElementById(`${tableId}-empty`);
  if (empty) empty.hidden = rows.length > 0;
}

function pct(value) { return value === null || value === undefined ? null : value.toFixed(1); }

function ago(epoch) {
  if (!epoch) return null;
  const s = Math.max(0, Date.now() / 1000 - epoch);
  return s < 60 ? `${s.toFixed(0)} s ago` : new Date(epoch * 1000).toLocaleTimeString();
}

function showNodes(nodes) {
  fill("nodes", nodes, (n) => [
    cell(n.node), cell(n.hostname), cell(n.status, n.status),
    cell(pct(n.cpu_percent), "num"), cell(pct(n.memory_percent), "num"),
    cell(ago(n.last_seen)), cell(n.backlog, "num"),
  ]);
}

function showModules(modules) {
  fill("modules", modules, (m) => [
    cell(m.name), cell(m.status, m.status), cell(m.errors, "num"),
    cell(m.status === "failed" ? m.reason : (m.request_types || []).join(", ")),
    cell(m.update_type),
  ]);
}

function showDistributions(dists) {
  const rows = Object.entries(dists).map(([name, d]) => ({ name, ...d }));
  fill("distributions", rows, (d) => {
    const dropped = Object.values(d.dropped || {}).reduce((a, b) => a + b, 0);
    return [cell(d.name), cell(d.type), cell(d.connected ? "yes" : "no", d.connected ? "live" : "lost"),
      cell(d.queued, "num"), cell(dropped, "num")];
  });
}

function showEvents(events) {
  fill("events", events.slice(0, 50), (e) => [
    cell(new Date(e.time * 1000).toLocaleTimeString()), cell(e.node), cell(e.kind, e.severity), cell(e.message),
  ]);
}

function showStats(stats) {
  document.getElementById("alias").textContent = stats.alias;
  document.title = `labscope: ${stats.alias}`;
  const items = [["uptime", `${stats.uptime.toFixed(0)} s`], ["nodes", `${stats.nodes.live} live of ${stats.nodes.total}`],
    ...Object.entries(stats.counters).sort()];
  const dl = document.getElementById("stats");
  dl.replaceChildren(...items.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    return [dt, dd];
  }));
}

async function getJson(path) {
  const answer = await fetch(path);
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

async function poll() {
  const views = [["stats", showStats], ["modules", showModules], ["distributions", showDistributions], ["events", showEvents]];
  for (const [name, show] of views) {
    try { show(await getJson(`/api/${name}`)); } catch (err) { console.warn(err); }
  }
}

function stream() {
  const badge = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.addEventListener("nodes", (ev) => showNodes(JSON.parse(ev.data)));
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge on"; };
  source.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "badge"; };
}

async function loadConfigFile() {
  const name = document.getElementById("config-name").value;
  const answer = await fetch(`/api/config/${encodeURIComponent(name)}`);
  document.getElementById("config-text").value = answer.ok ? await answer.text() : "";
}

async function saveConfigFile() {
  const name = document.getElementById("config-name").value;
  const result = document.getElementById("config-result");
  const answer = await fetch(`/api/config/${encodeURIComponent(name)}`, {
    method: "PUT",
    headers: { "Authorization": `Bearer ${document.getElementById("config-token").value}`, "Content-Type": "text/plain" },
    body: document.getElementById("config-text").value,
  });
  if (answer.ok) { result.textContent = "saved"; result.className = "live"; return; }
  const problem = await answer.json().catch(() => ({}));
  result.textContent = `${answer.status}: ${problem.description || problem.title || "refused"}`;
  result.className = "error";
}

async function setUpConfig() {
  const listing = await getJson("/api/config");
  document.getElementById("config-empty").hidden = listing.files.length > 0;
  document.getElementById("config-editor").hidden = listing.files.length === 0;
  const select = document.getElementById("config-name");
  select.replaceChildren(...listing.files.map((f) => new Option(f.name, f.name)));
  document.getElementById("config-save").disabled = !listing.editable;
  if (!listing.editable) document.getElementById("config-result").textContent = "read-only (no --web-token-file)";
  select.addEventListener("change", loadConfigFile);
  document.getElementById("config-save").addEventListener("click", saveConfigFile);
  if (listing.files.length) await loadConfigFile();
}

stream();
poll();
setInterval(poll, POLL_MS);
setUpConfig().catch((err) => console.warn(err));
