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
    for rows in ["auto", "shared", "per-thread"] {
        let out = common::lossc(&["explain", loss, "--data", data, "--rows", rows]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Per row k: the table l[j] reads x and s for each of its 4 entries and 64
        // pixels (256 loads); l[k], which depends on the row alone, is a table of one
        // entry built once per row (64 loads); the other two uses of each are the same
        // tables, not built again. Four rows: 4 · (256 + 64) = 1280 loads of each,
        // 5120 bytes.
        for expect in [
            "input x  [4, 8, 8]: 1024 bytes, loaded 5120 bytes (5.00x)",
            "input s  [4]: 16 bytes, loaded 5120 bytes (320.00x)",
        ] {
            assert!(
                text.contains(expect),
                "--rows {rows}: no `{expect}` in\n{text}"
            );
        }
        // The loops a read runs in that its subscripts do not use, each index once.
        let s_line = text.lines().find(|l| l.contains("reads    s:")).unwrap();
        assert_eq!(
            s_line.matches("once per value of (h, w) ").count(),
            1,
            "{s_line}"
        );
        assert_eq!(
            s_line.matches("once per value of (k, h, w) ").count(),
            1,
            "{s_line}"
        );
        let x_line = text.lines().find(|l| l.contains("reads    x:")).unwrap();
        assert_eq!(x_line.matches("once at ").count(), 1, "{x_line}");
        assert_eq!(
            x_line.matches("once per value of (k) ").count(),
            1,
            "{x_line}"
        );
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
