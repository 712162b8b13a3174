// feedback-brain loop dashboard: plain JS + SVG, served by the service (no CDN, no framework).
// Every value from the API is inserted with textContent (never as HTML).
"use strict";

const KEY_STORE = "fbrain-api-key";
const SVG_NS = "http://www.w3.org/2000/svg";
let labels = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const key = sessionStorage.getItem(KEY_STORE);
  const response = await fetch(path, {
    ...(options || {}),
    headers: { "x-api-key": key || "", "content-type": "application/json", ...((options || {}).headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = body.detail || {};
    const error = new Error(detail.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

const pct = (x) => (x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)}%`);
const dur = (s) => (s === null || s === undefined ? "-" : s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`);

function card(title, value) {
  return el("div", { class: "card" }, title, el("b", {}, value));
}

function renderCards(summary, health) {
  const box = document.getElementById("health-cards");
  box.replaceChildren(
    card("Open incidents", summary.states.open + summary.states.acknowledged + summary.states.mitigating + summary.states.reopened),
    card("Verified fixes", summary.states.verified),
    card("Detection lag (median)", dur(summary.detection_lag_s.median)),
    card("Time to acknowledge", dur(summary.time_to_ack_s)),
    card("Time to resolve", dur(summary.time_to_resolve_s)),
    card("Alert precision", summary.alert_precision.precision === null ? "-" : pct(summary.alert_precision.precision)),
    card("Review queue", (summary.review.pending || 0) + " pending"),
    card("Scored", health.funnel.stages ? (health.funnel.stages.scored || 0) : "-"),
  );
}

function renderMovers(movers) {
  const body = document.querySelector("#movers tbody");
  body.replaceChildren(...movers.map((m) => el("tr", {},
    el("td", {}, `${m.dimension}=${m.value}`), el("td", {}, m.signal),
    el("td", { class: `sev-${m.severity}` }, m.severity), el("td", {}, pct(m.rate)), el("td", {}, pct(m.baseline_rate)),
    el("td", {}, m.lift === null ? "-" : `${m.lift}x`), el("td", {}, m.count))));
  if (!movers.length) body.append(el("tr", {}, el("td", { colspan: 7 }, "Nothing is moving.")));
}

function renderAlerts(alerts) {
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren(...alerts.map((a) => el("tr", {},
    el("td", { class: `sev-${a.severity}` }, `[${a.severity}] ${a.signal} on ${a.dimension}=${a.value}`),
    el("td", {}, a.owner), el("td", {}, a.state + (a.suppressed ? ` (${a.suppressed.split(":")[0]})` : "")),
    el("td", {}, a.playbook ? `${a.playbook.title} v${a.playbook.version}` : "-"),
    el("td", {}, dur(a.detection_lag_s)),
    el("td", {}, el("button", { class: "show-alert", onclick: () => showAlert(a.id) }, "Details")))));
  if (!alerts.length) body.append(el("tr", {}, el("td", { colspan: 6 }, "No alerts.")));
}

async function showAlert(id) {
  const alert = await api(`/alerts/${encodeURIComponent(id)}`);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = `${alert.signal} on ${alert.dimension}=${alert.value}`;
  const ev = alert.evidence;
  const book = alert.playbook || {};
  const detail = document.getElementById("detail-body");
  detail.replaceChildren(
    el("p", {}, `Owner ${alert.owner} · state ${alert.state} · severity ${alert.severity} · ${ev.count} of ${ev.volume} items (${pct(ev.rate)}) vs baseline ${pct(ev.baseline_rate)}`),
    el("h3", {}, "What the model thought"),
    ...ev.examples.map((x) => el("p", { class: "example" },
      `"${x.text}" (sentiment ${x.sentiment} ${x.sentiment_score ?? "-"}, intent ${x.intent} ${x.intent_score ?? "-"})`)),
    el("h3", {}, `Playbook: ${book.title || "-"}`),
    el("ol", {}, ...(book.diagnostic_steps || []).map((s) => el("li", {}, s))),
    el("ul", {}, ...(book.actions || []).map((s) => el("li", {}, s))),
    el("p", {}, alert.validation ? `Validation: ${alert.validation.outcome}, rate after ${pct(alert.validation.rate_after)}` : "Validation: after resolution"),
  );
  const data = await api(`/alerts/${encodeURIComponent(id)}/series`);
  drawSeries(document.getElementById("validation-chart"), data);
}

function drawSeries(box, data) {
  const w = 640, h = 180, pad = 34;
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "signal share per day" });
  const pts = data.points;
  const top = Math.max(0.05, data.baseline_rate * 1.5, ...pts.map((p) => p.rate));
  const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, pts.length - 1);
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  chart.append(svg("line", { x1: pad, x2: w - pad, y1: y(data.baseline_rate), y2: y(data.baseline_rate), stroke: "#1e8449", "stroke-dasharray": "4 3" }));
  chart.append(svg("text", { x: w - pad - 80, y: y(data.baseline_rate) - 4 }, `baseline ${pct(data.baseline_rate)}`));
  if (pts.length) {
    chart.append(svg("polyline", { points: pts.map((p, i) => `${x(i)},${y(p.rate)}`).join(" "), fill: "none", stroke: "#b00020", "stroke-width": 2 }));
    pts.forEach((p, i) => chart.append(svg("circle", { cx: x(i), cy: y(p.rate), r: 3, fill: "#b00020" })));
    chart.append(svg("text", { x: pad, y: h - 8 }, pts[0].day));
    chart.append(svg("text", { x: w - pad - 60, y: h - 8 }, pts[pts.length - 1].day));
  }
  chart.append(svg("text", { x: 2, y: pad }, pct(top)));
  box.replaceChildren(chart);
}

function drawFunnel(box, health) {
  const stages = [["received", health.funnel.received], ...Object.entries(health.funnel.stages || {})];
  const w = 640, rowH = 24, h = rowH * stages.length + 10;
  const max = Math.max(1, ...stages.map((s) => s[1]));
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "funnel" });
  stages.forEach(([name, count], i) => {
    chart.append(svg("rect", { x: 110, y: i * rowH + 4, width: (count / max) * (w - 260), height: rowH - 8, fill: "#2e86c1" }));
    chart.append(svg("text", { x: 4, y: i * rowH + 18 }, name));
    chart.append(svg("text", { x: 116 + (count / max) * (w - 260), y: i * rowH + 18 }, String(count)));
  });
  const lags = Object.entries(health.lag || {}).map(([stage, v]) => `${stage}: p50 ${v.p50_s ?? "-"} s, p95 ${v.p95_s ?? "-"} s`);
  box.replaceChildren(chart, el("p", {}, lags.join(" · ") || "no lag figures yet"));
}

function select(name, values, current) {
  return el("select", { name }, el("option", { value: "" }, `${name}: unchanged`),
    ...values.map((v) => { const o = el("option", { value: v }, v); if (v === current) o.setAttribute("data-predicted", "1"); return o; }));
}

function renderReview(data) {
  document.getElementById("review-summary").textContent =
    `${data.count} waiting · agreement of double reviews: ${data.agreement.agreement === null ? "-" : pct(data.agreement.agreement)}`;
  const box = document.getElementById("review");
  box.replaceChildren(...data.items.map((item) => {
    const s = item.snapshot;
    const status = el("span", { class: "status" });
    const form = el("form", { class: "correction", "data-feedback-id": item.feedback_id },
      el("input", { name: "reviewer", placeholder: "your name", required: "required" }),
      select("sentiment", labels.sentiments, s.sentiment), select("intent", labels.intents, s.intent),
      el("label", {}, "aspects ", el("input", { name: "aspects", placeholder: "comma-separated or blank", value: "" })),
      item.alert_id ? select("alert_verdict", ["true_positive", "false_positive"]) : null,
      el("button", { type: "submit" }, "Save"), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const f = new FormData(form);
      const body = { reviewer: f.get("reviewer") };
      for (const k of ["sentiment", "intent", "alert_verdict"]) if (f.get(k)) body[k] = f.get(k);
      if (f.get("aspects")) body.aspects = f.get("aspects").split(",").map((x) => x.trim()).filter(Boolean);
      if (body.alert_verdict) body.alert_id = item.alert_id;
      try {
        await api(`/review/${encodeURIComponent(item.feedback_id)}`, { method: "POST", body: JSON.stringify(body) });
        status.textContent = "saved"; status.className = "status ok";
      } catch (error) {
        status.textContent = error.message; status.className = "status error";
      }
    });
    return el("div", { class: "review-item" },
      el("p", {}, el("b", {}, `priority ${item.priority} · ${Object.keys(item.reasons).join(", ")}`),
        ` · ${s.sku} · ${s.region} · ${s.created_at}`),
      el("p", { class: "example" }, `"${s.text}"`),
      el("p", {}, `model: sentiment ${s.sentiment} (${s.sentiment_score ?? "-"}), intent ${s.intent} (${s.intent_score ?? "-"}), aspects ${s.aspects.join(", ") || "none"}, flags ${s.flags.join(", ") || "none"}`),
      form);
  }));
  if (!data.items.length) box.append(el("p", {}, "The queue is empty."));
}

async function load() {
  const [summary, health] = await Promise.all([api("/dashboard/summary"), fetch("/health").then((r) => r.json())]);
  labels = summary.labels;
  renderCards(summary, health);
  renderMovers(summary.top_movers);
  renderAlerts(summary.alerts);
  drawFunnel(document.getElementById("funnel"), health);
  try {
    renderReview(await api("/review"));
  } catch (error) {
    document.getElementById("review-summary").textContent = error.status === 403 ? "This key lacks the review scope." : error.message;
  }
}

async function signIn(key) {
  sessionStorage.setItem(KEY_STORE, key);
  try {
    await load();
    document.getElementById("signin").hidden = true;
    document.getElementById("app").hidden = false;
    document.getElementById("signout").hidden = false;
    document.getElementById("who").textContent = `key ${key.split("_")[1] || "?"}`;
  } catch (error) {
    sessionStorage.removeItem(KEY_STORE);
    document.getElementById("signin-error").textContent = error.status === 401 ? "Unknown API key." : error.message;
  }
}

document.getElementById("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(document.getElementById("api-key").value.trim());
});
document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  location.reload();
});
if (sessionStorage.getItem(KEY_STORE)) signIn(sessionStorage.getItem(KEY_STORE));
