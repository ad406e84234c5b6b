//! An independent WGSL validator for the generated kernels: lossc checks its WGSL with
//! naga; this test has Tint, inside headless Chromium's WebGPU (Dawn on SwiftShader, so no
//! GPU is needed), accept every kernel `lossc compile` writes for the Lightning Pose
//! examples — shader module, compute pipeline, and the manifest's bindings as a layout.
//! `scripts/webgpu_validate.py` does the browser side; one browser launch covers all
//! modules.
//!
//! Chromium is a requirement of the suite, not an option: when it is missing the test
//! fails and says how to get it (`scripts/test.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("LOSSC_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/chromium/chromium"))
}

/// A fresh folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("lossc-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn loss_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("examples/lightning_pose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "loss"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .loss files in {}", dir.display());
    files.push(root.join("examples/factories.loss"));
    files
}

#[test]
fn tint_in_chromium_accepts_every_generated_kernel() {
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "Chromium is not installed ({} is missing), and this test needs it to validate the \
         generated WGSL with Tint. Run the suite with `scripts/test.sh`, which installs it \
         (apt package `chromium`), or install it yourself: `apt-get install -y chromium`. \
         Set LOSSC_CHROMIUM to use another Chromium binary.",
        chromium.display()
    );

    let root = root();
    let out = TempDir::new("webgpu-independent");
    let compiled = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .arg("compile")
        .args(loss_files(&root))
        .arg("-o")
        .arg(&out.0)
        .current_dir(&root)
        .output()
        .expect("lossc runs");
    assert!(
        compiled.status.success(),
        "lossc compile failed ({}):\n{}{}",
        compiled.status,
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    let kernels = std::fs::read_dir(&out.0)
        .expect("list the output")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wgsl"))
        })
        .count();
    assert!(kernels > 0, "lossc compile wrote no .wgsl file");
    // And kernels as `lossc run` dispatches them: specialised to the demo's sizes, with
    // each row placement (their code differs: per-thread and cooperative loops).
    for rows in ["shared", "per-thread"] {
        let mut run = Command::new(env!("CARGO_BIN_EXE_lossc"));
        run.arg("run").args(loss_files(&root));
        run.args([
            "--factory",
            "heatmap_semisupervised",
            "--backend",
            "gpu",
            "--rows",
            rows,
            "--data",
        ])
        .arg(root.join("examples/demo.json"));
        let ran = run
            .env(
                "LOSSC_DUMP_KERNEL",
                out.0
                    .join(format!("specialised_{rows}_heatmap_semisupervised.wgsl")),
            )
            .output()
            .expect("run lossc");
        assert!(
            ran.status.success(),
            "lossc run failed: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }

    let started = std::time::Instant::now();
    let validated = Command::new("python3")
        .arg(root.join("scripts/webgpu_validate.py"))
        .arg(&out.0)
        .arg("--chromium")
        .arg(&chromium)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 scripts/webgpu_validate.py: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
    assert!(
        validated.status.success(),
        "Tint (Chromium's WebGPU) did not accept every generated kernel; \
         scripts/webgpu_validate.py exited with {}:\n{report}",
        validated.status
    );
    let kernels = kernels + 2; // the specialised ones
    let summary = format!("{kernels}/{kernels} modules accepted");
    assert!(
        report.contains(&summary),
        "expected `{summary}` in the validator's report:\n{report}"
    );
    eprintln!(
        "{report}(validated in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
