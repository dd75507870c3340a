#!/usr/bin/env python3
"""pollhook next to urlwatch on the same listing, in one run.

    cargo build --release && python3 benches/urlwatch.py

10,000 items of ~500 bytes in 100 pages of 100, json-server's shape (a bare array per page,
`?_page=N&_limit=100`, RFC 8288 `Link` headers to the first, previous, next and last pages and an
`X-Total-Count` as json-server 0.17 sends them, Express's weak `ETag` with `304` to a matching
`If-None-Match`, `/items/ID` for one item), served
as bytes prepared in advance by a threaded server on 127.0.0.1. urlwatch (installed from PyPI into
a virtualenv of its own) watches the 100 page URLs and reports text diffs per page; pollhook
(`pollhook poll`, the release binary, adapter `json-server`) lists the pages and reports per-item
events. Both start from a recorded state (urlwatch's cache, pollhook's baseline) and run as whole
processes, alternately, for each figure:

- no change: nothing changed since the recorded state;
- 1 % changed: 100 items created, updated or deleted (a third each) since the recorded state.

Each round restores the recorded state first (copies of urlwatch's cache and pollhook's database),
so every timed run does the same work. pollhook runs twice a round: as the adapter sets it (up to 4
pages in flight, named ahead by the `Link` header's `rel="last"`) and with `page_concurrency = 1`.
Environment: `ROUNDS=7`, `POLLHOOK_BIN` (default `target/release/pollhook`), `URLWATCH_VERSION`
(default: the newest on PyPI), `LATENCY_MS=0` (each answer waits this long before its first byte, as
a remote API's would).
"""

import base64
import hashlib
import http.server
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from pathlib import Path

ITEMS = 10_000
PER_PAGE = 100
ROUNDS = int(os.environ.get("ROUNDS", "7"))
LATENCY = float(os.environ.get("LATENCY_MS", "0")) / 1000
ROOT = Path(__file__).resolve().parent.parent
POLLHOOK = Path(os.environ.get("POLLHOOK_BIN", ROOT / "target" / "release" / "pollhook"))


def item(i, version):
    rng = random.Random(i * 7919 + version)
    return {
        "id": i,
        "version": version,
        "status": rng.choice(["pending", "paid", "shipped", "delivered"]),
        "customer": {"name": f"Customer {i}", "email": f"c{i}@example.com", "tier": rng.randint(1, 4)},
        "lines": [
            {"sku": f"SKU-{rng.randint(1000, 9999)}", "qty": rng.randint(1, 5), "price": rng.randint(100, 99999) / 100}
            for _ in range(3)
        ],
        "note": "x" * rng.randint(40, 120),
        "updated_at": f"2026-11-{1 + i % 28:02d}T10:00:00Z",
    }


class Listing:
    """The items as pages of bytes, rebuilt after each change."""

    def __init__(self):
        self.items = {i: item(i, 1) for i in range(1, ITEMS + 1)}
        self.lock = threading.Lock()
        self.port = 0
        self.rebuild()

    def rebuild(self):
        ids = sorted(self.items)
        pages = [ids[k : k + PER_PAGE] for k in range(0, len(ids), PER_PAGE)] or [[]]
        built = {}
        for n, page in enumerate(pages, start=1):
            body = json.dumps([self.items[i] for i in page], indent=2).encode()
            built[n] = body
        built[len(pages) + 1] = b"[]"
        tags = {n: express_etag(body) for n, body in built.items()}
        with self.lock:
            self.pages = built
            self.tags = tags
            self.one = {i: json.dumps(self.items[i]).encode() for i in ids}

    def change_one_percent(self, seed):
        rng = random.Random(seed)
        ids = sorted(self.items)
        n = ITEMS // 100
        for i in rng.sample(ids, n // 3):
            self.items[i] = item(i, self.items[i]["version"] + 1)
        for i in rng.sample([i for i in ids if i in self.items], n // 3):
            del self.items[i]
        top = max(ids)
        for k in range(n - 2 * (n // 3)):
            self.items[top + 1 + k] = item(top + 1 + k, 1)
        self.rebuild()


def express_etag(body):
    """The weak ETag Express (and so json-server) puts on every response it sends."""
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()[:27]
    return f'W/"{len(body):x}-{digest}"'


def serve(listing):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold every kept-alive response back ~40 ms.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            if LATENCY:
                time.sleep(LATENCY)
            path, _, query = self.path.partition("?")
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            with listing.lock:
                if path == "/items":
                    page = int(params.get("_page", "1"))
                    body = listing.pages.get(page, b"[]")
                    tag = listing.tags.get(page, express_etag(body))
                    last, total = len(listing.pages) - 1, len(listing.one)
                else:
                    body = listing.one.get(int(path.rsplit("/", 1)[-1] or 0)) if path.startswith("/items/") else None
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path == "/items" and self.headers.get("If-None-Match") == tag:
                # Express answers a matching If-None-Match with 304 and no body.
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if path == "/items":
                self.send_header("ETag", tag)
                # What json-server 0.17 sends with `_page`: the count before paging, and
                # first/prev/next/last links made by replacing `page=N` in the URL asked for.
                self.send_header("X-Total-Count", str(total))
                self.send_header("Access-Control-Expose-Headers", "X-Total-Count, Link")
                if page <= last:
                    full = f"http://127.0.0.1:{listing.port}{self.path}"
                    rels = [("first", 1), ("prev", page - 1), ("next", page + 1), ("last", last)]
                    links = [
                        f'<{full.replace(f"page={page}", f"page={n}")}>; rel="{rel}"'
                        for rel, n in rels
                        if (rel != "prev" or page > 1) and (rel != "next" or page < last)
                    ]
                    self.send_header("Link", ", ".join(links))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    listing.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def install_urlwatch(work):
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    spec = "urlwatch" + (f"=={os.environ['URLWATCH_VERSION']}" if os.environ.get("URLWATCH_VERSION") else "")
    subprocess.run([env_dir / "bin" / "pip", "install", "-q", spec], check=True)
    version = subprocess.run([env_dir / "bin" / "urlwatch", "--version"], capture_output=True, text=True, check=True)
    return env_dir / "bin" / "urlwatch", version.stdout.strip()


def timed(argv, **kw):
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def main():
    if not POLLHOOK.exists():
        sys.exit(f"{POLLHOOK}: build it first (cargo build --release) or set POLLHOOK_BIN")
    work = Path(tempfile.mkdtemp(prefix="pollhook-urlwatch-"))
    try:
        urlwatch, uw_version = install_urlwatch(work)
        listing = Listing()
        server = serve(listing)
        base = f"http://127.0.0.1:{listing.port}"

        # urlwatch: one job per page, its own config, cache and (empty) hooks; the stdout reporter.
        pages = ITEMS // PER_PAGE
        (work / "urls.yaml").write_text(
            "\n---\n".join(f"name: page {n}\nurl: {base}/items?_page={n}&_limit={PER_PAGE}" for n in range(1, pages + 1))
        )
        (work / "hooks.py").write_text("")
        uw = [str(urlwatch), "--urls", str(work / "urls.yaml"), "--config", str(work / "urlwatch.yaml"),
              "--hooks", str(work / "hooks.py"), "--cache", str(work / "cache.db")]
        uw_env = dict(os.environ, HOME=str(work), URLWATCH_URLS=str(work / "urls.yaml"))

        # pollhook: the json-server adapter on the same server; a poll commits a transaction.
        (work / "pollhook.toml").write_text(
            f'[storage]\npath = "{work / "pollhook.db"}"\n\n'
            f'[[sources]]\nname = "shop"\nadapter = "json-server"\nbase_url = "{base}"\n\n'
            f'  [[sources.resources]]\n  name = "items"\n  path = "/items"\n  every = "1h"\n'
            f'  query = {{ _page = "1", _limit = "{PER_PAGE}" }}\n  max_delete_ratio = 1.0\n'
        )
        ph = [str(POLLHOOK), "--config", str(work / "pollhook.toml"), "poll", "shop.items"]
        # The same, one page after another.
        one = (work / "pollhook.toml").read_text().replace('base_url = "', 'page_concurrency = 1\nbase_url = "')
        (work / "pollhook-1.toml").write_text(one)
        ph1 = [str(POLLHOOK), "--config", str(work / "pollhook-1.toml"), "poll", "shop.items"]

        # The recorded state: urlwatch's first run fills its cache, pollhook's first poll is its baseline.
        timed(uw, env=uw_env)
        timed(ph)
        for f in ("cache.db", "pollhook.db"):
            shutil.copy(work / f, work / f"{f}.recorded")

        def restore():
            for f in ("cache.db", "pollhook.db"):
                shutil.copy(work / f"{f}.recorded", work / f)
                for extra in ("-wal", "-shm"):
                    (work / f"{f}{extra}").unlink(missing_ok=True)

        results = {}
        for label, change in (("no change", False), ("1 % changed", True)):
            if change:
                listing.change_one_percent(seed=2026)
            times = {"uw": [], "ph": [], "ph1": []}
            for r in range(ROUNDS):
                order = [("uw", uw), ("ph", ph), ("ph1", ph1)]
                order = order if r % 2 == 0 else order[::-1]
                for who, argv in order:
                    restore()
                    elapsed, out = timed(argv, env=uw_env if who == "uw" else None)
                    times[who].append(elapsed)
                    if change and who == "ph" and r == 0:
                        print(f"  pollhook: {out.strip().splitlines()[-1] if out.strip() else '(no output)'}")
            results[label] = {who: (statistics.median(t), min(t)) for who, t in times.items()}

        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        ph_version = subprocess.run([str(POLLHOOK), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"\n{ITEMS} items in {pages} pages; {uw_version} vs {ph_version}; {ROUNDS} alternating rounds; "
              f"latency {LATENCY * 1000:.0f} ms; CPU {cpu}")
        print(f"{'':14}{'urlwatch':>10}{'pollhook':>10}{'ratio':>8}{'1 page':>10}{'ratio':>8}"
              "   (median s; min in brackets: urlwatch / pollhook / 1 page)")
        for label, r in results.items():
            (u, umin), (p, pmin), (p1, p1min) = r["uw"], r["ph"], r["ph1"]
            print(f"{label:14}{u:>10.3f}{p:>10.3f}{u / p:>7.1f}×{p1:>10.3f}{u / p1:>7.1f}×"
                  f"   [{umin:.3f} / {pmin:.3f} / {p1min:.3f}]")
        server.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
