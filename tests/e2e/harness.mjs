// Shared pieces of the browser tests: a wsedge process on a free loopback
// port (restartable on the same port), and headless Chromium through
// playwright-core (the Debian `chromium` package; no browser download).
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";

export const BIN = process.env.WSEDGE_BIN || path.resolve("target/release/wsedge");

export function chromiumPath() {
  for (const p of [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]) {
    if (p && existsSync(p)) return p;
  }
  throw new Error("no Chromium found: install the Debian package `chromium` (.ci/run does) or set CHROMIUM=/path");
}

export async function launch() {
  return chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--disable-gpu"] });
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, ms, proc) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`wsedge exited with status ${proc.exitCode}`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => { c.destroy(); resolve(true); });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`wsedge did not listen on ${port} within ${ms} ms`);
}

/// A wsedge process with `configToml` (plus --listen), restartable on the same port.
export class Server {
  constructor(configToml) {
    this.dir = mkdtempSync(path.join(tmpdir(), "wsedge-e2e-"));
    this.config = path.join(this.dir, "wsedge.toml");
    writeFileSync(this.config, configToml);
    this.proc = null;
    this.log = "";
  }
  async start(port) {
    this.port = port || this.port || (await freePort());
    this.proc = spawn(BIN, ["--config", this.config, "--listen", `127.0.0.1:${this.port}`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (d) => { this.log = (this.log + d).slice(-20000); };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    try {
      await waitForPort(this.port, 10000, this.proc);
    } catch (e) {
      throw new Error(`${e.message}\n--- wsedge output ---\n${this.log}`);
    }
    return this;
  }
  get url() { return `http://127.0.0.1:${this.port}`; }
  /// Stops the process with `signal` and waits for it to exit.
  async stop(signal = "SIGTERM") {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await exited;
    this.proc = null;
  }
}

/// Opens `n` WebSockets to `url` inside `page` and waits until all are open.
export async function openSockets(page, url, n) {
  return page.evaluate(async ({ url, n }) => {
    window.__socks = window.__socks || [];
    const opened = [];
    for (let i = 0; i < n; i++) {
      const ws = new WebSocket(url);
      window.__socks.push(ws);
      opened.push(new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; }));
    }
    await Promise.all(opened);
    return window.__socks.length;
  }, { url, n });
}

/// Publishes `texts` to `room` from a throwaway socket in `page`, each acked.
export async function publish(page, wsUrl, room, name, texts) {
  return page.evaluate(async ({ wsUrl, room, name, texts }) => {
    const ws = new WebSocket(wsUrl);
    await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
    let acked = 0;
    const done = new Promise((res) => {
      ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (m.type === "ack" && ++acked === texts.length) res();
      };
    });
    texts.forEach((text, i) => ws.send(JSON.stringify({ type: "publish", room, id: i + 1, data: { name, text } })));
    await done;
    ws.close(1000);
  }, { wsUrl, room, name, texts });
}
