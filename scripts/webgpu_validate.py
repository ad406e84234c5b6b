#!/usr/bin/env python3
"""Validate WGSL compute kernels with an independent compiler: Tint, inside headless
Chromium's WebGPU (Dawn on its bundled SwiftShader adapter; no GPU needed).

    scripts/webgpu_validate.py DIR_OR_FILE... [--timeout S] [--json FILE] [--no-manifest]

For every `*.wgsl` file (folders are searched non-recursively), the page that this script
serves to Chromium

  1. creates the shader module inside validation, internal and out-of-memory error scopes
     and awaits `getCompilationInfo()` (Tint's parse, resolve and uniformity errors,
     warnings and notes, with line:col);
  2. creates a compute pipeline with `createComputePipelineAsync` (layout `auto`, the entry
     point the manifest names, else `main`): Dawn's pipeline validation (workgroup size and
     storage, resource limits), Tint's SPIR-V generation and SwiftShader's compilation;
  3. when `NAME.manifest.json` lies beside the module (as `lossc compile` writes it), checks
     the manifest against the shader: a second pipeline whose explicit layout is built from
     the manifest's bindings, as a host following the manifest would build it (every binding
     the shader uses must be there, with exactly the shader's buffer type, and a
     minBindingSize, from the manifest's type, no smaller than the shader needs), and the
     manifest's workgroup size against the shader's `@workgroup_size`. This pipeline is
     compiled too, so it about doubles the time; `--no-manifest` skips it.

A module passes when none of that reports an error (warnings are printed, not fatal). The
script prints one line per module and a summary, and exits 0 when every module passes, 1
when any fails, 2 when the harness cannot run (no Chromium, no WebGPU, a timeout).

Results come back by the page POSTing them to an HTTP server this script runs on
127.0.0.1 (ephemeral port); every wait is bounded. Chromium gets a fresh profile in a
temporary folder, resolves no host but 127.0.0.1, and is killed (its whole process group)
at the end. Python 3 standard library only.
"""

import argparse
import glob
import http.server
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

DEFAULT_CHROMIUM = "/usr/lib/chromium/chromium"

# From shared/notes/webgpu-in-headless-chromium.md: the flags that give WebGPU on SwiftShader
# in headless Chromium running as root, with no network but loopback.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

PAGE = r"""<!doctype html>
<meta charset="utf-8">
<title>lossc WGSL validation</title>
<script>
"use strict";
async function post(ev) {
  try {
    await fetch("/event", {method: "POST", headers: {"Content-Type": "application/json"},
                           body: JSON.stringify(ev)});
  } catch (e) { /* the harness times out if it never hears from us */ }
}
function errText(e) {
  if (e === null || e === undefined) return String(e);
  return (e.constructor && e.constructor.name ? e.constructor.name + ": " : "") + (e.message || String(e));
}

// Manifest binding types, as src/codegen/manifest.rs writes them: "uniform T",
// "storage, read: T", "storage, read_write: T".
function bufferType(ty) {
  if (/^uniform\b/.test(ty)) return "uniform";
  if (/^storage\s*,\s*read\s*:/.test(ty)) return "read-only-storage";
  if (/^storage\s*,\s*read_write\s*:/.test(ty)) return "storage";
  if (/^storage\b/.test(ty)) return "read-only-storage";  // WGSL's default access
  return null;
}
// The least byte size a buffer for `ty` needs: a fixed array's whole size, a runtime
// array's one element. Only the shapes lossc emits are understood; else 0 (no bound).
function minSize(ty) {
  const t = ty.replace(/^[^:]*:\s*/, "").replace(/^uniform\s+/, "").replace(/\s+/g, "");
  const scalar = {"f32": 4, "i32": 4, "u32": 4, "atomic<u32>": 4, "atomic<i32>": 4, "f16": 2};
  const vec = /^vec([234])<(f32|i32|u32)>$/;
  const elem = (e) => {
    if (e in scalar) return scalar[e];
    const m = vec.exec(e);
    if (m) return m[1] === "3" ? 16 : 4 * Number(m[1]);
    return null;
  };
  let m = /^array<(.+),(\d+)u?>$/.exec(t);
  if (m && elem(m[1]) !== null) {
    const e = elem(m[1]);
    const stride = /^uniform/.test(ty) ? Math.max(16, e) : e;
    return stride * Number(m[2]);
  }
  m = /^array<(.+)>$/.exec(t);
  if (m && elem(m[1]) !== null) return elem(m[1]);
  if (elem(t) !== null) return elem(t);
  return 0;
}

function wgslWorkgroupSize(code, entry) {
  const re = new RegExp("@workgroup_size\\(([^)]*)\\)[\\s\\S]{0,200}?\\bfn\\s+" + entry + "\\b");
  const m = re.exec(code);
  if (!m) return null;
  const parts = m[1].split(",").map(s => s.trim().replace(/[iu]$/, ""));
  if (!parts.every(p => /^\d+$/.test(p))) return null;  // an override or const: unknown here
  const xs = parts.map(Number);
  while (xs.length < 3) xs.push(1);
  return xs;
}

// Checks the manifest against the shader, as a host that follows it would bind: one
// explicit bind group layout per group, of the manifest's binding types, each with the
// least size the manifest's type implies as its minBindingSize. Creating a pipeline with
// that layout fails when the shader uses a binding the manifest lacks, when a binding's
// type differs (uniform / read-only storage / read-write storage must match exactly), or
// when the shader needs a larger buffer than the manifest's type says.
function manifestLayout(device, mod, problems) {
  const man = mod.manifest;
  if (man.workgroup_size) {
    const ws = wgslWorkgroupSize(mod.code, mod.entry);
    if (ws && JSON.stringify(ws) !== JSON.stringify(man.workgroup_size))
      problems.push(`manifest workgroup_size ${JSON.stringify(man.workgroup_size)} but the shader says ${JSON.stringify(ws)}`);
  }
  const groups = new Map();
  for (const b of man.bindings || []) {
    const type = bufferType(b.ty || "");
    if (type === null) { problems.push(`binding ${b.name}: unknown type '${b.ty}'`); continue; }
    if (!groups.has(b.group)) groups.set(b.group, []);
    groups.get(b.group).push({binding: b.binding, visibility: GPUShaderStage.COMPUTE,
                              buffer: {type, minBindingSize: minSize(b.ty) || 0}});
  }
  const ngroups = groups.size ? Math.max(...groups.keys()) + 1 : 0;
  const layouts = [];
  for (let g = 0; g < ngroups; g++)
    layouts.push(device.createBindGroupLayout({label: `${mod.name} manifest group ${g}`, entries: groups.get(g) || []}));
  return device.createPipelineLayout({label: `${mod.name} manifest`, bindGroupLayouts: layouts});
}

async function validate(device, mod) {
  const t0 = performance.now();
  const result = {kind: "result", name: mod.name, messages: [], errors: [], manifest: [], ms: {}};
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("internal");
  device.pushErrorScope("validation");
  const sm = device.createShaderModule({label: mod.name, code: mod.code});
  const info = await sm.getCompilationInfo();
  for (const m of info.messages)
    result.messages.push({type: m.type, line: m.lineNum, col: m.linePos, offset: m.offset,
                          length: m.length, message: m.message});
  const t1 = performance.now();
  // The `auto`-layout pipeline and, when there is a manifest, the manifest-layout one are
  // compiled concurrently (Dawn compiles asynchronous pipelines on worker threads).
  const timed = (p) => p.then((v) => [v, performance.now()], (e) => { throw [e, performance.now()]; });
  const auto = timed(device.createComputePipelineAsync({label: mod.name, layout: "auto",
                                                        compute: {module: sm, entryPoint: mod.entry}}));
  let viaManifest = null;
  if (mod.manifest) {
    device.pushErrorScope("validation");
    const layout = manifestLayout(device, mod, result.manifest);
    viaManifest = timed(device.createComputePipelineAsync({label: `${mod.name} (manifest layout)`, layout,
                                                           compute: {module: sm, entryPoint: mod.entry}}));
    const e = await device.popErrorScope();
    if (e) result.manifest.push(`the manifest's bindings as a layout: ${errText(e)}`);
  }
  try { result.ms.pipeline = (await auto)[1] - t1; }
  catch ([e, t]) {
    result.ms.pipeline = t - t1;
    result.errors.push(`createComputePipelineAsync (layout auto): ${e.reason ? "[" + e.reason + "] " : ""}${errText(e)}`);
  }
  if (viaManifest) {
    try { result.ms.manifest_pipeline = (await viaManifest)[1] - t1; }
    catch ([e, t]) {
      result.ms.manifest_pipeline = t - t1;
      // When the shader itself is invalid, that error is the one to read.
      if (result.errors.length === 0)
        result.manifest.push(`a pipeline with the manifest's bindings as its layout: ${errText(e)}`);
    }
  }
  for (const scope of ["validation", "internal", "out-of-memory"]) {
    const e = await device.popErrorScope();
    if (e) result.errors.push(`${scope} error: ${errText(e)}`);
  }
  result.ms.module = t1 - t0;
  result.ms.total = performance.now() - t0;
  return result;
}

(async () => {
  try {
    const mods = await (await fetch("/modules")).json();
    if (!window.isSecureContext) { await post({kind: "fatal", message: "the page is not a secure context"}); return; }
    if (!navigator.gpu) { await post({kind: "fatal", message: "navigator.gpu is missing: WebGPU is disabled in this browser"}); return; }
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) { await post({kind: "fatal", message: "navigator.gpu.requestAdapter() returned null: no WebGPU adapter"}); return; }
    const device = await adapter.requestDevice();
    device.addEventListener("uncapturederror", (ev) => post({kind: "uncaptured", message: errText(ev.error)}));
    device.lost.then((i) => post({kind: "lost", reason: i.reason, message: i.message}));
    const ai = adapter.info || {};
    let version = null;
    try {
      const hv = await navigator.userAgentData.getHighEntropyValues(["fullVersionList"]);
      const b = hv.fullVersionList.find((x) => /Chrom/.test(x.brand));
      version = b ? b.version : null;
    } catch (e) { /* the user agent string has the major version */ }
    await post({kind: "adapter", userAgent: navigator.userAgent, version,
                info: {vendor: ai.vendor, architecture: ai.architecture, device: ai.device,
                       description: ai.description, isFallbackAdapter: ai.isFallbackAdapter},
                features: [...adapter.features].sort(),
                wgslFeatures: navigator.gpu.wgslLanguageFeatures ? [...navigator.gpu.wgslLanguageFeatures].sort() : []});
    for (const mod of mods) {
      await post({kind: "start", name: mod.name});
      let r;
      try { r = await validate(device, mod); }
      catch (e) { r = {kind: "result", name: mod.name, messages: [], errors: [`the harness threw ${errText(e)}`], manifest: [], ms: {}}; }
      await post(r);
    }
    await post({kind: "done"});
  } catch (e) {
    await post({kind: "fatal", message: "the page threw " + errText(e) + (e && e.stack ? "\n" + e.stack : "")});
  }
})();
</script>
"""


class HarnessError(Exception):
    """The harness could not run (exit status 2)."""


def collect_modules(paths, use_manifest):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files.extend(sorted(glob.glob(os.path.join(p, "*.wgsl"))))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise HarnessError(f"{p}: no such file or folder")
    mods = []
    seen = set()
    for f in files:
        name = os.path.basename(f)[: -len(".wgsl")] if f.endswith(".wgsl") else os.path.basename(f)
        if name in seen:
            name = f
        seen.add(name)
        with open(f, encoding="utf-8") as fh:
            code = fh.read()
        manifest = None
        mpath = os.path.join(os.path.dirname(f), name.split("/")[-1] + ".manifest.json")
        if use_manifest and os.path.isfile(mpath):
            with open(mpath, encoding="utf-8") as fh:
                try:
                    manifest = json.load(fh)
                except json.JSONDecodeError as e:
                    raise HarnessError(f"{mpath}: not JSON: {e}")
        entry = (manifest or {}).get("entry_point") or "main"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", entry):
            raise HarnessError(f"{mpath}: entry_point {entry!r} is not an identifier")
        mods.append({"name": name, "path": f, "code": code, "manifest": manifest, "entry": entry})
    return mods


def make_server(routes, events):
    """A loopback HTTP server that answers GET `path` with `routes[path]` (a content type
    and the bytes) and puts each JSON body POSTed to /event on `events`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, ctype, body):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path in routes:
                self._send(200, *routes[self.path])
            else:
                self._send(404, "text/plain", b"not found")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            if self.path == "/event":
                try:
                    events.put(json.loads(body))
                except json.JSONDecodeError:
                    events.put({"kind": "fatal", "message": "the page sent bad JSON"})
                self._send(204, "text/plain", b"")
            else:
                self._send(404, "text/plain", b"not found")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def serve(routes, events):
    """`make_server`, serving on a thread: the server and its port."""
    server = make_server(routes, events)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server, server.server_address[1]


def launch(chromium, port, profile, log):
    """Chromium on the page at `port`, with a fresh `profile`, its output to `log`, in a
    process group of its own (see `kill_group`)."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def kill_group(proc):
    """Ends Chromium and every process it started (they share its new process group)."""
    if proc is None or proc.poll() is not None and not _group_alive(proc.pid):
        return
    # The profile is a throwaway: no need to wait for a graceful shutdown.
    for sig, wait in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give its children a moment, then make sure.
        deadline = time.monotonic() + wait
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid):
    """Whether a process of the group still runs. Zombies do not count: they are dead, and
    reaping Chromium's reparented children is up to PID 1, which may take a while."""
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def source_line(code, line):
    lines = code.splitlines()
    return lines[line - 1] if 1 <= line <= len(lines) else None


def run(args):
    chromium = args.chromium
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        raise HarnessError(f"Chromium not found at {chromium} (install it: apt-get install -y chromium)")
    mods = collect_modules(args.paths, not args.no_manifest)
    if not mods:
        raise HarnessError(f"no .wgsl files in {' '.join(args.paths)}")
    payload = json.dumps([{k: m[k] for k in ("name", "code", "manifest", "entry")} for m in mods]).encode("utf-8")

    events = queue.Queue()
    server, port = serve({"/": ("text/html; charset=utf-8", PAGE.encode("utf-8")),
                          "/modules": ("application/json", payload)}, events)

    profile = tempfile.mkdtemp(prefix="lossc-webgpu-profile-")
    log = tempfile.TemporaryFile()
    proc = None
    results = {}
    order = [m["name"] for m in mods]
    by_name = {m["name"]: m for m in mods}
    adapter = None
    async_errors = []
    t_start = time.monotonic()
    t_adapter = None
    try:
        proc = launch(chromium, port, profile, log)
        current = None
        # Bounded waits: the launch (until the page reports its adapter), then each module,
        # then the whole run.
        deadline_total = t_start + args.timeout
        deadline_step = t_start + args.launch_timeout
        while True:
            now = time.monotonic()
            deadline = min(deadline_step, deadline_total)
            if now >= deadline:
                what = f"validating {current}" if current else ("finishing" if adapter else "starting WebGPU in Chromium")
                limit = "--timeout" if deadline_total <= deadline_step else ("--module-timeout" if adapter else "--launch-timeout")
                raise HarnessError(f"timed out {what} ({limit}); Chromium's output:\n" + tail(log))
            if proc.poll() is not None:
                # Events may still be queued; drain before declaring a crash.
                try:
                    ev = events.get(timeout=0.5)
                except queue.Empty:
                    raise HarnessError(f"Chromium exited with status {proc.returncode} before finishing; its output:\n" + tail(log))
            else:
                try:
                    ev = events.get(timeout=min(0.25, deadline - now))
                except queue.Empty:
                    continue
            kind = ev.get("kind")
            if kind == "fatal":
                raise HarnessError("WebGPU unavailable or the page failed: " + ev.get("message", "?"))
            elif kind == "adapter":
                adapter = ev
                t_adapter = time.monotonic()
                deadline_step = t_adapter + args.module_timeout
            elif kind == "start":
                current = ev.get("name")
                deadline_step = time.monotonic() + args.module_timeout
            elif kind == "result":
                results[ev["name"]] = ev
                current = None
                deadline_step = time.monotonic() + args.module_timeout
            elif kind in ("uncaptured", "lost"):
                msg = ev.get("message", "")
                if kind == "lost":
                    msg = f"device lost ({ev.get('reason')}): {msg}"
                async_errors.append((current, msg))
                if kind == "lost":
                    raise HarnessError(msg)
            elif kind == "done":
                break
    finally:
        t_end = time.monotonic()
        kill_group(proc)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
        t_killed = time.monotonic()
        if args.verbose and proc is not None:
            sys.stderr.write(f"chromium stopped in {t_killed - t_end:.2f} s\n")
        log_text = tail(log) if args.verbose else None
        log.close()
        if log_text:
            sys.stderr.write("Chromium's output:\n" + log_text + "\n")

    # Report.
    info = adapter.get("info", {})
    ua = re.search(r"(?:Headless)?Chrom(?:e|ium)/([\d.]+)", adapter.get("userAgent", ""))
    version = adapter.get("version") or (ua.group(1) if ua else "?")
    print(f"webgpu_validate: Chromium {version}, adapter "
          f"{info.get('vendor') or '?'}/{info.get('architecture') or '?'}"
          f"{' (fallback)' if info.get('isFallbackAdapter') else ''}; "
          f"launch to device {t_adapter - t_start:.2f} s")
    failed = []
    for current, msg in async_errors:
        results.setdefault(current or "?", {"errors": [], "messages": [], "manifest": [], "ms": {}})
        results[current or "?"]["errors"].append(f"uncaptured error: {msg}")
    for name in order:
        r = results.get(name)
        m = by_name[name]
        if r is None:
            failed.append(name)
            print(f"FAIL {name}: no result")
            continue
        errors = [x for x in r["messages"] if x["type"] == "error"]
        others = [x for x in r["messages"] if x["type"] != "error"]
        bad = bool(errors or r["errors"] or r["manifest"])
        ms = r.get("ms", {})
        keys = ["module", "pipeline", "manifest_pipeline", "total"]
        timing = ", ".join(f"{k.replace('_', ' ')} {ms[k]:.0f} ms" for k in keys + sorted(set(ms) - set(keys)) if k in ms)
        checks = "module+pipeline" + ("+manifest" if m["manifest"] else "")
        print(f"{'FAIL' if bad else 'ok  '} {name} ({checks}; {timing})")
        for x in errors + others:
            print(f"    {m['path']}:{x['line']}:{x['col']}: {x['type']}: {x['message']}")
            src = source_line(m["code"], x["line"])
            if src is not None:
                print(f"        {src}")
                print(f"        {' ' * max(0, x['col'] - 1)}^")
        # A module error also fails the pipeline with the same text; say it once.
        texts = {x["message"] for x in errors}
        for e in r["errors"]:
            if errors and any(t in e for t in texts):
                continue
            print(f"    {e}")
        for p in r["manifest"]:
            print(f"    manifest: {p}")
        if bad:
            failed.append(name)
    total = time.monotonic() - t_start
    print(f"webgpu_validate: {len(order) - len(failed)}/{len(order)} modules accepted by Tint "
          f"(Chromium WebGPU) in {total:.2f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"adapter": adapter, "results": [results.get(n) for n in order],
                       "failed": failed, "launch_s": t_adapter - t_start, "total_s": total}, fh, indent=2)
    return 1 if failed else 0


def tail(log, limit=4000):
    try:
        log.flush()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return "(unreadable)"
    # Headless Chromium in a container always complains about D-Bus; that is never the news.
    text = "".join(l for l in text.splitlines(keepends=True) if "dbus/" not in l)
    return text[-limit:] if text else "(nothing)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="folders of .wgsl files, or .wgsl files")
    ap.add_argument("--chromium", default=os.environ.get("LOSSC_CHROMIUM", DEFAULT_CHROMIUM),
                    help=f"the Chromium binary (default {DEFAULT_CHROMIUM}, or $LOSSC_CHROMIUM)")
    ap.add_argument("--launch-timeout", type=float, default=60.0,
                    help="seconds from launch until the page has a WebGPU device (default 60)")
    ap.add_argument("--module-timeout", type=float, default=60.0,
                    help="seconds allowed for one module (default 60)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole run (default 600)")
    ap.add_argument("--no-manifest", action="store_true", help="do not check NAME.manifest.json files")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print Chromium's output at the end")
    args = ap.parse_args()
    try:
        return run(args)
    except HarnessError as e:
        print(f"webgpu_validate: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
