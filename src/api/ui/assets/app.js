// pollhook dashboard: the little behaviour the server-rendered pages need, and nothing inline
// (the Content-Security-Policy forbids it). Every action calls the JSON API with fetch and a JSON
// body, like the CLI's HTTP twin; the session cookie rides along (same origin, SameSite=Strict).
//
// - <time datetime>: shown in the browser's time zone, the UTC text as the title.
// - button[data-api]: sends data-method to data-api with data-body, asks data-confirm first.
// - form[data-api-form]: its fields as JSON (data-list: comma-separated → array, data-bool: checkbox).
// - [data-live][id]: re-fetched every few seconds from the same URL and swapped in place, keeping
//   the scroll position, open <details>, the focused button and every form outside them.
// - Sources rows with data-last-change: marked until their events have been looked at.
"use strict";

const REFRESH_MS = 5000;
const SEEN_PREFIX = "pollhook.seen.";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(at.getTime())) continue;
    if (!el.dataset.utc) el.dataset.utc = el.textContent.trim();
    el.title = el.dataset.utc;
    el.textContent = at.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }
}

function flash(text, ok) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = text;
  box.className = ok ? "ok" : "fail";
  box.setAttribute("role", ok ? "status" : "alert");
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function callApi(method, url, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined && body !== null) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401 && !url.startsWith("/ui/login")) {
    window.location.assign("/ui/login");
    throw new Error("the session has ended: log in again");
  }
  if (!response.ok) throw new Error(await errorText(response));
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : null;
}

function describe(label, result) {
  if (!result) return `${label}: done.`;
  if (typeof result.queued === "number") return `${label}: ${result.queued} queued.`;
  if (Array.isArray(result.queued_for)) {
    return result.queued_for.length
      ? `${label}: queued for ${result.queued_for.join(", ")}.`
      : `${label}: no endpoint wants this event.`;
  }
  if (typeof result.accepted_deletes === "number") {
    return `${label}: ${result.accepted_deletes} deletes applied at the next poll.`;
  }
  if (result.event_id) return `${label}: ${result.type} queued (${result.event_id}).`;
  if (typeof result.listed === "number") {
    const events = (result.events || []).length;
    return `${label}: ${result.listed} items listed in ${result.pages} pages, ${events} events.`;
  }
  if (result.state) return `${result.name}: now ${result.state}.`;
  if (result.name) return `${label}: ${result.name}.`;
  return `${label}: done.`;
}

function showSecret(result) {
  const box = document.getElementById("secret-shown");
  if (!box || !result || !result.secret) return;
  document.getElementById("secret-value").textContent = result.secret;
  const overlap = document.getElementById("secret-overlap");
  overlap.textContent = result.previous_secret_valid_for_secs
    ? `The previous secret keeps signing too for ${Math.round(result.previous_secret_valid_for_secs / 3600)} h.`
    : "";
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

async function onAction(button) {
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  const label = button.textContent.trim();
  button.disabled = true;
  try {
    const result = await callApi(button.dataset.method || "POST", button.dataset.api, button.dataset.body);
    flash(describe(label, result), true);
    if (button.hasAttribute("data-show-secret")) showSecret(result);
    await refresh();
  } catch (error) {
    flash(`${label} failed: ${error.message}`, false);
  } finally {
    button.disabled = false;
  }
}

function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    if (field.hasAttribute("data-bool")) {
      body[field.name] = field.checked;
    } else if (field.hasAttribute("data-list")) {
      const items = field.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (items.length) body[field.name] = items;
    } else if (field.value.trim() !== "") {
      body[field.name] = field.value.trim();
    }
  }
  return body;
}

async function onApiForm(form) {
  const submit = form.querySelector("button[type=submit]");
  if (submit) submit.disabled = true;
  try {
    const result = await callApi("POST", form.dataset.apiForm, formBody(form));
    flash(describe("Added", result), true);
    if (form.hasAttribute("data-show-secret")) showSecret(result);
    form.reset();
    await refresh();
  } catch (error) {
    flash(`Not added: ${error.message}`, false);
  } finally {
    if (submit) submit.disabled = false;
  }
}

async function onLogin(form) {
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    await callApi("POST", "/ui/login", { token: form.elements.token.value });
    window.location.assign("/ui/");
  } catch (e) {
    error.textContent = `Login refused: ${e.message}.`;
    form.elements.token.select();
  }
}

function markUnseen(root) {
  for (const row of root.querySelectorAll("tr[data-last-change]")) {
    const seen = localStorage.getItem(SEEN_PREFIX + row.dataset.resource);
    const unseen = !seen || new Date(row.dataset.lastChange) > new Date(seen);
    row.classList.toggle("unseen-row", unseen);
    const mark = row.querySelector(".unseen");
    if (mark) mark.hidden = !unseen;
  }
}

function rememberSeen() {
  if (window.location.pathname !== "/ui/events") return;
  const resource = new URLSearchParams(window.location.search).get("resource");
  if (resource) localStorage.setItem(SEEN_PREFIX + resource, new Date().toISOString());
}

let refreshing = false;

// The server's last HTML of each live region, so an unchanged one is left alone (a selection,
// a hover, a half-read error stay put).
const liveHtml = new Map();

function rememberLive() {
  for (const region of document.querySelectorAll("[data-live][id]")) {
    liveHtml.set(region.id, region.innerHTML);
  }
}

// Re-fetches this page and swaps each live region in place; forms live outside them.
async function refresh() {
  const regions = document.querySelectorAll("[data-live][id]");
  if (!regions.length || refreshing) return;
  refreshing = true;
  try {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected && new URL(response.url).pathname === "/ui/login") {
      window.location.assign("/ui/login");
      return;
    }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of regions) {
      const next = fresh.getElementById(region.id);
      if (!next || liveHtml.get(region.id) === next.innerHTML) continue;
      liveHtml.set(region.id, next.innerHTML);
      const open = [...region.querySelectorAll("details[open][id]")].map((d) => d.id);
      const focused = region.contains(document.activeElement) ? document.activeElement : null;
      const focusKey = focused && focused.dataset.api;
      region.replaceChildren(...next.childNodes);
      for (const id of open) {
        const details = document.getElementById(id);
        if (details) details.open = true;
      }
      if (focusKey) {
        const again = [...region.querySelectorAll("[data-api]")].find((b) => b.dataset.api === focusKey);
        if (again) again.focus({ preventScroll: true });
      }
      localTimes(region);
      markUnseen(region);
    }
  } catch (_) {
    // The server is restarting or the network is down: try again at the next tick.
  } finally {
    refreshing = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-api]");
  if (button) {
    event.preventDefault();
    onAction(button);
    return;
  }
  if (event.target.closest("button[data-logout]")) {
    callApi("POST", "/ui/logout").finally(() => window.location.assign("/ui/login"));
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.hasAttribute("data-login")) {
    event.preventDefault();
    onLogin(form);
  } else if (form.hasAttribute("data-api-form")) {
    event.preventDefault();
    onApiForm(form);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  rememberLive();
  localTimes(document);
  rememberSeen();
  markUnseen(document);
  window.setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, REFRESH_MS);
});
