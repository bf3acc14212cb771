// The monitor page: polls GET /monitor/state twice a second and draws clients, plots,
// models and errors. Plain JavaScript, no libraries; it only reads, it changes nothing.
"use strict";

const POLL_MS = 500;
window.monitor = { polls: 0, lastState: null, failures: 0 };

const $ = (id) => document.getElementById(id);

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function drawPlot(canvas, title, values, color, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 22;
  ctx.clearRect(0, 0, w, h);
  const finite = values.filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1, ...finite) * 1.15;
  ctx.strokeStyle = "#333"; ctx.lineWidth = 1;
  for (let k = 0; k <= 2; k++) {
    const y = pad + ((h - 2 * pad) * k) / 2;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 6, y); ctx.stroke();
  }
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  let started = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) { started = false; return; }
    const x = pad + ((w - pad - 6) * i) / Math.max(1, values.length - 1);
    const y = h - pad - ((h - 2 * pad) * v) / max;
    if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    ctx.fillStyle = color; ctx.fillRect(x - 1, y - 1, 2, 2); // isolated seconds show as dots
  });
  ctx.stroke();
  const last = finite.length ? finite[finite.length - 1] : 0;
  ctx.fillStyle = "#ccd"; ctx.font = "12px system-ui";
  ctx.fillText(`${title}: ${last.toFixed(1)} ${unit}  (max ${(max / 1.15).toFixed(1)})`, pad, 14);
  ctx.fillStyle = "#667"; ctx.fillText("-5 min", pad, h - 6); ctx.fillText("now", w - 30, h - 6);
}

function thumb(url, caption) {
  const img = url ? `<img src="${url}" alt="${caption}">` : `<div class="none">no ${caption}</div>`;
  return `<figure>${img}<figcaption>${caption}</figcaption></figure>`;
}

function render(s) {
  const t = s.totals;
  $("summary").innerHTML =
    `<span>model <b>${esc(s.model)}</b></span><span><b>${t.fps.toFixed(1)}</b> fps</span>` +
    `<span>latency <b>${t.mean_latency_ms.toFixed(1)}</b> ms (p95 ${t.p95_latency_ms.toFixed(1)})</span>` +
    `<span>received ${t.received}</span><span>processed ${t.processed}</span>` +
    `<span>dropped ${t.dropped}</span><span>errors ${t.errors}</span>` +
    `<span>WebSockets ${s.websockets}</span><span>up ${Math.round(s.uptime_s)} s</span>`;
  $("clients").innerHTML = s.clients.length ? s.clients.map((c) =>
    `<div class="client"><div class="name">${esc(c.client)}</div>` +
    `<div class="thumbs">${thumb(c.thumbs.input, "input")}${thumb(c.thumbs.pose, "pose")}${thumb(c.thumbs.output, "output")}</div>` +
    `<div class="nums">${c.fps.toFixed(1)} fps, ${c.latency_ms.toFixed(1)} ms, ${c.width}x${c.height} ${esc(c.format)}, ` +
    `frames ${c.frames}, dropped ${c.dropped}, errors ${c.errors}` +
    (c.last_error ? `, last <span class="stale">${esc(c.last_error)}</span>` : "") + `</div></div>`).join("")
    : "no client has sent a frame yet";
  const h = s.history;
  drawPlot($("plot-fps"), "frames/s", h.map((b) => b.fps), "#5bc0eb", "fps");
  drawPlot($("plot-latency"), "latency", h.map((b) => b.latency_ms), "#fde74c", "ms");
  drawPlot($("plot-drops"), "dropped + errors/s", h.map((b) => b.drops + b.errors), "#e55934", "/s");
  const loaded = new Set(s.loaded || []);
  $("models").innerHTML = s.models.map((m) =>
    `<span class="${m === s.model ? "active" : loaded.has(m) ? "loaded" : ""}" ` +
    `title="${m === s.model ? "active" : loaded.has(m) ? "loaded" : "available"}">${esc(m)}</span>`).join("") +
    `<span class="legend">green: active, blue: loaded, grey: available</span>`;
  $("errors").innerHTML = s.errors.length ? s.errors.map((e) =>
    `<div>${new Date(e.time * 1000).toLocaleTimeString()} <span class="code">${esc(e.code)}</span> ` +
    `${esc(e.client)} frame ${e.frame_id}: ${esc(e.message)}</div>`).join("") : "none";
}

// The monitor shows camera pictures, so the bridge asks for the key it printed at start
// ("monitor http://…/monitor?key=…"); the page sends it as a header, never to another site.
const KEY = new URLSearchParams(location.search).get("key") || "";

async function poll() {
  try {
    const r = await fetch("/monitor/state", { cache: "no-store",
      headers: KEY ? { Authorization: `Bearer ${KEY}` } : {} });
    if (r.status === 401) {
      $("summary").innerHTML = `<span class="stale">this page needs the monitor key: open the monitor URL ` +
        `the bridge printed at start (…/monitor?key=…)</span>`;
      setTimeout(poll, 2000);
      return;
    }
    if (r.status === 404) {
      $("summary").innerHTML = `<span class="stale">the monitor is off (the bridge runs with --no-monitor)</span>`;
      return;
    }
    const s = await r.json();
    window.monitor.lastState = s;
    window.monitor.polls++;
    render(s);
  } catch (e) {
    window.monitor.failures++;
    $("summary").innerHTML = `<span class="stale">bridge not reachable (${esc(e.message)}); retrying</span>`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
