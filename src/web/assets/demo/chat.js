// wsedge demo chat: the /ws pub/sub protocol (PROTOCOL.md) from a browser.
// Reconnects by itself (exponential backoff with full jitter) and, when the
// server keeps history, recovers what it missed (subscribe with `since`).
"use strict";

const WS_PATH = document.querySelector('meta[name="wsedge-ws"]').content || "/ws";
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10000;
const STABLE_MS = 5000; // a connection up this long resets the backoff
const PRESENCE_EVERY_MS = 3000;

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  wanted: false,       // the user asked to be connected
  attempt: 0,
  retryTimer: null,
  stableTimer: null,
  myId: null,
  name: "",
  nextId: 1,
  pending: new Map(),  // request id -> callback(reply)
  rooms: new Map(),    // room -> { offset, epoch, items: [], unread, members, names }
  names: new Map(),    // conn id -> name, learned from messages
  current: null,
};

function setStatus(s, text) {
  const el = $("status");
  el.dataset.state = s;
  el.textContent = text || s;
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value.trim();
  const q = token ? "?token=" + encodeURIComponent(token) : "";
  return scheme + "//" + location.host + WS_PATH + q;
}

function request(msg, onReply) {
  const id = state.nextId++;
  msg.id = id;
  if (onReply) state.pending.set(id, onReply);
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  return id;
}

function connect() {
  clearTimeout(state.retryTimer);
  if (!state.wanted) return;
  setStatus(state.attempt ? "reconnecting" : "connecting");
  const ws = new WebSocket(wsUrl());
  state.ws = ws;
  ws.onopen = () => {
    setStatus("connected");
    state.stableTimer = setTimeout(() => { state.attempt = 0; }, STABLE_MS);
    for (const room of state.rooms.keys()) subscribe(room, true);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") return;
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    handle(msg);
  };
  ws.onclose = (ev) => {
    clearTimeout(state.stableTimer);
    state.pending.clear();
    if (state.ws !== ws) return;
    state.ws = null;
    state.myId = null;
    // Policy (1008) and application auth codes (4000-4999) mean "do not
    // come back with the same credentials".
    if (ev.code === 1008 || (ev.code >= 4000 && ev.code <= 4999)) {
      state.wanted = false;
      setStatus("stopped", "stopped: " + (ev.reason || "refused") + " (" + ev.code + ")");
      return;
    }
    if (!state.wanted) { setStatus("offline"); return; }
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.random() * cap;
    state.attempt++;
    setStatus("reconnecting", "reconnecting in " + (delay / 1000).toFixed(1) + " s");
    state.retryTimer = setTimeout(connect, delay);
  };
}

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = { offset: null, epoch: null, items: [], unread: 0, members: [], count: 0 };
    state.rooms.set(name, r);
  }
  return r;
}

function subscribe(name, resume) {
  const r = room(name);
  const msg = { type: "subscribe", room: name };
  if (resume && r.epoch !== null && r.offset !== null) {
    msg.since = { offset: r.offset, epoch: r.epoch };
  }
  request(msg, (reply) => {
    if (reply.type === "error") {
      notice(name, "cannot join: " + reply.message, true);
      return;
    }
    if (typeof reply.epoch === "string") {
      if (msg.since && reply.recovered === false) {
        // The server could not replay from our position (it restarted, or
        // the gap is older than it keeps): show what it has instead.
        notice(name, "reconnected; the server could not replay from where this page left off", true);
        loadHistory(name, reply.epoch, reply.offset);
      } else if (msg.since && reply.recovered === true) {
        const missed = (reply.offset || 0) - msg.since.offset;
        notice(name, "reconnected: recovered " + missed + " missed message" + (missed === 1 ? "" : "s"));
      }
      if (!msg.since || reply.recovered === false) {
        r.epoch = reply.epoch;
        r.offset = reply.offset;
      }
    } else if (resume) {
      notice(name, "reconnected (this server keeps no history)");
    }
    if (!resume) announce(name);
    refreshPresence();
  });
}

// Shows the room's kept messages up to `upTo` (the position in the
// subscribe ack; later ones arrive live).
function loadHistory(name, epoch, upTo) {
  request({ type: "history", room: name, limit: 100 }, (reply) => {
    if (reply.type !== "history" || reply.epoch !== epoch) return;
    const kept = reply.messages.filter((m) => m.offset <= upTo);
    if (kept.length) notice(name, "the last " + kept.length + " message" + (kept.length === 1 ? "" : "s") + " the server keeps:");
    for (const m of kept) show(name, m.from, m.data, m.offset);
  });
}

function announce(name) {
  request({ type: "publish", room: name, data: { name: state.name, joined: true } });
}

function handle(msg) {
  switch (msg.type) {
    case "welcome":
      state.myId = msg.conn_id;
      state.names.set(msg.conn_id, state.name);
      break;
    case "ack":
    case "error":
    case "history":
    case "presence": {
      const cb = state.pending.get(msg.id);
      if (cb) { state.pending.delete(msg.id); cb(msg); }
      else if (msg.type === "error") notice(state.current, msg.code + ": " + msg.message, true);
      break;
    }
    case "message": {
      const r = room(msg.room);
      const offset = msg.offset !== undefined ? msg.offset : msg.seq;
      if (msg.epoch !== undefined) {
        // A replayed or duplicated message is shown once.
        if (r.epoch === msg.epoch && r.offset !== null && offset <= r.offset) return;
        if (r.epoch !== msg.epoch) r.epoch = msg.epoch;
        r.offset = offset;
      }
      show(msg.room, msg.from, msg.data, offset);
      break;
    }
  }
}

function show(room, from, payload, offset) {
  const data = payload || {};
  const who = typeof data.name === "string" ? data.name : (from || "server");
  if (from && typeof data.name === "string") state.names.set(from, data.name);
  if (data.joined) {
    add(room, { notice: who + " joined" });
  } else {
    add(room, { who, text: typeof data.text === "string" ? data.text : JSON.stringify(payload), offset });
  }
}

function notice(name, text, bad) {
  if (name) add(name, { notice: text, bad });
}

function add(name, item) {
  const r = room(name);
  r.items.push(item);
  if (r.items.length > 500) r.items.shift();
  if (name === state.current) renderMessage(item);
  else { r.unread++; renderRooms(); }
}

function renderMessage(item) {
  const list = $("messages");
  const li = document.createElement("li");
  if (item.notice) {
    li.className = "notice" + (item.bad ? " bad" : "");
    li.textContent = item.notice;
  } else {
    const o = document.createElement("span");
    o.className = "offset";
    o.textContent = item.offset !== undefined ? "#" + item.offset : "";
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = item.who;
    const t = document.createElement("span");
    t.className = "text";
    t.textContent = item.text;
    li.append(o, w, t);
  }
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function renderRooms() {
  const ul = $("rooms");
  ul.textContent = "";
  for (const [name, r] of state.rooms) {
    const li = document.createElement("li");
    li.dataset.room = name;
    li.className = name === state.current ? "active" : "";
    li.append(name);
    if (r.unread) {
      const u = document.createElement("span");
      u.className = "unread";
      u.textContent = r.unread;
      li.append(u);
    }
    li.onclick = () => select(name);
    ul.append(li);
  }
}

function select(name) {
  state.current = name;
  const r = room(name);
  r.unread = 0;
  $("room-title").textContent = name;
  $("messages").textContent = "";
  r.items.forEach(renderMessage);
  $("text").disabled = $("send").disabled = false;
  renderRooms();
  renderMembers();
  refreshPresence();
}

function refreshPresence() {
  const name = state.current;
  if (!name || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  request({ type: "presence", room: name }, (reply) => {
    if (reply.type !== "presence") return;
    const r = room(name);
    r.members = reply.members;
    r.count = reply.count;
    if (name === state.current) renderMembers();
  });
}

function renderMembers() {
  const r = state.current ? room(state.current) : { members: [], count: 0 };
  const ul = $("members");
  ul.textContent = "";
  $("member-count").textContent = state.current ? "(" + r.count + ")" : "";
  for (const id of r.members) {
    const li = document.createElement("li");
    li.textContent = state.names.get(id) || "conn " + id;
    if (id === state.myId) li.className = "me";
    ul.append(li);
  }
}

$("login").onsubmit = (e) => {
  e.preventDefault();
  state.name = $("name").value.trim() || "guest";
  localStorage.setItem("wsedge-demo-name", state.name);
  if (state.ws) {
    state.wanted = false;
    state.ws.close(1000, "reconnecting");
    state.ws = null;
  }
  state.wanted = true;
  state.attempt = 0;
  connect();
};

$("join").onsubmit = (e) => {
  e.preventDefault();
  const name = $("room-input").value.trim();
  if (!name) return;
  if (!state.rooms.has(name)) {
    room(name);
    subscribe(name, false);
  }
  select(name);
};

$("compose").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !state.current) return;
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    notice(state.current, "not connected: the message was not sent", true);
    return;
  }
  request({ type: "publish", room: state.current, data: { name: state.name, text } }, (reply) => {
    if (reply.type === "error") notice(state.current, "not sent: " + reply.message, true);
  });
  $("text").value = "";
};

$("name").value = localStorage.getItem("wsedge-demo-name") || "";
setInterval(refreshPresence, PRESENCE_EVERY_MS);
