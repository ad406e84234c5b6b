//! The layer rule of `docs/architecture.md`, checked on the source text: each top-level
//! module of `src/` names (as `crate::…`) only the
//! modules below it. Test modules (`#[cfg(test)]` to the end of a file, or a file named
//! `tests.rs`) and comments are not checked: a unit test may build its input with a
//! higher layer, and prose may name any layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each layer and the layers it may use, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    ("diagnostics", &[]),
    ("ice", &[]),
    ("syntax", &["diagnostics"]),
    ("ir", &["diagnostics", "ice"]),
    ("sema", &["diagnostics", "ice", "syntax", "ir"]),
    ("ad", &["diagnostics", "ice", "ir"]),
    ("bind", &["diagnostics", "ice", "ir"]),
    ("eval", &["ice", "ir", "bind"]),
    ("codegen", &["diagnostics", "ice", "ir"]),
    ("gpu", &["ice", "ir", "bind", "codegen"]),
    (
        "runtime",
        &[
            "diagnostics",
            "ice",
            "ir",
            "ad",
            "bind",
            "eval",
            "codegen",
            "gpu",
        ],
    ),
    (
        "integrations",
        &[
            "diagnostics",
            "ice",
            "ir",
            "sema",
            "codegen",
            "gpu",
            "runtime",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The non-test, non-comment code of a file.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named as `crate::NAME` in `code`.
fn named_layers(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .map(|(i, _)| {
            code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut violations = Vec::new();
    let mut checked = 0;
    for (layer, may_use) in LAYERS {
        let mut files = Vec::new();
        let dir = src.join(layer);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{layer}.rs")));
        }
        assert!(
            files.iter().all(|f| f.exists()),
            "layer `{layer}` has no source"
        );
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in named_layers(&code(&text)) {
                if used != *layer
                    && allowed.contains_key(used.as_str())
                    && !may_use.contains(&used.as_str())
                {
                    violations.push(format!("{} uses `crate::{used}`", file.display()));
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} files read");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let layers: Vec<&str> = LAYERS.iter().map(|(l, _)| *l).collect();
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(layers.contains(&m), "module `{m}` is in no layer");
        }
    }
}

#[test]
fn the_checker_sees_a_violation() {
    // The checker itself: a use of a higher layer in code is found; in a comment or a
    // test module it is not.
    let text = "use crate::ir::Op;\nuse crate::runtime::run; // crate::gpu\n#[cfg(test)]\nuse crate::eval;";
    assert_eq!(named_layers(&code(text)), vec!["ir", "runtime"]);
}
