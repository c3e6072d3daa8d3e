// The demo chat (GET /) and the node dashboard (GET /dashboard) in a real
// headless Chromium: what a newcomer and an operator see. Run by `make e2e`
// (part of `make test`); SCREENSHOT_DIR=dir also saves both pages as PNGs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { Server, launch, openSockets, publish } from "./harness.mjs";

// Two workers, so rooms and the dashboard's numbers span workers;
// compression on, so the browser's own permessage-deflate offer is tested;
// history on, so a page that reconnects can recover.
const CONFIG = `
[server]
workers = 2
[log]
summary_interval_ms = 0
[compression]
enabled = true
threshold_bytes = 16
[pubsub]
history_size = 100
history_ttl_ms = 300000
`;

const SHOTS = process.env.SCREENSHOT_DIR;
let server;
let browser;

before(async () => {
  server = await new Server(CONFIG).start();
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function joinChat(name, room) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 640 } });
  const page = await ctx.newPage();
  await page.goto(server.url + "/");
  await page.fill("#name", name);
  await page.click("#connect");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.fill("#room-input", room);
  await page.click("#join button");
  await page.waitForSelector(`#rooms li[data-room="${room}"]`);
  return { ctx, page };
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

const messageText = (page) => page.locator("#messages li .text");

test("two browsers in one room see each other's messages and presence", async () => {
  const alice = await joinChat("alice", "chat:e2e");
  const bob = await joinChat("bob", "chat:e2e");
  try {
    await say(alice.page, "hello from alice");
    await say(bob.page, "hi alice, bob here");
    for (const { page } of [alice, bob]) {
      await messageText(page).filter({ hasText: "hello from alice" }).waitFor();
      await messageText(page).filter({ hasText: "hi alice, bob here" }).waitFor();
    }
    // Presence: both pages list two members, by name once each has spoken.
    for (const { page } of [alice, bob]) {
      await page.waitForFunction(() => document.querySelector("#member-count").textContent === "(2)");
      await page.waitForFunction(() => {
        const names = [...document.querySelectorAll("#members li")].map((li) => li.textContent).sort();
        return names.join(",") === "alice,bob";
      });
    }
    // Chromium's own permessage-deflate offer was agreed (and the messages
    // above went through it).
    const ext = await alice.page.evaluate(() => state.ws.extensions);
    assert.match(ext, /^permessage-deflate; server_no_context_takeover/);
    // Bob's page lists Alice's message once, and in order.
    const texts = await messageText(bob.page).allTextContents();
    assert.deepEqual(texts.filter((t) => t.includes("alice") || t.includes("bob")),
      ["hello from alice", "hi alice, bob here"]);
    if (SHOTS) await alice.page.screenshot({ path: path.join(SHOTS, "demo-chat.png") });
  } finally {
    await alice.ctx.close();
    await bob.ctx.close();
  }
});

test("after the server is killed and restarted, the page reconnects by itself and shows what it missed", async () => {
  const carol = await joinChat("carol", "chat:restart");
  const helperCtx = await browser.newContext();
  const helper = await helperCtx.newPage();
  try {
    await say(carol.page, "before the restart");
    await messageText(carol.page).filter({ hasText: "before the restart" }).waitFor();

    await server.stop("SIGKILL");
    await carol.page.waitForSelector('#status[data-state="reconnecting"]');
    await server.start();
    // Published while Carol's page is still waiting out its backoff (or
    // just after it came back): either way the page must show all three.
    await helper.goto(server.url + "/healthz");
    const wsUrl = server.url.replace("http", "ws") + "/ws";
    await publish(helper, wsUrl, "chat:restart", "dave", ["missed 1", "missed 2", "missed 3"]);

    await carol.page.waitForSelector('#status[data-state="connected"]', { timeout: 30000 });
    for (const t of ["missed 1", "missed 2", "missed 3"]) {
      await messageText(carol.page).filter({ hasText: t }).waitFor({ timeout: 30000 });
    }
    const texts = await messageText(carol.page).allTextContents();
    const missed = texts.filter((t) => t.startsWith("missed"));
    assert.deepEqual(missed, ["missed 1", "missed 2", "missed 3"], "each once, in order");
    // And the page is live again: a new message arrives.
    await say(carol.page, "after the restart");
    await messageText(carol.page).filter({ hasText: "after the restart" }).waitFor();
  } finally {
    await carol.ctx.close();
    await helperCtx.close();
  }
});

test("the dashboard's connection count moves when 100 clients connect", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1300, height: 900 } });
  const page = await ctx.newPage();
  const load = await ctx.newPage();
  try {
    await page.goto(server.url + "/dashboard");
    await page.waitForSelector('#status[data-state="connected"]');
    await page.waitForFunction(() => /^\d+$/.test(document.querySelector("#c-conns").textContent));
    const before = Number(await page.textContent("#c-conns"));
    await load.goto(server.url + "/healthz");
    await openSockets(load, server.url.replace("http", "ws") + "/echo", 100);
    await page.waitForFunction(
      (n) => Number(document.querySelector("#c-conns").textContent) >= n,
      before + 100,
      { timeout: 10000 },
    );
    // The charts are drawn by uPlot from the feed.
    assert.ok(await page.locator("#ch-conns .uplot").count() === 1);
    if (SHOTS) {
      await page.waitForTimeout(2500); // a few points on the charts
      await page.screenshot({ path: path.join(SHOTS, "dashboard.png"), fullPage: true });
    }
    await load.close();
    await page.waitForFunction(
      (n) => Number(document.querySelector("#c-conns").textContent) < n,
      before + 100,
      { timeout: 10000 },
    );
  } finally {
    await ctx.close();
  }
});
