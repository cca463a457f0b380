// The meshgrpc dashboard: polls /api/v1/mesh every second and redraws the
// topology, the endpoint table, the per-cluster charts and the proxy table.
// Plain DOM and SVG, no libraries, nothing loaded from elsewhere.
"use strict";

const POLL_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#4a78c2", "#e07b39", "#2e8b57", "#c0392b", "#8e44ad", "#16a085", "#b7950b", "#7f8c8d"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const ms = (s) => (s === null || s === undefined ? "\u2013" : (s * 1000).toFixed(s < 0.01 ? 2 : 1));
const perSecond = (x) => (x === null || x === undefined ? "\u2013" : x < 10 ? x.toFixed(1) : x.toFixed(0));
const percent = (x) => (x * 100).toFixed(1) + "%";

function badge(state) {
  return el("span", { class: "badge " + state, text: state });
}

// ------------------------------------------------------------------ topology

function topology(mesh) {
  const svg = document.getElementById("topology");
  svg.replaceChildren();
  const rowH = 38, top = 18, width = svg.clientWidth || 1000;
  const x = { route: 8, cluster: Math.round(width * 0.42), endpoint: Math.round(width * 0.72) };
  const nodeW = { route: Math.round(width * 0.25), cluster: Math.round(width * 0.17), endpoint: Math.round(width * 0.26) };
  const endpointY = new Map(), clusterY = new Map();
  let row = 0;
  for (const cluster of mesh.clusters) {
    const first = row;
    for (const ep of cluster.endpoints) endpointY.set(cluster.name + "|" + ep.address, top + rowH * row++);
    if (cluster.endpoints.length === 0) row++;
    clusterY.set(cluster.name, top + rowH * (first + row - 1) / 2);
  }
  const routeStep = mesh.routes.length > 0 ? Math.max(rowH, (rowH * Math.max(row, 1)) / mesh.routes.length) : rowH;
  const routeY = mesh.routes.map((_, i) => top + routeStep * i);
  const height = Math.max(top + rowH * row, top + routeStep * mesh.routes.length) + 10;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", height);

  const rates = [];
  mesh.routes.forEach((r) => r.splits.forEach((s) => rates.push(s.calls_per_s)));
  mesh.clusters.forEach((c) => c.endpoints.forEach((e) => rates.push(e.calls_per_s || 0)));
  const maxRate = Math.max(1, ...rates);
  const stroke = (r) => 1.5 + 12 * (r / maxRate);

  const edges = svgEl("g"), nodes = svgEl("g");
  svg.append(edges, nodes);
  mesh.routes.forEach((route, i) => {
    for (const split of route.splits) {
      if (!clusterY.has(split.cluster)) continue;
      const label = `${percent(split.weight_share)} \u00b7 ${perSecond(split.calls_per_s)}/s`;
      edge(edges, x.route + nodeW.route, routeY[i], x.cluster, clusterY.get(split.cluster),
           stroke(split.calls_per_s), split.weight === 0 || split.calls_per_s === 0, label, 0.3);
    }
    node(nodes, x.route, routeY[i], nodeW.route, route.name, route.match, "route");
  });
  for (const cluster of mesh.clusters) {
    const cy = clusterY.get(cluster.name);
    for (const ep of cluster.endpoints) {
      const ey = endpointY.get(cluster.name + "|" + ep.address);
      edge(edges, x.cluster + nodeW.cluster, cy, x.endpoint, ey, stroke(ep.calls_per_s || 0),
           !ep.calls_per_s, `${perSecond(ep.calls_per_s)}/s`, 0.85);
      node(nodes, x.endpoint, ey, nodeW.endpoint, ep.address, ep.health, "endpoint " + ep.health);
    }
    node(nodes, x.cluster, cy, nodeW.cluster, cluster.name, cluster.lb_policy, "cluster");
  }
}

// A box with its name on top and a detail line under it.
function node(parent, x, y, w, title, subtitle, kind) {
  const g = svgEl("g", { class: kind });
  g.append(svgEl("rect", { class: "node", x, y: y - 15, width: w, height: 30, rx: 4 }));
  g.append(svgEl("text", { x: x + 6, y: y - 2 }, title));
  if (subtitle) g.append(svgEl("text", { class: "label", x: x + 6, y: y + 11 }, subtitle));
  parent.append(g);
}

// `labelAt` 0..1: where along the edge its label goes (near the source for a
// route's splits, which fan out; near the target for a cluster's endpoints).
function edge(parent, x1, y1, x2, y2, width, idle, label, labelAt) {
  const mid = (x1 + x2) / 2;
  parent.append(svgEl("path", {
    class: "edge" + (idle ? " idle" : ""), "stroke-width": width.toFixed(1),
    d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
  }));
  const lx = x1 + (x2 - x1) * labelAt, ly = y1 + (y2 - y1) * labelAt - 5;
  parent.append(svgEl("text", { class: "label", x: lx, y: ly, "text-anchor": "middle" }, label));
}

// ------------------------------------------------------------------ endpoint table

function endpointTable(mesh) {
  const body = document.querySelector("#endpoints tbody");
  const rows = [];
  for (const cluster of mesh.clusters) {
    for (const ep of cluster.endpoints) {
      const share = ep.share || 0;
      const bar = el("span", { class: "bar" }, el("span", { style: `width:${(share * 100).toFixed(1)}%` }));
      rows.push(el("tr", { dataset: { cluster: cluster.name, endpoint: ep.address, calls: String(ep.calls_per_s || 0) } },
        el("td", { text: cluster.name }),
        el("td", { text: ep.address }),
        el("td", { text: ep.zone || "" }),
        el("td", { class: "num", text: ep.weight === undefined ? "\u2013" : String(ep.weight) }),
        el("td", { class: "share", dataset: { share: String(share) } }, bar, percent(share)),
        el("td", { class: "num", text: perSecond(ep.calls_per_s) }),
        el("td", { class: "num", text: perSecond(ep.failures_per_s) }),
        el("td", { class: "num", text: ms(ep.p50_s) }),
        el("td", { class: "num", text: ms(ep.p99_s) }),
        el("td", { class: "num rtt", text: ms(ep.rtt_estimate_s) }),
        el("td", { class: "num", text: ep.in_flight === undefined ? "\u2013" : String(ep.in_flight) }),
        el("td", {}, badge(ep.health)),
        el("td", { class: "num", text: String(ep.reported_by || 0) })));
    }
  }
  body.replaceChildren(...rows);
}

// ------------------------------------------------------------------ charts

function charts(mesh) {
  const box = document.getElementById("charts");
  box.replaceChildren(...mesh.clusters.map((cluster) => {
    const addresses = cluster.endpoints.map((e) => e.address);
    const legend = el("div", { class: "legend" }, ...addresses.map((a, i) =>
      el("span", {}, el("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), a)));
    return el("div", { class: "chart", dataset: { cluster: cluster.name } },
      el("h3", { text: cluster.name }),
      lineChart(cluster.series, addresses, (p) => p.calls_per_s, "calls/s", (v) => v.toFixed(0)),
      lineChart(cluster.series, addresses, (p) => p.p99_s, "p99 ms", (v) => (v * 1000).toFixed(0)),
      legend);
  }));
}

function lineChart(series, addresses, value, title, format) {
  const w = 320, h = 90, pad = 24;
  const svg = svgEl("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  const values = [];
  for (const point of series) for (const a of addresses) {
    const p = point.endpoints[a];
    if (p && value(p) !== null) values.push(value(p));
  }
  const max = Math.max(...values, 0) || 1;
  const n = Math.max(series.length - 1, 1);
  addresses.forEach((a, i) => {
    const pts = [];
    series.forEach((point, k) => {
      const p = point.endpoints[a];
      const v = p ? value(p) : null;
      if (v !== null) pts.push(`${(pad + (k / n) * (w - pad - 4)).toFixed(1)},${(h - 14 - (v / max) * (h - 24)).toFixed(1)}`);
    });
    if (pts.length) svg.append(svgEl("polyline", { points: pts.join(" "), stroke: PALETTE[i % PALETTE.length] }));
  });
  svg.append(svgEl("text", { class: "axis", x: 2, y: 12 }, format(max)));
  svg.append(svgEl("text", { class: "axis", x: 2, y: h - 14 }, "0"));
  svg.append(svgEl("text", { class: "axis", x: w - 4, y: h - 2, "text-anchor": "end" }, `${title}, last 5 min`));
  return svg;
}

// ------------------------------------------------------------------ proxies

function proxyTable(mesh) {
  const body = document.querySelector("#proxies tbody");
  body.replaceChildren(...mesh.proxies.map((p) => {
    const reasons = p.types.filter((t) => t.error).map((t) => `${t.type}: ${t.error}`);
    const state = el("td", {}, badge(p.state), ...reasons.map((r) => el("div", { class: "reason", text: r })));
    const versions = p.types.map((t) => `${t.type} ${t.acked_version || "\u2013"}`).join(" \u00b7 ");
    const reports = p.reports_load
      ? (p.last_report_age_s === null ? "connected" : `${p.last_report_age_s.toFixed(1)} s ago`)
      : "no";
    return el("tr", { dataset: { node: p.node_id } },
      el("td", { text: p.node_id }), el("td", { text: p.client }), el("td", { text: p.zone || "" }), state,
      el("td", { text: versions }), el("td", { text: reports }));
  }));
}

// ------------------------------------------------------------------ polling

function setStatus(text, live) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = "status " + (live ? "live" : "down");
}

function render(mesh) {
  document.getElementById("versions").textContent =
    "serving " + Object.entries(mesh.versions).map(([t, v]) => `${t} ${v}`).join(", ");
  topology(mesh);
  endpointTable(mesh);
  charts(mesh);
  proxyTable(mesh);
  document.body.dataset.updated = String(mesh.generated_at);
}

async function poll() {
  try {
    const response = await fetch("/api/v1/mesh", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    setStatus(`live \u00b7 ${new Date().toLocaleTimeString()}`, true);
  } catch (e) {
    setStatus(`control plane unreachable (${e.message}); retrying`, false);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
