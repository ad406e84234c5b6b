//! `lossc compile` as a user runs it: every example and example factory to every target,
//! a manifest beside each kernel, and the SPIR-V accepted by `spirv-val` (the Khronos
//! validator, independent of naga). scripts/test.sh installs it where it can.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn compile_all(target: &str, test: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = std::env::temp_dir().join(format!(
        "lossc-targets-{test}-{target}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut args: Vec<String> = vec!["compile".into()];
    args.extend(
        common::example_files()
            .iter()
            .map(|p| p.display().to_string()),
    );
    args.push("examples/factories.loss".into());
    args.extend([
        "-o".into(),
        dir.display().to_string(),
        "--target".into(),
        target.into(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::lossc(&argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    (dir, files)
}

#[test]
fn every_kernel_compiles_to_every_target_with_a_manifest() {
    for (target, ext) in [
        ("wgsl", "wgsl"),
        ("spirv", "spv"),
        ("msl", "metal"),
        ("hlsl", "hlsl"),
        ("glsl", "comp.glsl"),
    ] {
        let (dir, files) = compile_all(target, "all");
        let kernels: Vec<&PathBuf> = files
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(&format!(".{ext}")))
            .collect();
        let manifests = files
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
            .count();
        // 12 losses and 2 factories.
        assert_eq!(kernels.len(), 14, "{target}: {files:?}");
        assert_eq!(manifests, 14, "{target}");
        for k in kernels {
            assert!(
                std::fs::metadata(k).unwrap().len() > 1000,
                "{}",
                k.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn spirv_val_accepts_every_kernel() {
    let (dir, files) = compile_all("spirv", "val");
    let spirv: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "spv"))
        .collect();
    assert_eq!(spirv.len(), 14);
    for f in spirv {
        let out = Command::new("spirv-val")
            .args(["--target-env", "vulkan1.1"])
            .arg(f)
            .output()
            .expect("spirv-val is missing: run scripts/test.sh, which installs spirv-tools, or `apt-get install spirv-tools`");
        assert!(
            out.status.success(),
            "{}: {}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spirv_val_accepts_a_kernel_specialised_to_sizes() {
    // `lossc run` dispatches kernels specialised to the bound sizes; check the demo's,
    // with each row placement (their code differs).
    let dir =
        std::env::temp_dir().join(format!("lossc-targets-specialised-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for rows in ["shared", "per-thread"] {
        spirv_val_specialised(&dir, rows);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn spirv_val_specialised(dir: &std::path::Path, rows: &str) {
    let wgsl_path = dir.join(format!("k_{rows}.wgsl"));
    let mut args = common::demo_run_args();
    args.extend(["--backend", "gpu", "--rows", rows].map(String::from));
    let out = Command::new(env!("CARGO_BIN_EXE_lossc"))
        .args(&args)
        .current_dir(common::root())
        .env("LOSSC_DUMP_KERNEL", &wgsl_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wgsl = std::fs::read_to_string(&wgsl_path).unwrap();
    // The anneal factors alone stay in the uniform block (a host changes them between
    // runs); every other slot is a literal.
    assert!(wgsl.contains("lc_meta.m["));
    assert_eq!(
        wgsl.matches("lc_meta.m[").count(),
        wgsl.matches("lc_bits(bitcast<u32>(lc_meta.m[").count(),
        "a specialised kernel reads no other slot from the uniform block"
    );
    let v = lossc::codegen::validate::validate(&wgsl).unwrap();
    let spv =
        lossc::codegen::validate::translate(&v, &wgsl, lossc::codegen::validate::Target::Spirv)
            .unwrap();
    let spv_path = dir.join(format!("k_{rows}.spv"));
    std::fs::write(&spv_path, spv).unwrap();
    let val = Command::new("spirv-val")
        .args(["--target-env", "vulkan1.1"])
        .arg(&spv_path)
        .output()
        .expect("spirv-val");
    assert!(
        val.status.success(),
        "--rows {rows}: {}{}",
        String::from_utf8_lossy(&val.stdout),
        String::from_utf8_lossy(&val.stderr)
    );
}
