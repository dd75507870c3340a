// What the dashboard's browser tests share: a fake source and a receiver (Node http servers on
// 127.0.0.1), the real `target/debug/pollhook run` against them, and Debian's chromium driven by
// playwright-core. Everything listens on loopback, on ports the kernel picks; everything started
// here is stopped by the test's `after`.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "..", "..");
export const screenshots = path.join(here, "screenshots");
const binary = process.env.POLLHOOK_BIN || path.join(repo, "target", "debug", "pollhook");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

/** How long anything here waits for something to happen. */
export const PATIENCE_MS = 15_000;

function listen(handler) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(handler);
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function origin(server) {
  return `http://127.0.0.1:${server.address().port}`;
}

/** A REST API whose `/orders` returns `items` (change it between polls). */
export async function fakeSource(items) {
  const state = { items };
  const server = await listen((req, res) => {
    if (req.url.startsWith("/orders")) {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(state.items));
    } else {
      res.writeHead(404).end();
    }
  });
  return { state, url: origin(server), close: () => server.close() };
}

/** A webhook receiver that records each body and answers `state.status`. */
export async function receiver(status) {
  const state = { status, received: [] };
  const server = await listen((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      state.received.push({ status: state.status, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(state.status, { "Content-Type": "text/plain" });
      res.end(state.status < 300 ? "ok" : "receiver is down");
    });
  });
  return { state, url: origin(server), close: () => server.close() };
}

/** The config file's text. */
function config({ dir, source, hook, token }) {
  return `
[storage]
path = ${JSON.stringify(path.join(dir, "pollhook.db"))}

[server]
listen = "127.0.0.1:0"
${token ? `admin_token = ${JSON.stringify(token)}` : ""}

[delivery]
allow_http = true
allow_networks = ["127.0.0.0/8"]
retries = []

[[sources]]
name = "shop"
adapter = "rest"
base_url = ${JSON.stringify(source)}

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "1h"
  id = "id"
  pagination = { style = "none" }

[[endpoints]]
name = "erp"
url = ${JSON.stringify(`${hook}/hook`)}
secret = "a-test-secret-of-some-length-1234"
`;
}

/** `pollhook run` against `source` and `hook`; resolves once its admin API listens. */
export async function startPollhook({ source, hook, token }) {
  if (!existsSync(binary)) throw new Error(`${binary} is missing: run \`cargo build\` first`);
  const dir = mkdtempSync(path.join(tmpdir(), "pollhook-ui-"));
  const file = path.join(dir, "pollhook.toml");
  writeFileSync(file, config({ dir, source, hook, token }));
  const child = spawn(binary, ["--config", file, "run"], {
    env: { PATH: process.env.PATH, POLLHOOK_LOG: "info", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const admin = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pollhook did not listen in time:\n${log}`)), PATIENCE_MS);
    const onData = (chunk) => {
      log += chunk;
      const match = /Admin API listening\..*?addr=(\S+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(`http://${match[1]}`);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`pollhook exited with ${code}:\n${log}`)));
  });
  // Stops it, then removes its directory (config, database) once it has exited.
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  return { admin, log: () => log, stop };
}

/** Chromium with a fresh profile and nothing that talks to the network on its own. */
export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), "pollhook-ui-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  // Closing the browser also removes its profile.
  const close = context.close.bind(context);
  context.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return context;
}

/** Saves a full-page screenshot under tests/ui/screenshots/ (git-ignored). */
export async function screenshot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

/** Polls `check` until it returns something truthy. */
export async function eventually(what, check) {
  const until = Date.now() + PATIENCE_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
