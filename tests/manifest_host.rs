//! A host written from the manifest alone: it reads the emitted JSON (not lossc's Rust
//! structures), solves the dimensions from the data's shapes by the manifest's
//! equations, evaluates every slot's expression, and must fill the same parameter block,
//! word for word, as lossc's runtime does (`gpu::pack::fill_parameter_block`), for every
//! example loss, both example factories and every zoo loss. Every manifest, forward and
//! backward, is also validated against `docs/manifest.schema.json`.
//!
//! The host takes from lossc only what the manifest names as the host's own choices
//! (`host_inputs`): where it placed each tensor in the arena, its `row_per_thread`, and
//! the anneal factors.

mod common;

use std::collections::HashMap;

use lossc::bind::{BindError, Bound};
use lossc::codegen;
use lossc::codegen::manifest::manifest;
use lossc::gpu::pack::{fill_parameter_block, pack_arena};
use lossc::gpu::{Adapter, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::RunError;
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::{Wrt, compile_backward};
use lossc::runtime::run::prepare;
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(common::root().join("docs/manifest.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, m: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(m)
        .take(5)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// The shape of a JSON data value: nested lists, `{"shape", "data"}`, or a scalar.
fn shape_of(v: &Value) -> Option<Vec<i64>> {
    match v {
        Value::Array(xs) => {
            let mut s = vec![xs.len() as i64];
            if let Some(first) = xs.first()
                && first.is_array()
            {
                s.extend(shape_of(first)?);
            }
            Some(s)
        }
        Value::Object(o) => o
            .get("shape")?
            .as_array()
            .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect()),
        _ => None,
    }
}

/// The host's state for one dispatch.
struct Host<'m> {
    m: &'m Value,
    dims: Vec<Vec<Option<i64>>>,
    present: Vec<HashMap<String, bool>>,
    enums: Vec<HashMap<String, i64>>,
    offsets: HashMap<(usize, String), i64>,
    arena_floats: i64,
    row_per_thread: Vec<i64>,
    anneal_bits: Vec<i64>,
}

fn poly_value(p: &Value, dims: &[Option<i64>]) -> Option<i64> {
    let mut total = 0i64;
    for mono in p.as_array().unwrap() {
        let mut v = mono[0].as_i64().unwrap();
        for d in mono[1].as_array().unwrap() {
            v = v.checked_mul(dims[d.as_u64().unwrap() as usize]?)?;
        }
        total = total.checked_add(v)?;
    }
    Some(total)
}

/// Solves `poly = size` for its one unknown dimension, when it appears once in one
/// monomial whose other dimensions are known.
fn solve_one(p: &Value, size: i64, dims: &mut [Option<i64>]) -> bool {
    let monos = p.as_array().unwrap();
    let ids = |m: &Value| -> Vec<usize> {
        m[1].as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    let mut unknown: Vec<usize> = monos
        .iter()
        .flat_map(ids)
        .filter(|d| dims[*d].is_none())
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let [u] = unknown[..] else { return false };
    let with: Vec<&Value> = monos.iter().filter(|m| ids(m).contains(&u)).collect();
    let [m] = with[..] else { return false };
    let ds = ids(m);
    if ds.iter().filter(|d| **d == u).count() != 1 {
        return false;
    }
    let mut coeff = m[0].as_i64().unwrap();
    for d in ds.iter().filter(|d| **d != u) {
        coeff *= dims[*d].unwrap();
    }
    let rest: i64 = monos
        .iter()
        .filter(|x| !ids(x).contains(&u))
        .map(|x| poly_value(&Value::Array(vec![x.clone()]), dims).unwrap())
        .sum();
    if coeff == 0 || (size - rest) % coeff != 0 {
        return false;
    }
    dims[u] = Some((size - rest) / coeff);
    true
}

impl Host<'_> {
    fn loss(&self, l: usize) -> &Value {
        &self.m["losses"][l]
    }

    fn eval(&self, e: &Value) -> i64 {
        if let Some(n) = e.as_i64() {
            return n;
        }
        let o = e
            .as_object()
            .unwrap_or_else(|| panic!("not an expression: {e}"));
        let loss = |v: &Value| v["loss"].as_u64().unwrap() as usize;
        if let Some(op) = o.get("op") {
            let args: Vec<i64> = o["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| self.eval(a))
                .collect();
            return match op.as_str().unwrap() {
                "add" => args.iter().sum(),
                "sub" => args[0] - args[1..].iter().sum::<i64>(),
                "mul" => args.iter().product(),
                "max" => *args.iter().max().unwrap(),
                "min" => *args.iter().min().unwrap(),
                "div_ceil" => (args[0] + args[1] - 1).div_euclid(args[1]),
                other => panic!("unknown op {other}"),
            };
        }
        if let Some(p) = o.get("poly") {
            return poly_value(p, &self.dims[loss(e)]).unwrap();
        }
        if let Some(x) = o.get("extent") {
            let l = loss(x);
            let index = &self.loss(l)["indices"][x["index"].as_u64().unwrap() as usize];
            let lo = poly_value(&index["lo"], &self.dims[l]).unwrap();
            let hi = poly_value(&index["hi"], &self.dims[l]).unwrap();
            return (hi - lo + 1).max(0);
        }
        if let Some(w) = o.get("work") {
            let name = w.as_str().unwrap();
            let work = &self.m["work"];
            return match name {
                "total_items" | "workgroups" | "slice_size" => self.eval(&work[name]),
                "table" => self.eval(
                    &work["losses"][loss(e)]["tables"][o["table"].as_u64().unwrap() as usize],
                ),
                _ => self.eval(&work["losses"][loss(e)][name]),
            };
        }
        if let Some(x) = o.get("offset") {
            let key = (loss(x), x["tensor"].as_str().unwrap().to_string());
            return self.offsets[&key];
        }
        if o.contains_key("arena_floats") {
            return self.arena_floats;
        }
        if let Some(l) = o.get("row_per_thread") {
            return self.row_per_thread[l.as_u64().unwrap() as usize];
        }
        if let Some(l) = o.get("anneal_bits") {
            return self.anneal_bits[l.as_u64().unwrap() as usize];
        }
        if let Some(x) = o.get("present") {
            let l = loss(x);
            let all = x["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| self.present[l][i.as_str().unwrap()]);
            return i64::from(all);
        }
        if let Some(x) = o.get("enum") {
            return self.enums[loss(x)][x["param"].as_str().unwrap()];
        }
        if let Some(c) = o.get("if_positive") {
            return if self.eval(c) > 0 {
                self.eval(&o["then"])
            } else {
                self.eval(&o["else"])
            };
        }
        panic!("unknown expression {e}")
    }
}

/// A param's value as the host resolves it: the data's plain key, else the factory's
/// setting, else the declared default.
fn param_value<'a>(m: &'a Value, l: usize, p: &'a Value, data: &'a Value) -> Option<&'a Value> {
    let loss = &m["losses"][l];
    let feeds_it = |k: &Value| {
        k["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["loss"] == l && f["param"] == p["name"])
    };
    let given = m["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| feeds_it(k))
        .find_map(|k| {
            data.get(k["key"].as_str().unwrap())
                .filter(|v| !v.is_null())
        });
    if given.is_some() {
        return given;
    }
    let setting = loss["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["param"] == p["name"]);
    setting
        .map(|s| &s["value"])
        .or(p.get("default").filter(|d| !d.is_null()))
}

/// Solves every loss's dimensions from the data, as the schema's `loss_data` says.
/// Per loss: its dimensions, and whether each input is bound.
type Solved = (Vec<Vec<Option<i64>>>, Vec<HashMap<String, bool>>);

fn solve(m: &Value, data: &Value) -> Solved {
    let mut all_dims = Vec::new();
    let mut all_present = Vec::new();
    for (l, loss) in m["losses"].as_array().unwrap().iter().enumerate() {
        let n = loss["dims"].as_array().unwrap().len();
        let mut dims: Vec<Option<i64>> = vec![None; n];
        let mut sizes: HashMap<(String, String), Vec<i64>> = HashMap::new();
        let mut present = HashMap::new();
        for i in loss["inputs"].as_array().unwrap() {
            let name = i["name"].as_str().unwrap().to_string();
            let given = data.get(&name).and_then(shape_of);
            present.insert(name.clone(), given.is_some() || !i["default"].is_null());
            if let Some(s) = given {
                sizes.insert(("input".into(), name), s);
            }
        }
        let mut ranges = Vec::new();
        for p in loss["params"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap().to_string();
            let rank = p["shape"].as_array().unwrap().len();
            let Some(v) = param_value(m, l, p, data) else {
                continue;
            };
            if let Some(list) = v.get("list") {
                sizes.insert(
                    ("param".into(), name),
                    vec![list.as_array().unwrap().len() as i64],
                );
            } else if let Some(r) = v.get("range") {
                ranges.push((name, r.clone()));
            } else if let Some(s) = shape_of(v).filter(|s| s.len() == rank && rank > 0) {
                sizes.insert(("param".into(), name), s);
            }
        }
        let equations: Vec<(Value, i64)> = loss["dim_equations"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|eq| {
                let size = &eq["size"];
                let (kind, name) = match size.get("input") {
                    Some(i) => ("input", i),
                    None => ("param", &size["param"]),
                };
                let shape = sizes.get(&(kind.to_string(), name.as_str().unwrap().to_string()))?;
                Some((
                    eq["poly"].clone(),
                    shape[size["axis"].as_u64().unwrap() as usize],
                ))
            })
            .collect();
        let fixpoint = |eqs: &[(Value, i64)], dims: &mut Vec<Option<i64>>| {
            while eqs.iter().any(|(p, s)| solve_one(p, *s, dims)) {}
        };
        fixpoint(&equations, &mut dims);
        let mut later = Vec::new();
        for (name, r) in ranges {
            let (lo, hi) = (poly_value(&r[0], &dims), poly_value(&r[1], &dims));
            let axis = loss["dim_equations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|eq| eq["size"]["param"].as_str() == Some(&name))
                .map(|eq| eq["poly"].clone());
            if let (Some(lo), Some(hi), Some(axis)) = (lo, hi, axis) {
                later.push((axis, (hi - lo).max(0)));
            }
        }
        fixpoint(&later, &mut dims);
        // A dimension that only absent optional inputs (without defaults) mention is 0.
        let mut needed = vec![false; n];
        let mut mark = |shape: &Value| {
            for p in shape.as_array().unwrap() {
                for mono in p.as_array().unwrap() {
                    for d in mono[1].as_array().unwrap() {
                        needed[d.as_u64().unwrap() as usize] = true;
                    }
                }
            }
        };
        for i in loss["inputs"].as_array().unwrap() {
            if present[i["name"].as_str().unwrap()] {
                mark(&i["shape"]);
            }
        }
        for p in loss["params"].as_array().unwrap() {
            mark(&p["shape"]);
        }
        for (d, v) in dims.iter_mut().enumerate() {
            if v.is_none() {
                assert!(
                    !needed[d],
                    "dimension {d} of `{}` is not solved",
                    loss["name"]
                );
                *v = Some(0);
            }
        }
        all_dims.push(dims);
        all_present.push(present);
    }
    (all_dims, all_present)
}

/// Compiles `terms` as kernel `name`, binds `data_text` through lossc's runtime and
/// through the manifest host, and compares the parameter blocks word for word.
fn check(
    program: &Program,
    name: &str,
    terms: &[FactoryTerm],
    data_json: &Value,
    validator: &jsonschema::Validator,
) -> bool {
    let k = codegen::compile(program, name, terms).unwrap();
    let m = manifest(program, &k);
    assert_valid(validator, &m, name);
    // A backward kernel's manifest section, when every input can be differentiated.
    if let Ok(b) = compile_backward(program, name, terms, &Wrt::EveryInput) {
        let mut with = m.clone();
        with["backward"] = b.manifest();
        assert_valid(
            validator,
            &with,
            &format!("{name} with its backward kernel"),
        );
    }

    let data = parse_json_data(&data_json.to_string()).unwrap();
    let prepared = match prepare(program, terms, &data, &vec![]) {
        Ok((prepared, _)) => prepared,
        // Data this loss cannot take (a case for a loss of another name's params, say):
        // its manifest is validated only.
        Err(RunError::Bind(BindError::MissingParam { .. } | BindError::MissingInput { .. })) => {
            return false;
        }
        Err(e) => panic!("{name}: {e}"),
    };
    let bound: Vec<&Bound> = prepared.iter().map(|p| &p.bound).collect();
    let arena = pack_arena(&bound, &[]).unwrap();
    let plan = lossc::gpu::plan::plan(&Adapter::a_gpu(), &k, &bound, RowPlacement::Auto).unwrap();
    let anneal: Vec<f32> = (0..terms.len()).map(|i| 0.25 + i as f32).collect();
    let block = fill_parameter_block(&k, &bound, &anneal, &arena, &plan).unwrap();

    let (dims, present) = solve(&m, data_json);
    let mut enums = Vec::new();
    for (l, loss) in m["losses"].as_array().unwrap().iter().enumerate() {
        let mut e = HashMap::new();
        for p in loss["params"].as_array().unwrap() {
            let Some(variants) = p["variants"].as_array() else {
                continue;
            };
            let chosen = param_value(&m, l, p, data_json).map(|v| match v.get("variant") {
                Some(s) => s.clone(),
                None => v.clone(),
            });
            let number = variants
                .iter()
                .find(|x| Some(&x["name"]) == chosen.as_ref())
                .map_or(-1, |x| x["number"].as_i64().unwrap());
            e.insert(p["name"].as_str().unwrap().to_string(), number);
        }
        // The host's solution agrees with the runtime's (a clearer failure than a slot).
        let want: Vec<Option<i64>> = bound[l].dims.iter().copied().map(Some).collect();
        assert_eq!(dims[l], want, "{name}: dims of loss {l}");
        enums.push(e);
    }
    let host = Host {
        m: &m,
        dims,
        present,
        enums,
        offsets: arena
            .offsets
            .iter()
            .map(|(k, v)| (k.clone(), *v as i64))
            .collect(),
        arena_floats: arena.values.len() as i64,
        row_per_thread: plan.work.rows_per_item.clone(),
        anneal_bits: anneal.iter().map(|a| a.to_bits() as i32 as i64).collect(),
    };
    let slots = m["parameter_block"].as_array().unwrap();
    assert_eq!(slots.len(), k.layout.slots.len());
    for s in slots {
        let i = s["slot"].as_u64().unwrap() as usize;
        let v = host.eval(&s["value"]);
        assert_eq!(
            v,
            i64::from(block[i]),
            "{name}: slot {i} ({s}) is {} in lossc's block, {v} by the manifest",
            block[i]
        );
    }
    // The buffers the host creates: never empty, and the dispatch within WebGPU's limit.
    for b in m["buffers"].as_array().unwrap() {
        let bytes = host.eval(&b["bytes"]);
        assert!(bytes > 0, "{name}: {b}");
        // Runs of words fill the buffer exactly.
        if let Some(runs) = b["init"].get("runs") {
            let words: i64 = runs
                .as_array()
                .unwrap()
                .iter()
                .map(|r| host.eval(&r["count"]))
                .sum();
            assert_eq!(4 * words, bytes, "{name}: {b}");
        }
    }
    let wg = host.eval(&m["dispatch"]["workgroups"][0]);
    assert_eq!(wg, plan.work.workgroups, "{name}: workgroups");
    true
}

#[test]
fn a_host_following_the_manifest_fills_the_runtimes_parameter_block_for_every_example() {
    let validator = schema();
    let mut files = common::example_files();
    files.push(common::root().join("examples/factories.loss"));
    let program = common::check_files(&files);
    // Each example loss alone, on the first of Lightning Pose's conformance cases for it
    // that lossc binds.
    let conformance = common::conformance::single_loss_cases();
    for l in &program.losses {
        let terms = [FactoryTerm::plain(l.name.clone())];
        let compared = conformance
            .iter()
            .filter(|(loss, _)| *loss == l.name)
            .any(|(_, data)| check(&program, &l.name, &terms, data, &validator));
        assert!(compared, "no conformance case of {} binds", l.name);
    }
    for f in &program.factories {
        let checked = check(
            &program,
            &f.name,
            &f.terms,
            &common::demo_data_for(&f.terms),
            &validator,
        );
        assert!(checked, "{}", f.name);
    }
}

#[test]
fn a_host_following_the_manifest_fills_the_runtimes_parameter_block_for_every_zoo_loss() {
    let validator = schema();
    let reference = common::read_json(&common::root().join("examples/zoo/reference.json"));
    let mut checked = 0;
    for (name, case) in reference["losses"].as_object().unwrap() {
        let file = common::root()
            .join("examples/zoo")
            .join(case["file"].as_str().unwrap());
        let program = common::check_files(&[file]);
        let data = &case["data"];
        let ok = check(
            &program,
            name,
            &[FactoryTerm::plain(name.clone())],
            data,
            &validator,
        );
        assert!(ok, "{name}");
        checked += 1;
    }
    assert!(checked >= 29, "{checked} zoo losses");
}

/// The random programs of `tests/gpu_programs.rs` (lets holding reductions, ranks,
/// enum params choosing branches, gathers) on data of many shapes.
#[test]
fn a_host_following_the_manifest_fills_the_runtimes_parameter_block_for_random_programs() {
    let validator = schema();
    let shapes = [
        (4, 3),
        (1, 1),
        (40, 12),
        (3, 4100),
        (9, 1),
        (16, 64),
        (5, 783),
        (12, 40),
    ];
    let mut r = common::Rng(0x6d61_6e69_6665_7374);
    for case in 0..48 {
        let (n, m) = shapes[case % shapes.len()];
        let text = common::programs::random_program(&mut r, m > 100, case % 2 == 0);
        let data = common::programs::random_data_json(&mut r, n, m, false);
        let sources = [lossc::diagnostics::Source::new("random.loss", text.clone())];
        let checked = lossc::sema::check(&sources);
        assert!(!checked.has_errors(), "{}", checked.render(&sources));
        let terms = [FactoryTerm::plain("random")];
        let ok = check(&checked.program, "random", &terms, &data, &validator);
        assert!(ok, "case {case}:\n{text}");
    }
}

/// A manifest the schema must refuse: the schema is not vacuous.
#[test]
fn the_schema_refuses_a_manifest_with_a_slot_in_source_syntax() {
    let validator = schema();
    let program =
        common::check_files(&[common::root().join("examples/lightning_pose/temporal.loss")]);
    let k = codegen::compile(&program, "temporal", &[FactoryTerm::plain("temporal")]).unwrap();
    let mut m = manifest(&program, &k);
    assert_valid(&validator, &m, "temporal");
    m["parameter_block"][0]["value"] = Value::String("B - 2".into());
    assert!(!validator.is_valid(&m));
    let mut m2 = manifest(&program, &k);
    m2["manifest_version"] = 1.into();
    assert!(!validator.is_valid(&m2));
    let mut m3 = manifest(&program, &k);
    m3["losses"][0]["inputs"][0]["shape"][0] = Value::String("B".into());
    assert!(!validator.is_valid(&m3));
}
