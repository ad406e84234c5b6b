#!/usr/bin/env python3
"""Run lossc kernels with the reference JavaScript host (hosts/webgpu/lossc_host.js) in
headless Chromium's WebGPU (Dawn on SwiftShader; no GPU needed).

    scripts/webgpu_host.py CASES.json --out RESULTS.json [--chromium PATH] [--timeout S]

CASES.json is a list of {"name", "wgsl", "manifest", "data"} and, for gradients,
"backward_wgsl": a kernel's WGSL text, its manifest (as `lossc compile` writes it, with
its `backward` section for gradients) and a data object. The page imports the host
module, runs each case once and posts {total, losses, logs, errorWord, grads} or the
host's error; RESULTS.json maps each name to that. Non-finite numbers are written as the
strings "NaN", "Infinity", "-Infinity". Exit status: 0 when every case ran (its result
may still be an error the host reported), 2 when the harness could not run.

Chromium's launch, flags and clean-up are those of scripts/webgpu_validate.py.
"""

import argparse
import json
import os
import queue
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webgpu_validate as wv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_JS = os.path.join(ROOT, "hosts", "webgpu", "lossc_host.js")

PAGE = r"""<!doctype html>
<meta charset="utf-8">
<title>lossc WebGPU host</title>
<script type="module">
import { runKernel } from "/host/lossc_host.js";
const finite = (k, v) => typeof v === "number" && !Number.isFinite(v)
  ? (Number.isNaN(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")) : v;
async function post(ev) {
  try {
    await fetch("/event", {method: "POST", headers: {"Content-Type": "application/json"},
                           body: JSON.stringify(ev, finite)});
  } catch (e) { /* the harness times out if it never hears from us */ }
}
try {
  const adapter = navigator.gpu && await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter (navigator.gpu.requestAdapter() gave null)");
  const device = await adapter.requestDevice();
  device.addEventListener("uncapturederror", (e) => post({kind: "uncaptured", message: e.error.message}));
  await post({kind: "adapter", info: {vendor: adapter.info?.vendor, architecture: adapter.info?.architecture}});
  const cases = await (await fetch("/cases")).json();
  for (const c of cases) {
    await post({kind: "start", name: c.name});
    const t0 = performance.now();
    try {
      const options = c.backward_wgsl ? {backwardWgsl: c.backward_wgsl} : {};
      const result = await runKernel(device, c.wgsl, c.manifest, c.data, options);
      if (result.grads) {
        for (const g of Object.values(result.grads)) g.data = Array.from(g.data);
      }
      await post({kind: "result", name: c.name, result, ms: performance.now() - t0});
    } catch (e) {
      await post({kind: "result", name: c.name, error: String(e && e.message || e)});
    }
  }
  await post({kind: "done"});
} catch (e) {
  await post({kind: "fatal", message: String(e && e.message || e)});
}
</script>
"""


def run(args):
    if not (os.path.isfile(args.chromium) and os.access(args.chromium, os.X_OK)):
        raise wv.HarnessError(f"Chromium not found at {args.chromium} (install it: apt-get install -y chromium)")
    with open(args.cases, "rb") as fh:
        cases_json = fh.read()
    names = [c["name"] for c in json.loads(cases_json)]
    events = queue.Queue()
    with open(HOST_JS, "rb") as fh:
        host = fh.read()
    server, port = wv.serve({"/": ("text/html; charset=utf-8", PAGE.encode("utf-8")),
                             "/host/lossc_host.js": ("text/javascript; charset=utf-8", host),
                             "/cases": ("application/json", cases_json)}, events)
    profile = tempfile.mkdtemp(prefix="lossc-webgpu-host-")
    log = tempfile.TemporaryFile()
    proc = None
    results = {}
    uncaptured = []
    t_start = time.monotonic()
    try:
        proc = wv.launch(args.chromium, port, profile, log)
        current = None
        deadline = t_start + args.timeout
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise wv.HarnessError(f"timed out ({'running ' + current if current else 'starting'}); Chromium's output:\n" + wv.tail(log))
            if proc.poll() is not None:
                try:
                    ev = events.get(timeout=0.5)
                except queue.Empty:
                    raise wv.HarnessError(f"Chromium exited with status {proc.returncode}; its output:\n" + wv.tail(log))
            else:
                try:
                    ev = events.get(timeout=min(0.25, deadline - now))
                except queue.Empty:
                    continue
            kind = ev.get("kind")
            if kind == "fatal":
                raise wv.HarnessError("WebGPU unavailable or the page failed: " + ev.get("message", "?"))
            elif kind == "adapter":
                print(f"webgpu_host: adapter {ev.get('info')} after {time.monotonic() - t_start:.2f} s")
            elif kind == "start":
                current = ev.get("name")
            elif kind == "result":
                results[ev["name"]] = {k: ev[k] for k in ("result", "error", "ms") if k in ev}
                current = None
            elif kind == "uncaptured":
                uncaptured.append((current, ev.get("message")))
            elif kind == "done":
                break
    finally:
        wv.kill_group(proc)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
        log.close()
    for name, msg in uncaptured:
        results.setdefault(name or "?", {})["error"] = f"uncaptured WebGPU error: {msg}"
    missing = [n for n in names if n not in results]
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    ran = sum(1 for n in names if "result" in results.get(n, {}))
    print(f"webgpu_host: {ran}/{len(names)} cases ran in {time.monotonic() - t_start:.2f} s"
          + (f"; no answer for {', '.join(missing)}" if missing else ""))
    return 2 if missing else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default=os.environ.get("LOSSC_CHROMIUM", wv.DEFAULT_CHROMIUM))
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    try:
        return run(args)
    except wv.HarnessError as e:
        print(f"webgpu_host: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
