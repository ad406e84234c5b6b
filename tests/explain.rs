//! `lossc explain`'s read counts against hand counts: each read as often as the kernel
//! runs it, under each row placement.

mod common;

/// K = 4 heatmaps of 8 × 8 and one scale per heatmap, ranked by their scaled means.
const RANK: &str = "loss r {\n    input x : [K, H, W]\n    input s : [K]\n    let l[k] = mean(h, w: x[k, h, w] * s[k])\n    compute sum(j: select(l[j] > l[k] || l[j] == l[k], 1, 0))\n    reduce  sum\n}\n";

#[test]
fn explain_counts_each_read_as_often_as_the_kernel_runs_it() {
    let dir = std::env::temp_dir().join(format!("lossc-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loss = dir.join("rank.loss");
    std::fs::write(&loss, RANK).unwrap();
    let x: Vec<String> = (0..4 * 8 * 8)
        .map(|i| format!("{}", (i * 7) % 13))
        .collect();
    let data = dir.join("rank.json");
    std::fs::write(
        &data,
        format!(
            r#"{{"x": {{"shape": [4, 8, 8], "data": [{}]}}, "s": [1, 2, 3, 4]}}"#,
            x.join(",")
        ),
    )
    .unwrap();
    let (loss, data) = (loss.to_str().unwrap(), data.to_str().unwrap());
    // (placement, loads of each of x and s): see below.
    for (rows, loads) in [("auto", 512), ("shared", 1280), ("per-thread", 512)] {
        let out = common::lossc(&["explain", loss, "--data", data, "--rows", rows]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The table l[j] reads x and s for each of its 4 entries and 64 pixels (256
        // loads); it depends on no row index, so each workgroup with rows of the loss
        // builds it once. l[k], which depends on the row alone, is a table of one entry
        // built once per row (64 loads); the other two uses of each are the same
        // tables, not built again. Four rows one per thread make one work item on one
        // workgroup: 256 + 4 · 64 = 512 loads of each. Shared, each row is an item on
        // its own workgroup: 4 · (256 + 64) = 1280.
        let bytes = 4 * loads;
        for expect in [
            format!(
                "input x  [4, 8, 8]: 1024 bytes, loaded {bytes} bytes ({:.2}x)",
                bytes as f64 / 1024.0
            ),
            format!(
                "input s  [4]: 16 bytes, loaded {bytes} bytes ({:.2}x)",
                bytes as f64 / 16.0
            ),
        ] {
            assert!(
                text.contains(&expect),
                "--rows {rows}: no `{expect}` in\n{text}"
            );
        }
        // The loops a read runs in that its subscripts do not use, each index once:
        // `s[j]` in the table over j and `s[k]` in the row's table each run once per
        // pixel; neither table loops over another row index (the one over j is built
        // once per workgroup, not once per row k).
        let s_line = text.lines().find(|l| l.contains("reads    s:")).unwrap();
        assert_eq!(
            s_line.matches("once per value of (h, w) ").count(),
            2,
            "{s_line}"
        );
        let x_line = text.lines().find(|l| l.contains("reads    x:")).unwrap();
        assert_eq!(x_line.matches("once at ").count(), 2, "{x_line}");
        assert!(!x_line.contains("per value"), "{x_line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A median's ranking loop compares every value with every other: it is counted.
#[test]
fn a_median_counts_its_ranking_loop() {
    let dir = std::env::temp_dir().join(format!("lossc-explain-med-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loss = dir.join("med.loss");
    std::fs::write(
        &loss,
        "loss m {\n    input x : [R, C]\n    compute x[r, c] - median(d: x[r, d])\n    reduce mean\n}\n",
    )
    .unwrap();
    let data = dir.join("med.json");
    let x: Vec<String> = (0..3 * 10).map(|i| format!("{}", (i * 7) % 11)).collect();
    std::fs::write(
        &data,
        format!(
            r#"{{"x": {{"shape": [3, 10], "data": [{}]}}}}"#,
            x.join(",")
        ),
    )
    .unwrap();
    let (loss, data) = (loss.to_str().unwrap(), data.to_str().unwrap());
    for rows in ["shared", "per-thread"] {
        let out = common::lossc(&["explain", loss, "--data", data, "--rows", rows]);
        let text = String::from_utf8_lossy(&out.stdout);
        // Per row of 10: each value once as a candidate (10), once per candidate in the
        // ranking loop (100), and once in `compute` (10): 120; three rows, 360 loads.
        let expect = "input x  [3, 10]: 120 bytes, loaded 1440 bytes (12.00x)";
        assert!(
            text.contains(expect),
            "--rows {rows}: no `{expect}` in\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
