// The ClusterLink dashboard: polls the local dashboard server every second and redraws.
// Plain DOM code, no framework: the page is small, and it must work offline.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function text(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = text(value);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function peerState(peer) {
  if (peer.reachable === true) return peer.peered === false ? "unpeered" : "reachable";
  if (peer.reachable === false) return "unreachable";
  return "unknown";
}

function labels(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "";
}

function rtt(ms) {
  return typeof ms === "number" ? `${ms.toFixed(1)} ms` : "";
}

function drawMap(name, peers) {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  const radius = 120;
  peers.forEach((peer, i) => {
    const angle = (2 * Math.PI * i) / Math.max(peers.length, 1) - Math.PI / 2;
    const x = Math.cos(angle) * radius;
    const y = Math.sin(angle) * radius;
    const state = peerState(peer);
    const line = document.createElementNS(SVG, "line");
    Object.entries({ x1: 0, y1: 0, x2: x, y2: y }).forEach(([k, v]) => line.setAttribute(k, v));
    line.setAttribute("class", `link ${state}`);
    svg.appendChild(line);
    const group = document.createElementNS(SVG, "g");
    group.setAttribute("class", `node ${state}`);
    group.setAttribute("data-peer", peer.name);
    group.setAttribute("data-state", state);
    const circle = document.createElementNS(SVG, "circle");
    Object.entries({ cx: x, cy: y, r: 22 }).forEach(([k, v]) => circle.setAttribute(k, v));
    group.appendChild(circle);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", y + 38);
    label.textContent = peer.name;
    group.appendChild(label);
    const latency = document.createElementNS(SVG, "text");
    latency.setAttribute("x", x);
    latency.setAttribute("y", y + 5);
    latency.setAttribute("class", "rtt");
    latency.textContent = state === "unreachable" ? "✕" : rtt(peer.rttMs).replace(" ms", "");
    group.appendChild(latency);
    svg.appendChild(group);
  });
  const self = document.createElementNS(SVG, "g");
  self.setAttribute("class", "node self");
  const circle = document.createElementNS(SVG, "circle");
  Object.entries({ cx: 0, cy: 0, r: 30 }).forEach(([k, v]) => circle.setAttribute(k, v));
  self.appendChild(circle);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 0);
  label.setAttribute("y", 5);
  label.textContent = name;
  self.appendChild(label);
  svg.appendChild(self);
}

const drawn = {};

// Rebuilds a table only when its rows changed, so that a row someone is reading (or
// selecting) stays put between polls.
function fill(id, items, render) {
  const key = JSON.stringify(items);
  if (drawn[id] === key) return;
  drawn[id] = key;
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (!items.length) {
    const row = body.insertRow();
    const td = cell(row, "none", "empty");
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    return;
  }
  items.forEach((item) => render(body.insertRow(), item));
}

function drawStatus(status) {
  const gw = status.gateway || {};
  document.getElementById("gateway-name").textContent = gw.name || "";
  document.getElementById("gateway-facts").textContent =
    `fabric ${text(gw.fabric)} · version ${text(gw.version)} · peers on ${text(gw.listen)}` +
    ` · up ${Math.round(gw.uptimeS || 0)} s`;
  const peers = status.peers || [];
  const mapKey = JSON.stringify([gw.name, peers]);
  if (drawn.map !== mapKey) {
    drawn.map = mapKey;
    drawMap(gw.name || "this gateway", peers);
  }
  fill("peers", peers, (row, p) => {
    const state = peerState(p);
    row.dataset.peer = p.name;
    row.dataset.state = state;
    row.className = state;
    cell(row, p.name);
    cell(row, (p.gateways || []).join(", "));
    cell(row, state === "unpeered" ? "reachable, not peered" : state);
    cell(row, rtt(p.rttMs));
    cell(row, labels(p.labels));
    cell(row, p.reason);
  });
  fill("imports", status.imports || [], (row, i) => {
    cell(row, `${i.namespace}/${i.name}`);
    cell(row, i.listen);
    cell(row, (i.sources || []).map((s) => `${s.peer}:${s.exportNamespace}/${s.exportName}`).join(", "));
    cell(row, i.lbScheme);
    const bad = (i.conditions || []).filter((c) => c.status !== "True");
    cell(row, bad.length ? bad.map((c) => c.message || c.reason).join("; ") : "ok", bad.length ? "bad" : "");
  });
  fill("exports", status.exports || [], (row, e) => {
    cell(row, `${e.namespace}/${e.name}`);
    cell(row, e.host ? `${e.host}:${e.port}` : `service ${e.name}`);
  });
}

function drawFlows(flows) {
  const items = (flows.items || []).slice().reverse();
  document.getElementById("flow-count").textContent =
    `(${items.filter((f) => !f.endedAt && f.decision === "allowed").length} open, ${items.length} recent)`;
  fill("flows", items.slice(0, 100), (row, f) => {
    row.dataset.flow = f.id;
    row.dataset.decision = f.decision;
    row.className = f.decision === "allowed" ? (f.endedAt ? "ended" : "open") : "refused";
    cell(row, (f.startedAt || "").replace("T", " ").replace(/\.\d+Z$/, "Z"));
    cell(row, f.direction);
    cell(row, f.resource);
    cell(row, f.peer);
    cell(row, f.client);
    cell(row, f.decision);
    cell(row, f.policy);
    cell(row, f.decision === "allowed" ? `${f.bytesUp} / ${f.bytesDown}` : "");
    const open = f.decision === "allowed" && !f.endedAt;
    cell(row, typeof f.durationS === "number" ? `${f.durationS.toFixed(3)} s` : (open ? "open" : ""));
    cell(row, f.reason);
  });
}

async function poll(path) {
  const answer = await fetch(path, { cache: "no-store" });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || `${path}: ${answer.status}`);
  return body;
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [status, flows] = await Promise.all([poll("/api/status"), poll("/api/flows")]);
    drawStatus(status);
    drawFlows(flows);
    error.hidden = true;
    document.body.dataset.updated = String(Date.now());
  } catch (exc) {
    error.textContent = `cannot read the gateway: ${exc.message}`;
    error.hidden = false;
  }
}

refresh();
setInterval(refresh, POLL_MS);
