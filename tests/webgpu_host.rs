//! The reference JavaScript host (`hosts/webgpu/lossc_host.js`), written from the
//! manifest's schema alone, runs every example loss (on a Lightning Pose conformance
//! case), both example factories (on the demo data), every zoo loss (on its reference
//! data) and random programs in headless Chromium's WebGPU
//! (`scripts/webgpu_host.py`; Dawn on SwiftShader, no GPU needed), and gives the CPU
//! evaluator's total and losses (rel 1e-5), and, with the backward kernel, its gradients
//! (within 1e-4 of each input's largest) wherever every optional input is given.
//!
//! Chromium is a requirement of the suite, not an option: when it is missing the test
//! fails and says how to get it (`scripts/test.sh` installs it).

mod common;

use std::path::PathBuf;
use std::process::Command;

use lossc::codegen;
use lossc::codegen::manifest::manifest;
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::{Wrt, compile_backward};
use lossc::runtime::run::{RunOptions, run_cpu};
use serde_json::{Value, json};

/// A case for the page, and the CPU evaluator's answer: the total and losses, or the
/// error of a read out of range.
struct Case {
    name: String,
    json: Value,
    cpu: Result<(f32, Vec<(String, f32)>), String>,
    /// d total / d input on the CPU, when the case also runs the backward kernel.
    grads: Vec<(String, Vec<f32>)>,
}

/// `None` when the CPU refuses the data other than for a read out of range (as for a
/// loss whose params only its factory sets).
fn case(program: &Program, name: &str, terms: &[FactoryTerm], data: &Value) -> Option<Case> {
    let parsed = parse_json_data(&data.to_string()).unwrap();
    let cpu = match run_cpu(program, terms, &parsed, &vec![], &RunOptions::default()) {
        Ok(r) => Ok((
            r.total,
            r.losses.iter().map(|(n, l)| (n.clone(), l.loss)).collect(),
        )),
        Err(e) if e.to_string().contains("out of range") => Err(e.to_string()),
        Err(_) => return None,
    };
    let k = codegen::compile(program, name, terms).unwrap();
    let mut m = manifest(program, &k);
    let mut json = json!({"name": name, "wgsl": k.wgsl, "data": data});
    // Gradients too, where the backward kernel applies: every optional input given (its
    // kernel assumes every stage runs).
    let every_input = terms.iter().all(|t| {
        let ir = program.loss(&t.loss).unwrap();
        ir.inputs.iter().all(|i| {
            !i.optional || i.default.is_some() || data.get(&i.name).is_some_and(|v| !v.is_null())
        })
    });
    let mut grads = Vec::new();
    if cpu.is_ok()
        && every_input
        && let Ok(b) = compile_backward(program, name, terms, &Wrt::EveryInput)
    {
        let opts = RunOptions {
            wrt: Wrt::EveryInput,
            ..RunOptions::default()
        };
        if let Ok(r) = run_cpu(program, terms, &parsed, &vec![], &opts) {
            grads = r.grads.into_iter().map(|(n, g)| (n, g.data)).collect();
            m["backward"] = b.manifest();
            json["backward_wgsl"] = json!(b.kernel.wgsl);
        }
    }
    json["manifest"] = m;
    Some(Case {
        name: name.to_string(),
        json,
        cpu,
        grads,
    })
}

fn number(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().unwrap() as f32,
        Value::String(s) if s == "NaN" => f32::NAN,
        Value::String(s) if s == "Infinity" => f32::INFINITY,
        Value::String(s) if s == "-Infinity" => f32::NEG_INFINITY,
        _ => panic!("not a number: {v}"),
    }
}

fn close(js: f32, cpu: f32) -> bool {
    (js.is_nan() && cpu.is_nan()) || js == cpu || (js - cpu).abs() <= 1e-5 * cpu.abs().max(1e-3)
}

#[test]
fn the_javascript_host_runs_every_example_factory_and_zoo_loss_in_chromium_as_the_cpu_does() {
    let root = common::root();
    let chromium = std::env::var_os("LOSSC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/chromium/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium is needed for the JavaScript host's test and is not at {} \
         (apt package `chromium`; scripts/test.sh installs it)",
        chromium.display()
    );

    let mut cases = Vec::new();
    // The examples and factories, on the demo's data for their losses.
    let mut files = common::example_files();
    files.push(root.join("examples/factories.loss"));
    let program = common::check_files(&files);
    // Each example loss alone, on the first of Lightning Pose's conformance cases for it
    // that the CPU runs.
    let conformance = common::conformance::single_loss_cases();
    for l in &program.losses {
        let terms = [FactoryTerm::plain(l.name.clone())];
        let found = conformance
            .iter()
            .filter(|(loss, _)| *loss == l.name)
            .find_map(|(_, data)| case(&program, &l.name, &terms, data).filter(|c| c.cpu.is_ok()));
        cases.push(found.unwrap_or_else(|| panic!("no conformance case of {} runs", l.name)));
    }
    let examples = cases.len();
    assert_eq!(examples, 12, "every example loss");
    for f in &program.factories {
        let c = case(
            &program,
            &f.name,
            &f.terms,
            &common::demo_data_for(&f.terms),
        );
        cases.push(c.unwrap_or_else(|| panic!("the CPU refused factory {}", f.name)));
    }
    // The zoo, on its reference data.
    let reference = common::read_json(&root.join("examples/zoo/reference.json"));
    for (name, c) in reference["losses"].as_object().unwrap() {
        let file = root.join("examples/zoo").join(c["file"].as_str().unwrap());
        let program = common::check_files(&[file]);
        let terms = [FactoryTerm::plain(name.clone())];
        let c = case(&program, name, &terms, &c["data"]);
        cases.push(c.unwrap_or_else(|| panic!("the CPU refused zoo loss {name}")));
    }
    // Random programs: lets of reductions, ranks, enums choosing branches, gathers.
    // Every fourth gathers with a target out of range, which fails where it is read.
    let mut r = common::Rng(0x6a73_686f_7374);
    let mut failing = 0;
    for k in 0..16 {
        let (n, m) = [(4, 3), (1, 1), (12, 40), (9, 1)][k % 4];
        let bad = k % 4 == 3;
        let text = common::programs::random_program(&mut r, false, k % 2 == 1);
        let data = common::programs::random_data_json(&mut r, n, m, bad);
        let sources = [lossc::diagnostics::Source::new("random.loss", text)];
        let checked = lossc::sema::check(&sources);
        let terms = [FactoryTerm::plain("random")];
        if let Some(mut c) = case(&checked.program, "random", &terms, &data) {
            c.name = format!("random{k}");
            c.json["name"] = json!(c.name);
            failing += usize::from(c.cpu.is_err());
            cases.push(c);
        }
    }
    assert!(failing > 0, "no random program failed a read");

    let dir = std::env::temp_dir().join(format!("lossc-webgpu-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases_path = dir.join("cases.json");
    let out_path = dir.join("results.json");
    let list: Vec<&Value> = cases.iter().map(|c| &c.json).collect();
    std::fs::write(&cases_path, serde_json::to_vec(&list).unwrap()).unwrap();
    let ran = Command::new("python3")
        .arg(root.join("scripts/webgpu_host.py"))
        .arg(&cases_path)
        .arg("--out")
        .arg(&out_path)
        .arg("--chromium")
        .arg(&chromium)
        .output()
        .expect("run python3 scripts/webgpu_host.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        ran.status.success(),
        "scripts/webgpu_host.py failed:\n{report}"
    );
    let results: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let mut wrong = Vec::new();
    let mut gradients = 0;
    for c in &cases {
        let r = &results[&c.name];
        let Some(res) = r.get("result") else {
            wrong.push(format!("{}: the host failed: {}", c.name, r["error"]));
            continue;
        };
        let word = res["errorWord"].as_u64().unwrap();
        let (total, losses) = match &c.cpu {
            Ok(ok) => ok,
            Err(e) => {
                // The error word names the failed read's site: the same tensor.
                let sites = c.json["manifest"]["sites"].as_array().unwrap();
                let site = (word as usize).checked_sub(1).and_then(|i| sites.get(i));
                let tensor = site.map(|s| format!("of `{}`", s["tensor"].as_str().unwrap()));
                if !tensor.is_some_and(|t| e.contains(&t)) {
                    wrong.push(format!(
                        "{}: error word {word} in Chromium; the CPU: {e}",
                        c.name
                    ));
                }
                continue;
            }
        };
        if word != 0 {
            wrong.push(format!("{}: error word {word}", c.name));
        }
        let js_total = number(&res["total"]);
        if !close(js_total, *total) {
            wrong.push(format!(
                "{}: total {js_total} in Chromium, {total} on the CPU",
                c.name
            ));
        }
        for (input, cpu) in &c.grads {
            let Some(js) = res["grads"][input]["data"].as_array() else {
                wrong.push(format!("{}: no gradient of {input} from Chromium", c.name));
                continue;
            };
            let scale = cpu
                .iter()
                .filter(|g| g.is_finite())
                .fold(1e-3f32, |a, g| a.max(g.abs()));
            let off = js.iter().map(number).zip(cpu).position(|(j, g)| {
                !((j.is_nan() && g.is_nan()) || j == *g || (j - g).abs() <= 1e-4 * scale)
            });
            if js.len() != cpu.len() || off.is_some() {
                let k = off.unwrap_or(0);
                wrong.push(format!(
                    "{}: d total / d {input}[{k}] is {} in Chromium, {} on the CPU ({} vs {} elements)",
                    c.name,
                    js.get(k).map_or(f32::NAN, number),
                    cpu.get(k).copied().unwrap_or(f32::NAN),
                    js.len(),
                    cpu.len()
                ));
            }
            gradients += 1;
        }
        for (i, (loss, value)) in losses.iter().enumerate() {
            let js = number(&res["losses"][i]["loss"]);
            if res["losses"][i]["name"] != json!(loss) || !close(js, *value) {
                wrong.push(format!(
                    "{}: loss {loss} is {js} in Chromium, {value} on the CPU",
                    c.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}\n{report}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    let with_grads = cases.iter().filter(|c| !c.grads.is_empty()).count();
    assert!(
        with_grads >= 30,
        "only {with_grads} cases ran their backward kernel"
    );
    eprintln!(
        "{report}{} cases agree ({examples} examples alone); {gradients} gradients of {with_grads} cases",
        cases.len()
    );
}
