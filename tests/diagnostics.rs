//! Snapshots of the diagnostics a user sees for broken programs.
//!
//! Every `tests/bad/*.loss` file is checked on its own with `lossc::sema::check` and its
//! rendered diagnostics are compared with `tests/snapshots/diagnostics__<file>.snap`.
//! Each diagnostic, rendered alone, must name `file:line:column` (the position of its
//! primary span) and put a caret under the text. A few inputs are generated here rather
//! than kept as files (200 000 nested parentheses, long operator chains, long and deep
//! `let` chains).
//!
//! After an intended change to the messages: `INSTA_UPDATE=always cargo test --test
//! diagnostics`, then read the `.snap` diffs before committing them.

mod common;

use std::path::PathBuf;

use lossc::diagnostics::Source;

use common::{lossc, root};

/// Files of `tests/bad/` that check clean, on purpose: the empty file.
const CLEAN: &[&str] = &["empty"];

fn bad_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "loss"))
        .collect();
    v.sort();
    v
}

fn stem(p: &std::path::Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Checks one source; returns the rendering (or a marker when there is nothing to
/// render), whether there were errors, and what is wrong with the form of each
/// diagnostic rendered alone: no `file:line:column` of its primary span, no caret, no
/// severity.
fn check_render_lint(src: Source) -> (String, bool, Vec<String>) {
    let sources = [src];
    let checked = lossc::sema::check(&sources);
    let mut problems = Vec::new();
    for (fi, d) in &checked.diagnostics {
        assert_eq!(*fi, 0);
        let one = sources[0].render(std::slice::from_ref(d));
        let (line, col) = sources[0].line_col(d.primary.0.start);
        let at = format!("┌─ {}:{line}:{col}", sources[0].name);
        if !one.contains(&at) {
            problems.push(format!("diagnostic does not name {at}:\n{one}"));
        }
        if !one.contains('^') {
            problems.push(format!("diagnostic has no caret:\n{one}"));
        }
        if !(one.starts_with("error: ") || one.starts_with("warning: ")) {
            problems.push(format!(
                "diagnostic does not start with its severity:\n{one}"
            ));
        }
    }
    let text = checked.render(&sources);
    let text = if text.is_empty() {
        "(no diagnostics)\n".to_string()
    } else {
        escape_controls(&text)
    };
    (text, checked.has_errors(), problems)
}

/// Control characters (a NUL echoed from a binary file) written as `\u{..}`, so that
/// snapshots stay text.
fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// [`check_render_lint`], asserting that every diagnostic is well formed.
fn check_and_render(src: Source) -> (String, bool) {
    let (text, has_errors, problems) = check_render_lint(src);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    (text, has_errors)
}

#[test]
fn every_bad_file_matches_its_snapshot() {
    let files = bad_files();
    assert!(
        files.len() >= 30,
        "tests/bad/ holds only {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in files {
        let name = stem(&path);
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let file_name = format!("{name}.loss");
        let (rendered, has_errors, problems) =
            check_render_lint(Source::new(file_name.clone(), text.clone()));
        if CLEAN.contains(&name.as_str()) {
            if has_errors {
                failures.push(format!("{file_name} should check clean:\n{rendered}"));
            }
        } else if !has_errors {
            failures.push(format!("{file_name} should have errors"));
        }
        failures.extend(problems.into_iter().map(|p| format!("{file_name}: {p}")));
        let mut settings = insta::Settings::clone_current();
        let description = if std::str::from_utf8(&bytes).is_ok()
            && !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            format!("tests/bad/{file_name}:\n{text}")
        } else {
            format!("tests/bad/{file_name} (not text: checked as lossy UTF-8)")
        };
        settings.set_description(description);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(name, rendered));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file of binary garbage (it starts with a NUL byte), checked as lossy UTF-8, gets one
/// error naming the unexpected character (not pest's "expected something else"), its
/// caret under the NUL, which is shown as `?`.
#[test]
fn binary_garbage_is_one_located_error() {
    let bytes = std::fs::read(root().join("tests/bad/binary_garbage.loss")).unwrap();
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture must not be UTF-8"
    );
    let (rendered, has_errors) =
        check_and_render(Source::new("g.loss", String::from_utf8_lossy(&bytes)));
    assert!(has_errors);
    assert_eq!(
        rendered.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{rendered}"
    );
    assert!(!rendered.contains("something else"), "{rendered}");
}

/// The line of each diagnostic of `tests/bad/FILE`, checked on its own, and the
/// diagnostics rendered.
fn error_lines(file: &str) -> (Vec<usize>, String) {
    let text = std::fs::read_to_string(root().join("tests/bad").join(file)).unwrap();
    let sources = [Source::new(file, text)];
    let checked = lossc::sema::check(&sources);
    let lines = checked
        .diagnostics
        .iter()
        .map(|(_, d)| sources[0].line_col(d.primary.0.start).0)
        .collect();
    (lines, checked.render(&sources))
}

#[test]
fn two_errors_in_two_blocks_are_reported_together() {
    let (lines, rendered) = error_lines("two_blocks_two_errors.loss");
    assert_eq!(lines, vec![4, 9], "{rendered}");
}

#[test]
fn empty_and_blank_files_check_clean() {
    for text in ["", "\n\n", "   \t\n", "// only a comment\n", "\u{feff}"] {
        let sources = [Source::new("e.loss", text)];
        let checked = lossc::sema::check(&sources);
        assert!(
            checked.diagnostics.is_empty(),
            "{text:?}: {}",
            checked.render(&sources)
        );
        assert!(checked.program.losses.is_empty());
    }
}

#[test]
fn a_doc_comment_with_nothing_to_document_is_an_error() {
    let (rendered, has_errors) = check_and_render(Source::new("d.loss", "/// dangling\n"));
    assert!(has_errors, "{rendered}");
}

/// 200 000 nested parentheses: one located error, no stack overflow.
#[test]
fn deeply_nested_parentheses_are_one_error() {
    let n = 200_000;
    let text = format!(
        "loss l {{\n    input x : [B]\n    compute {}x[b]{}\n    reduce mean\n}}\n",
        "(".repeat(n),
        ")".repeat(n)
    );
    let (rendered, has_errors) = check_and_render(Source::new("deep.loss", text));
    assert!(has_errors);
    assert!(
        rendered.contains("nested more than"),
        "{}",
        &rendered[..rendered.len().min(400)]
    );
    assert_eq!(rendered.matches("error:").count(), 1);
    // The caret sits on line 3, the compute line.
    assert!(
        rendered.contains("┌─ deep.loss:3:"),
        "{}",
        &rendered[..rendered.len().min(400)]
    );
}

/// Long operator chains, unary prefixes and subscripts: bounded, never a stack overflow.
#[test]
fn long_operator_chains_are_bounded() {
    let n = 100_000;
    let bodies = [
        format!("x[b]{}", " + 1".repeat(n)),
        format!("x[b]{}", " ^ 2".repeat(n)),
        format!("{}x[b]", "-".repeat(n)),
        format!("{}(x[b] > 0)", "!".repeat(n)),
        format!("x[b{}]", " + 1".repeat(n)),
    ];
    for body in bodies {
        let text =
            format!("loss l {{\n    input x : [B]\n    compute {body}\n    reduce mean\n}}\n");
        let (rendered, has_errors) = check_and_render(Source::new("chain.loss", text));
        assert!(has_errors, "{}", &body[..40]);
        assert!(
            rendered.contains("nested more than"),
            "{}",
            &rendered[..rendered.len().min(400)]
        );
    }
}

/// A chain of 300 operators, within the parser's cap of 400, checks clean.
#[test]
fn moderate_chains_check_clean() {
    let text = format!(
        "loss l {{\n    input x : [B]\n    compute x[b]{}\n    reduce mean\n}}\n",
        " + 1".repeat(300)
    );
    let (rendered, has_errors) = check_and_render(Source::new("ok.loss", text));
    assert!(!has_errors, "{rendered}");
}

/// `x[5]` on a literal `[3]` is caught by `lossc check` (it used to pass and fail only
/// at run time), located at the subscript.
#[test]
fn constant_index_out_of_range_is_a_check_time_error() {
    let out = lossc(&["check", "tests/bad/constant_index_out_of_range.loss"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: index 5 is out of range for axis 0 of `x` (size 3)")
            && stderr.contains("constant_index_out_of_range.loss:4:15"),
        "{stderr}"
    );
}

/// A diagnostic about a whole stage (an optional input read in `compute`) starts and ends
/// on the stage's own line: the stage's span stops where its text does, not after the
/// whitespace that follows it (which would put the caret on `reduce mean`).
#[test]
fn stage_diagnostics_point_at_their_own_line() {
    let text =
        std::fs::read_to_string(root().join("tests/bad/optional_input_in_compute.loss")).unwrap();
    let sources = [Source::new("o.loss", text)];
    let checked = lossc::sema::check(&sources);
    let (_, d) = &checked.diagnostics[0];
    let (start, _) = sources[0].line_col(d.primary.0.start);
    let (end, _) = sources[0].line_col(d.primary.0.end);
    assert_eq!((start, end), (4, 4), "{}", checked.render(&sources));
}

/// A number too large for an index or a dimension is called too large, not "not a whole
/// number".
#[test]
fn huge_literals_are_called_too_large() {
    for file in ["huge_index_literal", "huge_dimension_literal"] {
        let text = std::fs::read_to_string(root().join(format!("tests/bad/{file}.loss"))).unwrap();
        let sources = [Source::new("h.loss", text)];
        let checked = lossc::sema::check(&sources);
        let r = checked.render(&sources);
        assert!(!r.contains("not a whole number"), "{r}");
    }
}

/// A dimension rejected in a shape keeps its place in the shape, so the tensor's
/// subscripts get no second, wrong error ("`x` has 0 dimensions"): one diagnostic.
#[test]
fn a_rejected_dimension_does_not_cascade() {
    let text =
        std::fs::read_to_string(root().join("tests/bad/huge_dimension_literal.loss")).unwrap();
    let sources = [Source::new("h.loss", text)];
    let checked = lossc::sema::check(&sources);
    let r = checked.render(&sources);
    assert!(!r.contains("has 0 dimensions"), "{r}");
    assert_eq!(checked.diagnostics.len(), 1, "{r}");
}

/// Products of constants too large for `i64`, in a shape, a subscript or a range: checking
/// them does not panic.
#[test]
fn large_constant_products_do_not_panic() {
    let big = "1000000000000000 * 1000000000000000";
    let texts = [
        format!("loss l {{\n input x : [{big} * B]\n compute x[b]\n reduce mean\n}}\n"),
        format!("loss l {{\n input x : [B]\n compute x[{big} * b]\n reduce mean\n}}\n"),
        format!("loss l {{\n input x : [B]\n compute sum(i in 0..{big}: x[b])\n reduce mean\n}}\n"),
    ];
    for text in texts {
        let r = std::panic::catch_unwind(|| {
            let sources = [Source::new("o.loss", text.clone())];
            lossc::sema::check(&sources).has_errors()
        });
        assert!(r.is_ok(), "panicked on:\n{text}");
    }
}

/// An index variable written only as a number (`x[b] * i`) is an unknown name, with the
/// note that an index must be used in a subscript, not a "did you mean `B`" (every
/// one-letter name is one edit away from `i`).
#[test]
fn an_index_used_only_as_a_number_gets_the_subscript_hint() {
    let text =
        std::fs::read_to_string(root().join("tests/bad/index_used_as_number_only.loss")).unwrap();
    let sources = [Source::new("i.loss", text)];
    let r = lossc::sema::check(&sources).render(&sources);
    assert!(!r.contains("did you mean `B`"), "{r}");
    assert!(r.contains("subscript"), "{r}");
}

fn let_chain(n: usize, body: impl Fn(usize) -> String) -> String {
    let mut s = String::from("loss l {\n    input x : [B]\n    let a0 = x[b]\n");
    for i in 1..n {
        s += &format!("    let a{i} = {}\n", body(i));
    }
    s += &format!("    compute a{}\n    reduce mean\n}}\n", n - 1);
    s
}

/// Runs `lossc check` on the text with a time limit; `(exit code, stderr)`, the code
/// `None` when it was killed.
fn check_with_limit(text: &str, limit: std::time::Duration) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "lossc-diag-limit-{}-{}",
        std::process::id(),
        text.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("l.loss");
    std::fs::write(&file, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(["check", file.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (code, stderr)
}

/// 5 000 lets, each the previous plus one: each expression is shallow, but the chain is
/// longer than lets may refer to lets. `lossc check` reports it and exits; no stack
/// overflow.
#[test]
fn long_let_chains_do_not_overflow_the_stack() {
    let text = let_chain(5000, |i| format!("a{} + 1", i - 1));
    let (code, stderr) = check_with_limit(&text, std::time::Duration::from_secs(30));
    assert!(
        matches!(code, Some(0) | Some(1)),
        "exit {code:?}:\n{}",
        &stderr[..stderr.len().min(300)]
    );
    assert!(
        !stderr.contains("overflow"),
        "{}",
        &stderr[..stderr.len().min(300)]
    );
}

/// 22 lets, each the previous one squared (`a_i = a_{i-1} * a_{i-1}`): expanded as a tree
/// this is 2^22 uses of `a0`, but a let used twice in one scope is lowered once, so
/// checking takes time linear in the chain: well within 5 s.
#[test]
fn let_doubling_chains_check_quickly() {
    let text = let_chain(22, |i| format!("a{0} * a{0}", i - 1));
    let (code, stderr) = check_with_limit(&text, std::time::Duration::from_secs(5));
    assert_eq!(
        code,
        Some(0),
        "killed after 5 s (None) or failed:\n{stderr}"
    );
}

/// The same chains, shorter (200 lets, 10 doublings), check clean.
#[test]
fn short_let_chains_check_clean() {
    for text in [
        let_chain(200, |i| format!("a{} + 1", i - 1)),
        let_chain(10, |i| format!("a{0} * a{0}", i - 1)),
    ] {
        let (rendered, has_errors) = check_and_render(Source::new("c.loss", text));
        assert!(!has_errors, "{rendered}");
    }
}

/// 20 lets of 390 nested minuses, each over the previous: every expression is within the
/// parser's cap, but expanded they nest 7 800 deep. `lossc check` reports one located
/// error (the depth cap) instead of overflowing its stack, and so does the library on a
/// test thread.
#[test]
fn deep_let_expansions_are_one_located_error() {
    let text = let_chain(20, |i| format!("{}a{}", "-".repeat(390), i - 1));
    let (code, stderr) = check_with_limit(&text, std::time::Duration::from_secs(30));
    let head = &stderr[..stderr.len().min(300)];
    assert_eq!(code, Some(1), "{head}");
    assert!(
        stderr.contains("nested more than 500 levels deep"),
        "{head}"
    );
    let (rendered, has_errors) = check_and_render(Source::new("deep.loss", text));
    assert!(has_errors);
    assert_eq!(rendered.matches("error:").count(), 1, "{rendered}");
}

/// A name defined again in another file: the diagnostic names the file of the first
/// definition, for losses and factories alike, and for a factory named like a loss.
#[test]
fn names_defined_again_in_another_file_name_that_file() {
    let loss = "loss l {\n    input x : [B]\n    compute x[b]\n    reduce mean\n}\nfactory f {\n    l\n}\n";
    let again = "loss l {\n    input x : [B]\n    compute x[b]\n    reduce mean\n}\nfactory f {\n    l\n}\nfactory l {\n    l\n}\n";
    let sources = [Source::new("a.loss", loss), Source::new("b.loss", again)];
    let checked = lossc::sema::check(&sources);
    let r = checked.render(&sources);
    for (what, note) in [
        ("loss `l` is defined twice", "first defined in a.loss"),
        ("factory `f` is defined twice", "first defined in a.loss"),
        (
            "factory `l` has the name of a loss",
            "the loss is defined in a.loss",
        ),
    ] {
        assert!(r.contains(what) && r.contains(note), "{what}:\n{r}");
    }
    assert_eq!(checked.diagnostics.len(), 3, "{r}");
    assert!(checked.diagnostics.iter().all(|(f, _)| *f == 1), "{r}");
}

/// One mistake in a let's body used twice is one error, not "2 errors found".
#[test]
fn an_error_in_a_let_body_is_reported_once() {
    let (lines, rendered) = error_lines("let_body_error_reported_once.loss");
    assert_eq!(lines, vec![6, 13], "{rendered}");
}
