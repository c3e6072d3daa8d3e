// wsedge node dashboard: one snapshot a second over a WebSocket from the
// server (/dashboard/ws); rates are differences of counters, a minute kept.
"use strict";

const KEEP = 60;
const $ = (id) => document.getElementById(id);
const hist = { t: [], perWorker: [], msgsIn: [], msgsOut: [], deliv: [], bytesIn: [], bytesOut: [], queued: [], bus: [] };
let prev = null;
let charts = null;
let ws = null;
let attempt = 0;

function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function fmtNum(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + " k";
  if (n > 0 && n < 10 && n % 1) return n.toFixed(1);
  return String(Math.round(n));
}

function chart(el, labels, yfmt) {
  const colors = ["#2f6fde", "#1f9d55", "#d68b00", "#c62828", "#7b4fd6", "#00838f", "#6d4c41", "#546e7a"];
  const series = [{}].concat(labels.map((l, i) => ({ label: l, stroke: colors[i % colors.length], width: 2 })));
  const opts = {
    width: Math.max(380, el.parentElement.clientWidth - 20), height: 200, series,
    axes: [{}, { values: (u, vals) => vals.map(yfmt || fmtNum), size: 70 }],
  };
  return new uPlot(opts, [[]].concat(labels.map(() => [])), el);
}

function sum(ws, k) { return ws.reduce((a, w) => a + w[k], 0); }

function onSnapshot(s) {
  const n = s.workers.length;
  if (!charts) {
    charts = {
      conns: chart($("ch-conns"), s.workers.map((_, i) => "worker " + i)),
      msgs: chart($("ch-msgs"), ["in", "out", "deliveries"]),
      bytes: chart($("ch-bytes"), ["in", "out"], fmtBytes),
      queues: chart($("ch-queues"), ["write queues", "bus"], fmtBytes),
    };
  }
  const t = s.unix_ms / 1000;
  const dt = prev ? Math.max(0.001, (s.unix_ms - prev.unix_ms) / 1000) : null;
  const rate = (k) => (prev ? Math.max(0, (sum(s.workers, k) - sum(prev.workers, k)) / dt) : 0);
  push(hist.t, t);
  for (let i = 0; i < n; i++) {
    hist.perWorker[i] = hist.perWorker[i] || [];
    push(hist.perWorker[i], s.workers[i].open);
  }
  const rin = rate("msgs_in"), rout = rate("msgs_out"), rdel = rate("deliveries");
  push(hist.msgsIn, rin); push(hist.msgsOut, rout); push(hist.deliv, rdel);
  push(hist.bytesIn, rate("bytes_in")); push(hist.bytesOut, rate("bytes_out"));
  push(hist.queued, sum(s.workers, "queued_bytes")); push(hist.bus, sum(s.workers, "bus_bytes"));
  charts.conns.setData([hist.t].concat(hist.perWorker));
  charts.msgs.setData([hist.t, hist.msgsIn, hist.msgsOut, hist.deliv]);
  charts.bytes.setData([hist.t, hist.bytesIn, hist.bytesOut]);
  charts.queues.setData([hist.t, hist.queued, hist.bus]);

  $("c-conns").textContent = fmtNum(sum(s.workers, "open"));
  $("c-in").textContent = fmtNum(rin);
  $("c-out").textContent = fmtNum(rout);
  $("c-deliv").textContent = fmtNum(rdel);
  $("c-rooms").textContent = fmtNum(sum(s.workers, "rooms")) + " / " + fmtNum(sum(s.workers, "subscriptions"));
  $("c-rss").textContent = fmtBytes(s.rss_bytes);
  $("c-fds").textContent = s.open_fds === null ? "n/a" : fmtNum(s.open_fds);

  const closes = $("closes").tBodies[0];
  closes.textContent = "";
  const rows = Object.entries(s.closes).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  for (const [k, v] of rows) closes.insertRow().innerHTML = "<td></td><td class=n></td>";
  rows.forEach(([k, v], i) => { const r = closes.rows[i]; r.cells[0].textContent = k; r.cells[1].textContent = v; });
  if (!rows.length) closes.insertRow().insertCell().textContent = "none yet";

  const rtt = $("rtt").tBodies[0];
  rtt.textContent = "";
  const total = s.ping_rtt.counts.reduce((a, b) => a + b, 0) || 1;
  s.ping_rtt.counts.forEach((c, i) => {
    const b = s.ping_rtt.bounds_ms[i];
    const row = rtt.insertRow();
    row.insertCell().textContent = b === undefined ? "> " + s.ping_rtt.bounds_ms[i - 1] + " ms" : "<= " + b + " ms";
    const bar = row.insertCell();
    const d = document.createElement("div");
    d.className = "bar";
    d.style.width = (100 * c / total).toFixed(1) + "%";
    bar.append(d);
    const cnt = row.insertCell();
    cnt.className = "n";
    cnt.textContent = c;
  });
  prev = s;
}

function push(a, v) { a.push(v); if (a.length > KEEP) a.shift(); }

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value.trim();
  const url = scheme + "//" + location.host + "/dashboard/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
  $("status").dataset.state = "connecting";
  $("status").textContent = "connecting";
  const sock = new WebSocket(url);
  ws = sock;
  sock.onopen = () => { attempt = 0; $("status").dataset.state = "connected"; $("status").textContent = "live"; };
  sock.onmessage = (ev) => { try { onSnapshot(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    if (ev.code === 1008 || (ev.code >= 4000 && ev.code < 5000)) {
      $("status").dataset.state = "stopped";
      $("status").textContent = "refused: " + (ev.reason || ev.code);
      return;
    }
    const delay = Math.random() * Math.min(10000, 250 * 2 ** attempt++);
    $("status").dataset.state = "reconnecting";
    $("status").textContent = "reconnecting";
    setTimeout(connect, delay);
  };
}

$("login").onsubmit = (e) => { e.preventDefault(); if (ws) { const old = ws; ws = null; old.close(); } connect(); };
connect();
