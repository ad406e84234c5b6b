// A WebGPU host for lossc kernels, written from the manifest's schema
// (docs/manifest.schema.json, version 2) alone: it knows nothing of the `.loss` syntax.
//
//   import { runKernel } from "./lossc_host.js";
//   const result = await runKernel(device, wgslText, manifest, data);
//   // { total, losses: [{ name, loss, weight, weighted }], logs, errorWord }
//   // With the backward kernel of `lossc compile --grad` (NAME.backward.wgsl):
//   const withGrads = await runKernel(device, wgslText, manifest, data, { backwardWgsl });
//   // ... and grads: { inputName: { shape, data: Float32Array } }, d total / d input
//
// `data` is lossc's JSON data object: for each input and param, by its name (or
// "loss.param" for one loss's param; the manifest's `data.keys` say which key feeds
// what), nested arrays, {shape, data}, a number, or an enum variant's name; null, "NaN",
// "Infinity" and "-Infinity" are numbers. Absent optional inputs are left out (or null).
// Params not in `data` take the factory's setting, else their default.
// `options.anneal` gives each loss's anneal factor (1 by default).

/** Thrown when the data cannot be bound; the message names the input or param. */
export class HostError extends Error {}

function number(v) {
  if (v === null) return NaN;
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (v === "NaN" || v === "nan") return NaN;
  if (v === "Infinity" || v === "inf") return Infinity;
  if (v === "-Infinity" || v === "-inf") return -Infinity;
  throw new HostError(`${JSON.stringify(v)} is not a number`);
}

/** A data value as {shape, values}, or null for a string (an enum variant). */
function tensor(v) {
  if (typeof v === "string" && !["NaN", "nan", "Infinity", "inf", "-Infinity", "-inf"].includes(v)) return null;
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    const values = [];
    flatten(v.data, values);
    return { shape: v.shape.slice(), values };
  }
  if (Array.isArray(v)) {
    const shape = [];
    for (let x = v; Array.isArray(x); x = x[0]) shape.push(x.length);
    const values = [];
    flatten(v, values);
    return { shape, values };
  }
  return { shape: [], values: [number(v)] };
}

function flatten(v, out) {
  if (Array.isArray(v)) for (const x of v) flatten(x, out);
  else out.push(number(v));
}

/** A polynomial ([[coefficient, [dimension ids]], ...]) on `dims` (null when unknown). */
function poly(p, dims) {
  let total = 0;
  for (const [c, ids] of p) {
    let v = c;
    for (const d of ids) {
      if (dims[d] === null) return null;
      v *= dims[d];
    }
    total += v;
  }
  return total;
}

/** Solves `p = size` for its one unknown dimension (appearing once, in one monomial). */
function solveOne(p, size, dims) {
  const unknown = new Set();
  for (const [, ids] of p) for (const d of ids) if (dims[d] === null) unknown.add(d);
  if (unknown.size !== 1) return false;
  const [u] = unknown;
  const withU = p.filter(([, ids]) => ids.includes(u));
  if (withU.length !== 1) return false;
  const [c, ids] = withU[0];
  if (ids.filter((d) => d === u).length !== 1) return false;
  let coeff = c;
  for (const d of ids) if (d !== u) coeff *= dims[d];
  const rest = poly(p.filter(([, ids2]) => !ids2.includes(u)), dims);
  if (coeff === 0 || (size - rest) % coeff !== 0) return false;
  dims[u] = (size - rest) / coeff;
  return true;
}

/**
 * A loss's param value: the data's (by the keys that feed it, `manifest.data.keys`), else
 * the factory's setting, else the default.
 */
function paramValue(loss, l, p, data, keys) {
  for (const k of keys) {
    if (!(k.key in data) || data[k.key] === null) continue;
    if (k.feeds.some((f) => f.loss === l && f.param === p.name)) return { data: data[k.key] };
  }
  const setting = loss.settings.find((s) => s.param === p.name);
  if (setting) return { source: setting.value };
  if (p.default !== null) return { source: p.default };
  throw new HostError(`loss \`${loss.name}\`: param \`${p.name}\` has no value`);
}

/** Binds loss `l`: its dimensions, index ranges, arrays, enum numbers. */
function bindLoss(loss, l, data, keys) {
  const dims = loss.dims.map(() => null);
  const sizes = new Map(); // "input:x" / "param:p" -> shape
  const inputs = new Map(); // name -> {shape, values} | null
  for (const i of loss.inputs) {
    const given = i.name in data && data[i.name] !== null ? tensor(data[i.name]) : null;
    if (given === null && !i.optional) {
      throw new HostError(`loss \`${loss.name}\`: missing input \`${i.name}\``);
    }
    if (given !== null) {
      if (given.shape.length !== i.shape.length) {
        throw new HostError(`input \`${i.name}\` has ${given.shape.length} axes, not ${i.shape.length}`);
      }
      sizes.set(`input:${i.name}`, given.shape);
    }
    inputs.set(i.name, given);
  }
  const values = new Map();
  const ranges = [];
  for (const p of loss.params) {
    const v = paramValue(loss, l, p, data, keys);
    values.set(p.name, v);
    if (p.kind === "enum") continue;
    if (v.source && v.source.list) sizes.set(`param:${p.name}`, [v.source.list.length]);
    else if (v.source && v.source.range) ranges.push([p.name, v.source.range]);
    else if (v.data !== undefined) {
      const t = tensor(v.data);
      if (t && t.shape.length === p.shape.length && t.shape.length > 0) sizes.set(`param:${p.name}`, t.shape);
    }
  }
  const equations = [];
  const later = [];
  for (const eq of loss.dim_equations) {
    const key = eq.size.input !== undefined ? `input:${eq.size.input}` : `param:${eq.size.param}`;
    const shape = sizes.get(key);
    if (shape) equations.push([eq.poly, shape[eq.size.axis]]);
  }
  const fixpoint = (eqs) => {
    for (let progress = true; progress; ) {
      progress = false;
      for (const [p, s] of eqs) if (solveOne(p, s, dims)) progress = true;
    }
  };
  fixpoint(equations);
  for (const [name, [lo, hi]] of ranges) {
    const eq = loss.dim_equations.find((e) => e.size.param === name);
    const l = poly(lo, dims);
    const h = poly(hi, dims);
    if (eq && l !== null && h !== null) later.push([eq.poly, Math.max(0, h - l)]);
  }
  fixpoint(later);
  // A dimension only absent optional inputs (without defaults) mention is 0.
  const needed = loss.dims.map(() => false);
  const mark = (shape) => shape.forEach((p) => p.forEach(([, ids]) => ids.forEach((d) => (needed[d] = true))));
  for (const i of loss.inputs) if (inputs.get(i.name) !== null || i.default !== null) mark(i.shape);
  for (const p of loss.params) mark(p.shape);
  dims.forEach((v, d) => {
    if (v === null) {
      if (needed[d]) throw new HostError(`loss \`${loss.name}\`: dimension \`${loss.dims[d]}\` is not known from the data`);
      dims[d] = 0;
    }
  });
  for (const eq of loss.dim_equations) {
    const key = eq.size.input !== undefined ? `input:${eq.size.input}` : `param:${eq.size.param}`;
    const shape = sizes.get(key);
    if (shape && poly(eq.poly, dims) !== shape[eq.size.axis]) {
      throw new HostError(`loss \`${loss.name}\`: axis ${eq.size.axis} of \`${eq.size.input ?? eq.size.param}\` is ${shape[eq.size.axis]}, which does not fit the other arrays`);
    }
  }
  // Arrays: inputs as given (or filled with their default), params at their declared shape.
  const arrays = new Map();
  const present = new Map();
  for (const i of loss.inputs) {
    const given = inputs.get(i.name);
    if (given !== null) {
      arrays.set(i.name, { values: given.values, shared: true });
      present.set(i.name, true);
    } else if (i.default !== null) {
      const n = i.shape.reduce((a, p) => a * poly(p, dims), 1);
      arrays.set(i.name, { values: new Array(n).fill(i.default), shared: false });
      present.set(i.name, true);
    } else {
      present.set(i.name, false);
    }
  }
  const enums = new Map();
  for (const p of loss.params) {
    const v = values.get(p.name);
    if (p.kind === "enum") {
      const name = v.data !== undefined ? v.data : v.source.variant;
      const found = p.variants.find((x) => x.name === name);
      if (!found) throw new HostError(`param \`${p.name}\` is ${JSON.stringify(name)}, not one of its variants`);
      enums.set(p.name, found.number);
      continue;
    }
    const n = p.shape.reduce((a, s) => a * poly(s, dims), 1);
    let vals;
    if (v.data !== undefined) {
      const t = tensor(v.data);
      if (t === null) throw new HostError(`param \`${p.name}\` is a string, not a number`);
      vals = t.shape.length === 0 ? new Array(n).fill(t.values[0]) : t.values;
    } else if (v.source.scalar !== undefined) vals = new Array(n).fill(v.source.scalar);
    else if (v.source.list) vals = v.source.list.slice();
    else if (v.source.range) {
      const lo = poly(v.source.range[0], dims);
      vals = Array.from({ length: n }, (_, k) => lo + k);
    } else throw new HostError(`param \`${p.name}\`: a variant for a number`);
    if (vals.length !== n) throw new HostError(`param \`${p.name}\` holds ${vals.length} values, not ${n}`);
    arrays.set(p.name, { values: vals, shared: false, param: true });
  }
  return { dims, present, enums, arrays };
}

/**
 * Evaluates an expression of the manifest (`$defs/expr`) in `section`: the manifest
 * itself, or its `backward` section, whose loss i takes the binding (dims, presence,
 * enums, arena offsets, anneal factor) of its forward loss `losses[i].term`.
 */
function evaluator(section, bound, host) {
  const m = section;
  const ev = (e) => {
    if (typeof e === "number") return e;
    if (e.op !== undefined) {
      const a = e.args.map(ev);
      switch (e.op) {
        case "add": return a.reduce((x, y) => x + y, 0);
        case "sub": return a.slice(1).reduce((x, y) => x - y, a[0]);
        case "mul": return a.reduce((x, y) => x * y, 1);
        case "max": return Math.max(...a);
        case "min": return Math.min(...a);
        case "div_ceil": return Math.ceil(a[0] / a[1]);
      }
      throw new HostError(`unknown op ${e.op}`);
    }
    if (e.poly !== undefined) return poly(e.poly, bound[e.loss].dims);
    if (e.extent !== undefined) {
      const idx = m.losses[e.extent.loss].indices[e.extent.index];
      const dims = bound[e.extent.loss].dims;
      return Math.max(0, poly(idx.hi, dims) - poly(idx.lo, dims) + 1);
    }
    if (e.work !== undefined) {
      if (["total_items", "workgroups", "slice_size"].includes(e.work)) return ev(m.work[e.work]);
      if (e.work === "table") return ev(m.work.losses[e.loss].tables[e.table]);
      return ev(m.work.losses[e.loss][e.work]);
    }
    if (e.offset !== undefined) return host.offsets.get(`${host.forward(e.offset.loss)}\u0000${e.offset.tensor}`);
    if ("arena_floats" in e) return host.arenaFloats;
    if (e.row_per_thread !== undefined) return 0; // always correct (host_inputs)
    if (e.anneal_bits !== undefined) return host.annealBits[host.forward(e.anneal_bits)];
    if (e.present !== undefined) return e.present.inputs.every((i) => bound[e.present.loss].present.get(i)) ? 1 : 0;
    if (e.enum !== undefined) return bound[e.enum.loss].enums.get(e.enum.param) ?? -1;
    if (e.if_positive !== undefined) return ev(e.if_positive) > 0 ? ev(e.then) : ev(e.else);
    throw new HostError(`unknown expression ${JSON.stringify(e)}`);
  };
  return ev;
}

/** The bind group layout entry of a manifest binding type. */
function bufferType(ty) {
  if (ty.startsWith("uniform")) return "uniform";
  if (ty.startsWith("storage, read_write")) return "storage";
  return "read-only-storage";
}

/** The parameter block of `section` (the manifest or its `backward` section). */
function parameterBlock(section, ev) {
  const meta = section.buffers.find((b) => b.init === "parameter_block");
  const block = new Int32Array(ev(meta.bytes) / 4);
  for (const s of section.parameter_block) {
    const v = ev(s.value);
    if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw new HostError(`slot ${s.slot} (${s.kind}) is ${v}, not an i32`);
    block[s.slot] = v;
  }
  return block;
}

/**
 * Creates and initialises the buffers `section` lists, into `buffers` (binding name ->
 * buffer); returns them, for destroying. `arena` is the f32s of an "arena" buffer.
 */
function createBuffers(device, section, ev, block, arena, buffers) {
  const created = [];
  for (const b of section.buffers) {
    const size = ev(b.bytes);
    const buf = device.createBuffer({
      label: `lossc ${b.holds}`,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    created.push(buf);
    if (b.init === "parameter_block") device.queue.writeBuffer(buf, 0, block);
    else if (b.init === "arena") {
      const padded = new Float32Array(size / 4);
      padded.set(arena);
      device.queue.writeBuffer(buf, 0, padded);
    } else if (b.init !== "zero") {
      const words = new Uint32Array(size / 4);
      let at = 0;
      for (const run of b.init.runs) {
        const n = ev(run.count);
        words.fill(run.u32, at, at + n);
        at += n;
      }
      device.queue.writeBuffer(buf, 0, words);
    }
    for (const name of b.bindings) buffers.set(name, buf);
  }
  return created;
}

/** Records `section`'s kernel into `encoder`: pipeline and bind group from its bindings. */
async function recordPass(device, section, wgsl, buffers, ev, encoder) {
  const module = device.createShaderModule({ label: section.kernel, code: wgsl });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((x) => x.type === "error");
  if (errors.length) throw new HostError(`WGSL of ${section.kernel}: ${errors.map((x) => `${x.lineNum}:${x.linePos} ${x.message}`).join("; ")}`);
  const layout = device.createBindGroupLayout({
    entries: section.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: bufferType(b.ty) } })),
  });
  const pipeline = await device.createComputePipelineAsync({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: section.entry_point },
  });
  const group = device.createBindGroup({
    layout,
    entries: section.bindings.map((b) => ({ binding: b.binding, resource: { buffer: buffers.get(b.name) } })),
  });
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(...section.dispatch.workgroups.map(ev));
  pass.end();
}

/**
 * Runs a compiled kernel once on `device` with `data`, as its manifest says.
 * Returns the total, each loss's value, weight and weighted value, the log names and the
 * error word (0 on success; see the manifest's `error_word` and `sites`), and with
 * `options.backwardWgsl` the gradients.
 */
export async function runKernel(device, wgsl, m, data, options = {}) {
  if (m.manifest_version !== 2) throw new HostError(`manifest version ${m.manifest_version}, this host reads 2`);
  for (const key of m.data.ambiguous) {
    if (key in data && data[key] !== null) {
      throw new HostError(`\`${key}\` names a param of several losses: write \`loss.${key}\``);
    }
  }
  const bound = m.losses.map((loss, l) => bindLoss(loss, l, data, m.data.keys));
  // The arena: each input once per name (losses share it), a default-filled one per
  // loss, then each loss's params; any placement works, the offsets say where.
  const offsets = new Map();
  const arena = [];
  const byName = new Map();
  m.losses.forEach((loss, l) => {
    for (const i of loss.inputs) {
      const a = bound[l].arrays.get(i.name);
      if (!a) continue;
      let at = a.shared ? byName.get(i.name) : undefined;
      if (at === undefined) {
        at = arena.length;
        for (const v of a.values) arena.push(v);
        if (a.shared) byName.set(i.name, at);
      }
      offsets.set(`${l}\u0000${i.name}`, at);
    }
    for (const p of loss.params) {
      const a = bound[l].arrays.get(p.name);
      if (!a) continue;
      offsets.set(`${l}\u0000${p.name}`, arena.length);
      for (const v of a.values) arena.push(v);
    }
  });
  const anneal = options.anneal ?? m.losses.map(() => 1);
  const f32 = new Float32Array(1);
  const i32 = new Int32Array(f32.buffer);
  const annealBits = anneal.map((a) => ((f32[0] = a), i32[0]));
  const host = { offsets, arenaFloats: arena.length, annealBits, forward: (l) => l };
  const ev = evaluator(m, bound, host);

  device.pushErrorScope("validation");
  const buffers = new Map();
  const created = createBuffers(device, m, ev, parameterBlock(m, ev), arena, buffers);
  const encoder = device.createCommandEncoder();
  await recordPass(device, m, wgsl, buffers, ev, encoder);
  // The backward kernel, right after the forward one, on its arena and results.
  const backward = options.backwardWgsl
    ? await recordBackward(device, options.backwardWgsl, m, bound, host, buffers, encoder)
    : null;
  const n = m.losses.length;
  const readOut = device.createBuffer({ size: (3 * n + 1) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const readSync = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  encoder.copyBufferToBuffer(buffers.get("lc_out"), 0, readOut, 0, (3 * n + 1) * 4);
  encoder.copyBufferToBuffer(buffers.get("lc_sync"), 4, readSync, 0, 4);
  device.queue.submit([encoder.finish()]);
  const invalid = await device.popErrorScope();
  if (invalid) throw new HostError(`WebGPU: ${invalid.message}`);
  await Promise.all([readOut.mapAsync(GPUMapMode.READ), readSync.mapAsync(GPUMapMode.READ)]);
  const results = Array.from(new Float32Array(readOut.getMappedRange()));
  const errorWord = new Uint32Array(readSync.getMappedRange())[0];
  readOut.unmap();
  readSync.unmap();
  const grads = backward ? await backward.read() : undefined;
  for (const b of [...created, readOut, readSync]) b.destroy();
  return {
    total: results[3 * n],
    losses: m.losses.map((loss, i) => ({
      name: loss.name,
      loss: results[3 * i],
      weight: results[3 * i + 1],
      weighted: results[3 * i + 2],
    })),
    logs: m.losses.flatMap((loss) => loss.logs),
    errorWord,
    ...(grads ? { grads } : {}),
  };
}

/**
 * Records the backward kernel (the manifest's `backward` section) into `encoder`, after
 * the forward pass: its own parameter block, scratch, sync and gradient buffers, the
 * forward's arena and results (`lc_saved`) bound read-only. Returns `read()`, which gives
 * each input's gradient of the total: the sum of its losses' slices of `lc_grad`.
 */
async function recordBackward(device, wgsl, m, bound, forwardHost, forwardBuffers, encoder) {
  const bw = m.backward;
  if (!bw) throw new HostError("the manifest has no backward section (compile with --grad)");
  for (const b of bound) {
    for (const [name, present] of b.present) {
      if (!present) throw new HostError(`gradients need every optional input (\`${name}\` is absent): ${bw.assumes}`);
    }
  }
  const terms = bw.losses.map((l) => l.term);
  const host = { ...forwardHost, forward: (l) => terms[l] };
  const ev = evaluator(bw, terms.map((t) => bound[t]), host);
  const buffers = new Map([
    ["lc_arena", forwardBuffers.get("lc_arena")],
    ["lc_arena4", forwardBuffers.get("lc_arena4")],
    ["lc_saved", forwardBuffers.get("lc_out")],
  ]);
  const created = createBuffers(device, bw, ev, parameterBlock(bw, ev), [], buffers);
  await recordPass(device, bw, wgsl, buffers, ev, encoder);
  const grad = buffers.get("lc_grad");
  const readGrad = device.createBuffer({ size: grad.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  encoder.copyBufferToBuffer(grad, 0, readGrad, 0, grad.size);
  return {
    async read() {
      await readGrad.mapAsync(GPUMapMode.READ);
      const all = new Float32Array(readGrad.getMappedRange().slice(0));
      readGrad.unmap();
      for (const b of [...created, readGrad]) b.destroy();
      // Loss i's slice: the product of its gradient axes' extents, after the slices before it.
      const grads = {};
      let at = 0;
      bw.losses.forEach((loss, i) => {
        const sizes = loss.gradient_axes.map((axis) => ev({ extent: { loss: i, index: axis } }));
        const len = sizes.reduce((a, b) => a * b, 1);
        const slice = all.subarray(at, at + len);
        at += len;
        if (!grads[loss.input]) grads[loss.input] = { shape: sizes, data: new Float32Array(len) };
        const g = grads[loss.input].data;
        for (let k = 0; k < len; k++) g[k] += slice[k];
      });
      // An input no loss depends on: gradient 0, of its shape.
      for (const { term, input } of bw.wrt) {
        if (grads[input]) continue;
        const loss = m.losses[term];
        const shape = loss.inputs.find((i) => i.name === input).shape.map((p) => poly(p, bound[term].dims));
        grads[input] = { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
      }
      return grads;
    },
  };
}
