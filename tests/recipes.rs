//! The recipes of docs/language.md (section 11): every ```` ```loss ```` block there is a
//! complete file that checks, and each runs on both back ends against the value and
//! gradient PyTorch gives on the same data (`tests/reference/recipes.json`, written by
//! `scripts/reference/recipes.py`).

mod common;

use lossc::diagnostics::Source;
use lossc::ir::FactoryTerm;
use lossc::runtime::data::parse_json_data;
use lossc::runtime::grad::Wrt;
use lossc::runtime::run::{Backend, RunOptions, run};

/// The ```` ```loss ```` blocks of the docs' recipes section.
fn recipes() -> Vec<String> {
    let doc = std::fs::read_to_string(common::root().join("docs/language.md")).unwrap();
    let section = doc
        .split("## 11. Recipes")
        .nth(1)
        .expect("a recipes section");
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```loss\n") {
        let body = &rest[start + "```loss\n".len()..];
        let end = body.find("```").unwrap();
        blocks.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    blocks
}

#[test]
fn every_recipe_checks_and_matches_pytorch_on_both_back_ends() {
    let reference = common::read_json(&common::root().join("tests/reference/recipes.json"));
    let blocks = recipes();
    assert!(blocks.len() >= 7, "{} recipes", blocks.len());
    let mut seen = Vec::new();
    for text in &blocks {
        let sources = [Source::new("recipe.loss", text.as_str())];
        let checked = lossc::sema::check(&sources);
        assert!(!checked.has_errors(), "{}", checked.render(&sources));
        let program = checked.program;
        assert_eq!(program.losses.len(), 1, "{text}");
        let name = program.losses[0].name.clone();
        let r = &reference["recipes"][&name];
        assert!(r.is_object(), "recipe `{name}` has no PyTorch reference");
        seen.push(name.clone());
        let data = parse_json_data(&r["data"].to_string()).unwrap();
        let wrt = r["wrt"].as_str().unwrap().to_string();
        let want = r["value"].as_f64().unwrap();
        let want_grad: Vec<f64> = r["grad"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for backend in [Backend::Cpu, Backend::Gpu] {
            let opts = RunOptions {
                backend,
                wrt: Wrt::Inputs(vec![wrt.clone()]),
                ..Default::default()
            };
            let terms = [FactoryTerm::plain(name.clone())];
            let out = run(&program, &name, &terms, &data, &vec![], &opts).unwrap();
            let got = out.total as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "{name} on {backend:?}: {got}, PyTorch {want}"
            );
            let grad = &out.grads[0].1.data;
            assert_eq!(grad.len(), want_grad.len());
            let scale = want_grad.iter().fold(1e-30f64, |s, g| s.max(g.abs()));
            for (k, (g, w)) in grad.iter().zip(&want_grad).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= 1e-4 * scale,
                    "{name} on {backend:?}: d/d{wrt}[{k}] = {g}, PyTorch {w}"
                );
            }
        }
    }
    let listed = reference["recipes"].as_object().unwrap().len();
    assert_eq!(
        seen.len(),
        listed,
        "every reference has its recipe: {seen:?}"
    );
}
