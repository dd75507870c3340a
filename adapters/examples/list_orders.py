#!/usr/bin/env python3
"""A pollhook exec adapter: print every item of a paged JSON API, one JSON object per line.

Usage: list_orders.py BASE_URL. pollhook sets POLLHOOK_PATH to the resource's path (its name unless
set). A failure raises, so the script exits non-zero and pollhook keeps its snapshot.
"""
import json, os, sys, urllib.request

base = sys.argv[1].rstrip("/")
path = os.environ.get("POLLHOOK_PATH", "orders").lstrip("/")
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from the environment
page = 1
while True:
    with http.open(f"{base}/{path}?page={page}&per_page=100", timeout=20) as response:
        items = json.load(response)
    if not items:
        break
    for item in items:
        print(json.dumps({**item, "via": "python"}))
    page += 1
