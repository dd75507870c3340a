// The dashboard in a real browser: pollhook run against a fake source and a receiver, then what an
// operator does during an incident, page by page. Screenshots land in tests/ui/screenshots/.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import {
  eventually, fakeSource, launchBrowser, receiver, screenshot, startPollhook,
} from "./support.mjs";

/** The claims of a JWT-signed webhook (the endpoint's `signing = "jwt"`), as text. */
function claims(jwt) {
  const [, payload = ""] = jwt.split(".");
  return Buffer.from(payload, "base64url").toString("utf8");
}

describe("the dashboard without a token (loopback only)", () => {
  let source, hook, pollhook, browser, page;

  before(async () => {
    source = await fakeSource([
      { id: 1, name: "Desk", qty: 1 },
      { id: 2, name: "Chair", qty: 4 },
    ]);
    hook = await receiver(500);
    pollhook = await startPollhook({ source: source.url, hook: hook.url });
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await pollhook?.stop();
    source?.close();
    hook?.close();
  });

  test("Sources shows the resource, and Poll now finds a change", async () => {
    await page.goto(`${pollhook.admin}/ui/`);
    const row = page.locator('tr[data-resource="shop.orders"]');
    await eventually("the baseline poll", async () => {
      await page.reload();
      return (await row.locator("td.num").first().textContent()).trim() === "2";
    });
    assert.match(await row.textContent(), /every 1h/);
    assert.equal(await page.locator('nav a[aria-current="page"]').textContent(), "Sources");

    source.state.items = [
      { id: 1, name: "Desk", qty: 2 },
      { id: 2, name: "Chair", qty: 4 },
    ];
    await row.getByRole("button", { name: "Poll now" }).click();
    await page.locator("#flash.ok", { hasText: "1 events" }).waitFor();
    await row.locator("time").nth(1).waitFor();
    await screenshot(page, "sources");
    await page.emulateMedia({ colorScheme: "dark" });
    await screenshot(page, "sources-dark");
    await page.emulateMedia({ colorScheme: "light" });
  });

  test("Events lists the change, and its page shows the diff and its delivery", async () => {
    await page.goto(`${pollhook.admin}/ui/events?resource=shop.orders&action=updated`);
    assert.equal(await page.locator('select[name="action"]').inputValue(), "updated", "filters stay in the URL");
    const link = page.locator("#events a", { hasText: "evt_" }).first();
    await screenshot(page, "events");
    await link.click();
    await page.locator("h1", { hasText: "orders.updated" }).waitFor();
    const change = page.locator("table.diff tbody tr").first();
    assert.match(await change.locator("th").textContent(), /\/qty/);
    assert.equal((await change.locator("td.before").textContent()).trim(), "1");
    assert.equal((await change.locator("td.after").textContent()).trim(), "2");
    await page.locator("#event-deliveries", { hasText: "erp" }).waitFor();
    await screenshot(page, "event");
  });

  test("Deliveries shows the dead letter; Retry delivers it", async () => {
    await eventually("the receiver's 500", () => hook.state.received.length > 0);
    await page.goto(`${pollhook.admin}/ui/deliveries?status=failed`);
    const failed = page.locator('tbody[data-status="failed"]').first();
    await eventually("the dead letter on the page", async () => {
      if (await failed.count()) return true;
      await page.reload();
      return false;
    });
    assert.match(await failed.textContent(), /failed/);
    assert.match(await failed.textContent(), /500/);
    await failed.locator("summary").click();
    await failed.locator("ol.timeline li", { hasText: "receiver is down" }).waitFor();
    await screenshot(page, "deliveries");

    hook.state.status = 200;
    await failed.getByRole("button", { name: "Retry" }).click();
    await page.locator("#flash.ok", { hasText: "queued" }).waitFor();
    await eventually("a 200 at the receiver", () => hook.state.received.some((r) => r.status === 200));
    await page.goto(`${pollhook.admin}/ui/deliveries`);
    await eventually("delivered on the page", async () => {
      const text = await page.locator("#deliveries").textContent();
      if (/delivered/.test(text)) return true;
      await page.reload();
      return false;
    });
  });

  test("Endpoints: a test event arrives; the 24 h numbers count it", async () => {
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    const before = hook.state.received.length;
    await page.locator('tr[data-endpoint="erp"]').getByRole("button", { name: "Send test event" }).click();
    await page.locator("#flash.ok", { hasText: "pollhook.endpoint.test" }).waitFor();
    await eventually("the test event at the receiver", () =>
      hook.state.received.slice(before).some((r) => claims(r.body).includes("pollhook.endpoint.test")));
    // The live region refreshes by itself: 500, 200 (the retry), 200 (the test) = 3 attempts.
    await page.locator('tr[data-endpoint="erp"] td.num', { hasText: /^3$/ }).waitFor({ timeout: 15_000 });
    assert.match(await page.locator('tr[data-endpoint="erp"]').textContent(), /66 %/);
  });

  test("Endpoints: pause and resume", async () => {
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    const row = page.locator('tr[data-endpoint="erp"]');
    assert.equal(await row.getAttribute("data-state"), "active");
    assert.doesNotMatch(await page.content(), /a-test-secret-of-some-length-1234/, "the secret is never shown");
    await row.getByRole("button", { name: "Pause" }).click();
    await page.locator('tr[data-endpoint="erp"][data-state="paused"]').waitFor();
    assert.match(await page.locator('tr[data-endpoint="erp"]').textContent(), /paused/);
    await page.locator('tr[data-endpoint="erp"]').getByRole("button", { name: "Resume" }).click();
    await page.locator('tr[data-endpoint="erp"][data-state="active"]').waitFor();
    await page.locator('tr[data-endpoint="erp"] td.num', { hasText: /^3$/ }).waitFor();
    await screenshot(page, "endpoints");
  });

  test("Endpoints: add one with backfill, rotate its secret once, remove it", async () => {
    page.on("dialog", (dialog) => dialog.accept());
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    const before = hook.state.received.length;
    const form = page.locator("#add-endpoint");
    await form.getByLabel("Name").fill("audit");
    await form.getByLabel("URL").fill(`${hook.url}/audit`);
    await form.getByLabel(/Backfill/).check();
    await form.getByRole("button", { name: "Add endpoint" }).click();
    await page.locator("#flash.ok", { hasText: "audit" }).waitFor();
    const shown = await page.locator("#secret-value").textContent();
    assert.ok(shown.length >= 16, `a generated secret is shown once: ${shown}`);
    await page.locator('tr[data-endpoint="audit"]').waitFor();
    await eventually("the backfill at the receiver", () => hook.state.received.length >= before + 2);

    await page.locator('tr[data-endpoint="audit"]').getByRole("button", { name: "Rotate secret" }).click();
    await page.locator("#secret-overlap", { hasText: "24 h" }).waitFor();
    const rotated = await page.locator("#secret-value").textContent();
    assert.notEqual(rotated, shown);
    await page.reload();
    const html = await page.content();
    assert.ok(!html.includes(shown) && !html.includes(rotated), "a secret is never rendered by the server");

    await page.locator('tr[data-endpoint="audit"]').getByRole("button", { name: "Remove" }).click();
    await page.locator('tr[data-endpoint="audit"]').waitFor({ state: "detached" });
    page.removeAllListeners("dialog");
  });

  test("a cross-site form post is refused", async () => {
    // Another origin's page (a port is an origin) with a plain HTML form aimed at the dashboard's API.
    const target = `${pollhook.admin}/api/v1/endpoints/erp/pause`;
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end(`<form method="post" action="${target}"><input name="x" value="1"><button>Win a prize</button></form>`);
    });
    await new Promise((r) => evil.listen(0, "127.0.0.1", r));
    try {
      await page.goto(`http://localhost:${evil.address().port}/`);
      const [response] = await Promise.all([
        page.waitForResponse(target),
        page.getByRole("button", { name: "Win a prize" }).click(),
      ]);
      assert.equal(response.status(), 403);
      assert.match(await response.text(), /cross_origin/);
    } finally {
      evil.close();
    }
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    assert.equal(await page.locator('tr[data-endpoint="erp"]').getAttribute("data-state"), "active");
  });

  test("every page carries a strict Content-Security-Policy", async () => {
    const response = await page.goto(`${pollhook.admin}/ui/`);
    const csp = response.headers()["content-security-policy"];
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
  });
});

describe("the dashboard with an admin token", () => {
  const token = "correct-horse-battery-staple-0042";
  let source, hook, pollhook, browser, page;

  before(async () => {
    // Ten items: the delete guard watches snapshots of at least ten (src/diff.rs).
    source = await fakeSource(Array.from({ length: 10 }, (_, i) => ({ id: i + 1, name: `Item ${i + 1}` })));
    hook = await receiver(200);
    pollhook = await startPollhook({ source: source.url, hook: hook.url, token });
    browser = await launchBrowser();
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await pollhook?.stop();
    source?.close();
    hook?.close();
  });

  test("a wrong token is refused, the right one opens a session, logout ends it", async () => {
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    assert.equal(new URL(page.url()).pathname, "/ui/login");
    await page.getByLabel("Admin token").fill("not-the-token");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("#login-error", { hasText: "not the admin token" }).waitFor();
    await screenshot(page, "login");
    assert.equal((await browser.cookies()).length, 0);

    await page.getByLabel("Admin token").fill(token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${pollhook.admin}/ui/`);
    await page.locator('tr[data-resource="shop.orders"]').waitFor();
    assert.ok(!page.url().includes(token), "never a token in the URL");
    const [cookie] = await browser.cookies();
    assert.equal(cookie.name, "pollhook_session");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.ok(!cookie.value.includes(token));

    // The API takes the session like the bearer token: the buttons work.
    await page.goto(`${pollhook.admin}/ui/endpoints`);
    await page.locator('tr[data-endpoint="erp"]').getByRole("button", { name: "Pause" }).click();
    await page.locator('tr[data-endpoint="erp"][data-state="paused"]').waitFor();

    await page.getByRole("button", { name: "Log out" }).click();
    await page.waitForURL(`${pollhook.admin}/ui/login`);
    const api = await page.request.get(`${pollhook.admin}/api/v1/endpoints`);
    assert.equal(api.status(), 401);
  });

  test("held-back deletes stand out on Sources; Accept lets the next poll apply them", async () => {
    page.on("dialog", (dialog) => dialog.accept());
    await page.goto(`${pollhook.admin}/ui/login`);
    await page.getByLabel("Admin token").fill(token);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForURL(`${pollhook.admin}/ui/`);
    const row = page.locator('tr[data-resource="shop.orders"]');
    await eventually("the baseline poll", async () => {
      await page.reload();
      return (await row.locator("td.num").first().textContent()).trim() === "10";
    });
    source.state.items = source.state.items.slice(0, 2); // 8 of 10 gone: over max_delete_ratio
    await row.getByRole("button", { name: "Poll now" }).click();
    await row.locator(".badge.warn", { hasText: "8 held" }).waitFor();
    await row.getByRole("button", { name: "Accept" }).click();
    await page.locator("#flash.ok", { hasText: "applied at the next poll" }).waitFor();
    await row.getByRole("button", { name: "Poll now" }).click();
    await eventually("the deletes applied", async () =>
      (await row.locator("td.num").first().textContent()).trim() === "2");
    assert.doesNotMatch(await row.textContent(), /held/);
    page.removeAllListeners("dialog");
  });
});
