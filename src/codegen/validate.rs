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

/// Parses and validates WGSL; the error names the problem and carries the module text.
pub fn validate(wgsl: &str) -> Result<Validated, InternalError> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| {
        InternalError::new(format!(
            "naga cannot parse the generated WGSL:\n{}\n--- module ---\n{wgsl}",
            e.emit_to_string(wgsl)
        ))
    })?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(&module)
        .map_err(|e| {
            InternalError::new(format!(
                "naga rejects the generated WGSL:\n{}\n--- module ---\n{wgsl}",
                e.emit_to_string(wgsl)
            ))
        })?;
    Ok(Validated { module, info })
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
}
