//! naga as the gate: every generated module is parsed and validated before it is written
//! or run (a module naga rejects is a compiler bug, reported with the module text), and
//! naga's back ends give the other targets.

use naga::valid::{Capabilities, ValidationFlags, Validator};

use super::CompileError;
use crate::ice::InternalError;

/// An output language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// WGSL, as generated.
    Wgsl,
    /// SPIR-V (binary).
    Spirv,
    /// Metal Shading Language.
    Msl,
    /// HLSL (shader model 5.1).
    Hlsl,
    /// GLSL (ES 3.10 compute).
    Glsl,
}

impl Target {
    /// The file extension of the target.
    pub fn extension(self) -> &'static str {
        match self {
            Target::Wgsl => "wgsl",
            Target::Spirv => "spv",
            Target::Msl => "metal",
            Target::Hlsl => "hlsl",
            Target::Glsl => "comp.glsl",
        }
    }
}

/// A validated module.
pub struct Validated {
    /// naga's IR of it.
    pub module: naga::Module,
    /// What validation learnt (needed by the back ends).
    pub info: naga::valid::ModuleInfo,
}

/// Parses and validates WGSL; the error names the problem, the loss and the `.loss`
/// source the offending line comes from (when naga gives a place), and carries the module
/// text.
pub fn validate(wgsl: &str) -> Result<Validated, InternalError> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| {
        located(
            wgsl,
            e.location(wgsl).map(|l| l.line_number),
            format!(
                "naga cannot parse the generated WGSL:\n{}\n--- module ---\n{wgsl}",
                e.emit_to_string(wgsl)
            ),
        )
    })?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(&module)
        .map_err(|e| {
            located(
                wgsl,
                e.location(wgsl).map(|l| l.line_number),
                format!(
                    "naga rejects the generated WGSL:\n{}\n--- module ---\n{wgsl}",
                    e.emit_to_string(wgsl)
                ),
            )
        })?;
    Ok(Validated { module, info })
}

/// An internal error about line `line` (1-based) of a generated module: the loss is the
/// one whose function holds the line (`// loss NAME (file:line:col)` opens each), and the
/// place the nearest `// file:line:col` comment at or above the line within it (each
/// statement names the `.loss` line it comes from), else the loss's own.
pub fn located(wgsl: &str, line: Option<u32>, message: String) -> InternalError {
    let Some(line) = line.and_then(|l| usize::try_from(l).ok()) else {
        return InternalError::new(message);
    };
    let lines: Vec<&str> = wgsl.lines().take(line).collect();
    let mut at = None;
    for text in lines.iter().rev() {
        let trimmed = text.trim_start();
        let comment = text.rsplit_once("// ").map(|(_, c)| c.trim());
        // The last workgroup's combination of one loss, in `main`.
        if let Some(name) = trimmed.strip_prefix("// combine loss ") {
            return InternalError::in_loss(name, at, message);
        }
        if trimmed.starts_with("fn ") && !trimmed.starts_with("fn loss_") {
            break; // a helper, or `main` outside any loss's combination
        }
        if let Some(header) = trimmed.strip_prefix("// loss ") {
            // `NAME (file:line:col)`
            let (name, place) = header.split_once(" (").unwrap_or((header, ""));
            let place = place.trim_end_matches(')');
            let at = at.or_else(|| (!place.is_empty()).then(|| place.to_string()));
            return InternalError::in_loss(name, at, message);
        }
        if at.is_none() {
            at = comment.filter(|c| is_place(c)).map(str::to_string);
        }
    }
    InternalError::new(message)
}

/// Whether a comment is a `file:line:col` place.
fn is_place(c: &str) -> bool {
    let mut parts = c.rsplitn(3, ':');
    let (col, line) = (parts.next(), parts.next());
    parts
        .next()
        .is_some_and(|f| !f.is_empty() && !f.contains(' '))
        && [col, line]
            .iter()
            .all(|p| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
}

/// The module in another language.
pub fn translate(v: &Validated, wgsl: &str, target: Target) -> Result<Vec<u8>, CompileError> {
    let err = |e: &dyn std::fmt::Display| CompileError::Translate {
        target: format!("{target:?}"),
        reason: e.to_string(),
    };
    Ok(match target {
        Target::Wgsl => wgsl.as_bytes().to_vec(),
        Target::Spirv => {
            let words = naga::back::spv::write_vec(
                &v.module,
                &v.info,
                &naga::back::spv::Options::default(),
                None,
            )
            .map_err(|e| err(&e))?;
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        }
        Target::Msl => {
            let (s, _) = naga::back::msl::write_string(
                &v.module,
                &v.info,
                &naga::back::msl::Options::default(),
                &naga::back::msl::PipelineOptions::default(),
            )
            .map_err(|e| err(&e))?;
            s.into_bytes()
        }
        Target::Hlsl => {
            let mut s = String::new();
            let options = naga::back::hlsl::Options::default();
            let pipeline = naga::back::hlsl::PipelineOptions::default();
            let mut w = naga::back::hlsl::Writer::new(&mut s, &options, &pipeline);
            w.write(&v.module, &v.info, None).map_err(|e| err(&e))?;
            s.into_bytes()
        }
        Target::Glsl => {
            let mut s = String::new();
            let options = naga::back::glsl::Options {
                version: naga::back::glsl::Version::Embedded {
                    version: 310,
                    is_webgl: false,
                },
                ..Default::default()
            };
            let pipeline = naga::back::glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: "main".into(),
                multiview: None,
            };
            let mut w = naga::back::glsl::Writer::new(
                &mut s,
                &v.module,
                &v.info,
                &options,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .map_err(|e| err(&e))?;
            w.write().map_err(|e| err(&e))?;
            s.into_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_pieces_validate_on_their_own() {
        let prelude = include_str!("../../shaders/prelude.wgsl");
        let reduce = include_str!("../../shaders/reduce.wgsl");
        validate(prelude).unwrap();
        validate(&format!("{prelude}\n{reduce}")).unwrap();
    }

    #[test]
    fn a_broken_module_is_reported_with_its_text() {
        let e = validate("fn f() -> f32 { return undefined_thing; }")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("internal compiler error: naga cannot parse")
                && e.contains("undefined_thing")
                && e.contains("--- module ---"),
            "{e}"
        );
    }

    #[test]
    fn a_rejected_line_names_its_loss_and_source() {
        let wgsl = "fn lc_x() {}\n// loss wing (wing.loss:3:1)\n/// doc\nfn loss_0() {\n    let v1 = 1.0; // wing.loss:5:13\n    bad line\n}\n";
        let e = located(wgsl, Some(6), "m".into());
        assert_eq!(e.loss.as_deref(), Some("wing"));
        assert_eq!(e.at.as_deref(), Some("wing.loss:5:13"));
        let e = located(wgsl, Some(4), "m".into());
        assert_eq!(e.at.as_deref(), Some("wing.loss:3:1"));
        assert_eq!(located(wgsl, Some(1), "m".into()).loss, None);
        assert_eq!(located(wgsl, None, "m".into()).loss, None);
    }
}
