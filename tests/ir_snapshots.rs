//! Snapshots of the IR of every example loss after the passes (folding, CSE, dead
//! nodes, ranges), as the DOT text `lossc graph` prints: one snapshot per loss,
//! `tests/snapshots/ir_snapshots__<loss>.snap`. A refactor of the passes that changes
//! no semantics should produce no diff here; a diff is the graph a reviewer reads.
//!
//! Also: every example checks clean on its own file, and the text is stable run to run.

mod common;

use lossc::diagnostics::Source;

use common::{example_files, lossc};

fn source(path: &std::path::Path) -> Source {
    let name = format!(
        "examples/lightning_pose/{}",
        path.file_name().unwrap().to_string_lossy()
    );
    Source::new(name, std::fs::read_to_string(path).unwrap())
}

#[test]
fn every_example_checks_clean_on_its_own() {
    let files = example_files();
    assert_eq!(files.len(), 12, "the twelve Lightning Pose losses");
    for path in files {
        let sources = [source(&path)];
        let checked = lossc::sema::check(&sources);
        assert!(
            checked.diagnostics.is_empty(),
            "{}:\n{}",
            sources[0].name,
            checked.render(&sources)
        );
        assert_eq!(checked.program.losses.len(), 1, "{}", sources[0].name);
        // The loss is named after its file.
        let stem = path.file_stem().unwrap().to_string_lossy();
        assert_eq!(checked.program.losses[0].name, stem);
        // And the binary agrees.
        let out = lossc(&["check", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_example_and_factory_checks_clean_together() {
    let mut sources: Vec<Source> = example_files().iter().map(|p| source(p)).collect();
    let factories = common::root().join("examples/factories.loss");
    sources.push(Source::new(
        "examples/factories.loss",
        std::fs::read_to_string(factories).unwrap(),
    ));
    let checked = lossc::sema::check(&sources);
    assert!(
        checked.diagnostics.is_empty(),
        "{}",
        checked.render(&sources)
    );
    assert_eq!(checked.program.losses.len(), 12);
    assert!(!checked.program.factories.is_empty());
}

#[test]
fn the_ir_of_every_example_matches_its_snapshot() {
    for path in example_files() {
        let sources = [source(&path)];
        let checked = lossc::sema::check(&sources);
        assert!(!checked.has_errors(), "{}", checked.render(&sources));
        let loss = &checked.program.losses[0];
        let dot = lossc::ir::dot::to_dot(&[loss]);
        let mut settings = insta::Settings::clone_current();
        settings.set_description(format!("lossc graph {}", sources[0].name));
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(loss.name.clone(), dot));
    }
}

/// Checking the same files twice (fresh hash maps, fresh seeds) gives the same text, and
/// the library's DOT is what `lossc graph` prints.
#[test]
fn the_ir_text_is_stable_and_matches_the_cli() {
    for path in example_files() {
        let once = || {
            let sources = [source(&path)];
            let checked = lossc::sema::check(&sources);
            lossc::ir::dot::to_dot(&[&checked.program.losses[0]])
        };
        let first = once();
        for _ in 0..3 {
            assert_eq!(once(), first, "{}", path.display());
        }
        let out = lossc(&["graph", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            first,
            "{}",
            path.display()
        );
    }
}

/// Every index variable of every example gets a range (none prints as `in ?`).
#[test]
fn every_index_of_every_example_has_a_range() {
    for path in example_files() {
        let sources = [source(&path)];
        let checked = lossc::sema::check(&sources);
        let loss = &checked.program.losses[0];
        for r in lossc::ir::dot::ranges(loss) {
            assert!(!r.ends_with("in ?"), "{}: {r}", loss.name);
        }
    }
}

/// After CSE no two nodes compute the same operation on the same operands, and after
/// dead-node removal every node feeds another node or a stage.
#[test]
fn the_passes_leave_no_duplicate_and_no_dead_node() {
    for path in example_files() {
        let sources = [source(&path)];
        let checked = lossc::sema::check(&sources);
        let ir = &checked.program.losses[0];
        let mut seen = std::collections::HashMap::new();
        for n in ir.graph.node_indices() {
            let node = &ir.graph[n];
            let key = (
                format!("{:?} {:?}", node.op, node.ty),
                lossc::ir::operands(&ir.graph, n),
            );
            if let Some(first) = seen.insert(key, n) {
                panic!(
                    "{}: nodes {first:?} and {n:?} are the same {:?}",
                    ir.name, node.op
                );
            }
        }
        let dot = lossc::ir::dot::to_dot(&[ir]);
        for n in ir.graph.node_indices() {
            let used = dot.contains(&format!("l0n{} ->", n.index()));
            assert!(
                used,
                "{}: node {n:?} ({:?}) feeds nothing",
                ir.name, ir.graph[n].op
            );
        }
    }
}
