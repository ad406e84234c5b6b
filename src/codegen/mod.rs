//! The WGSL back end: one fused compute kernel per factory ([`emit`]), scheduled per loss
//! ([`schedule`]), written through a structured writer ([`writer`]) in the spellings of
//! [`wgsl`], with its parameter block ([`layout`]) and its bindings ([`bindings`]); every
//! module is validated by naga ([`validate`]) before it is written or run, and described
//! by a manifest ([`manifest`]). The analyses the emitter and the host's plan share are in
//! [`analysis`]. [`unfused`] is a second generator, one kernel per IR node, the baseline
//! fusion is measured against. Codegen knows no device: it writes text and plain data.

pub mod analysis;
pub mod bindings;
pub mod emit;
pub mod layout;
pub mod manifest;
pub mod schedule;
pub mod unfused;
pub mod validate;
pub mod wgsl;
pub mod writer;

pub use analysis::{ReadRecord, input_loads};

use crate::ice::InternalError;
use crate::ir::{FactoryTerm, LossIr, Program};
use layout::Layout;
use schedule::LossSchedule;

/// Why a kernel could not be compiled or written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CompileError {
    /// A term names a loss the program does not define.
    #[error("no loss named `{0}`")]
    NoSuchLoss(String),
    /// naga could not write the validated module in another language.
    #[error("naga could not write {target}: {reason}")]
    Translate { target: String, reason: String },
    /// The loss nests reductions and branches deeper than a GPU kernel can.
    #[error(
        "loss `{loss}`{}: reductions and branches nested too deep for a GPU kernel (a kernel's code nests at most {limit} blocks); compute inner reductions in `let`s that depend on fewer indices, or use --backend cpu",
        at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default()
    )]
    TooDeep {
        loss: String,
        at: Option<String>,
        limit: usize,
    },
    /// A bug in lossc: the emitter met a broken invariant, or naga rejects its WGSL.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

/// A read the kernel checks as it runs: one axis of a read through a gather
/// ([`crate::ir::sites::CheckedRead`]), in a loss of the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The loss's position in the kernel.
    pub loss: usize,
    /// The loss's name.
    pub loss_name: String,
    /// The input or param read, by position in the loss.
    pub tensor: crate::ir::Tensor,
    /// Its name.
    pub tensor_name: String,
    /// The axis checked.
    pub axis: usize,
    /// The read's subscripts in source form.
    pub subscript: String,
    /// Where the read is.
    pub at: crate::ir::Location,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss `{}`: axis {} of `{}[{}]` at {}",
            self.loss_name, self.axis, self.tensor_name, self.subscript, self.at
        )
    }
}

/// A compiled, validated kernel for a factory (or a single loss).
pub struct Kernel {
    /// Its name (the factory's, or the loss's).
    pub name: String,
    /// The WGSL text.
    pub wgsl: String,
    /// Its parameter slots.
    pub layout: Layout,
    /// The reads checked as they run (subscripts through gathers), by the number the
    /// error word reports (1-based): the last read of the last loss first, so that the
    /// highest number failed is the first failed read in the factory's order.
    pub sites: Vec<Site>,
    /// The losses, in factory order, with whether each is annealed.
    pub terms: Vec<FactoryTerm>,
    /// Each loss's schedule.
    pub schedules: Vec<LossSchedule>,
    /// Every read of an input the generic kernel makes, as written.
    pub reads: Vec<ReadRecord>,
    /// naga's validated module (for the other targets).
    pub validated: validate::Validated,
    /// For a backward kernel, what each loss reads from the forward kernel's results
    /// ([`emit::generate_backward`]); `None` for a forward one.
    pub backward: Option<Vec<SavedReads>>,
}

/// What a backward kernel's loss reads from its forward kernel's results (`lc_saved`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedReads {
    /// Where its forward loss's weight is (`3t + 1` for term `t`): each gradient element
    /// is stored times that weight and the loss's anneal factor, so that it is the
    /// loss's term of the gradient of the factory's total.
    pub weight_at: usize,
    /// Where its forward loss's count of counted elements is, for a gradient of a mean.
    pub count_at: Option<usize>,
}

impl Kernel {
    /// The kernel's WGSL specialised to one problem: every slot of the parameter block
    /// (sizes, offsets, work counts) written as a literal, so that the shader compiler
    /// folds the index arithmetic, but the anneal factors, which a host changes between
    /// runs. Same layout, same bindings; validated by naga.
    pub fn specialise(&self, losses: &[&LossIr], values: &[i32]) -> Result<String, InternalError> {
        let pairs: Vec<(&LossIr, &LossSchedule)> =
            losses.iter().copied().zip(self.schedules.iter()).collect();
        let specialising = emit::Specialising {
            values,
            layout: &self.layout,
        };
        let generated = self.generate(&pairs, Some(specialising))?;
        // The emitter keeps the generic kernel's slots and sites, and reports (with the
        // loss and the place) any it meets that the generic kernel lacks.
        debug_assert_eq!(generated.layout.slots, self.layout.slots);
        debug_assert_eq!(generated.sites, self.sites);
        validate::validate(&generated.wgsl)?;
        Ok(generated.wgsl)
    }
}

impl Kernel {
    /// The reads of an input that the kernel specialised to `values` (a parameter block
    /// for `losses`) makes: without the branches and tables it does not run.
    pub fn reads_specialised(
        &self,
        losses: &[&LossIr],
        values: &[i32],
    ) -> Result<Vec<ReadRecord>, InternalError> {
        let pairs: Vec<(&LossIr, &LossSchedule)> =
            losses.iter().copied().zip(self.schedules.iter()).collect();
        let specialising = emit::Specialising {
            values,
            layout: &self.layout,
        };
        Ok(self.generate(&pairs, Some(specialising))?.reads)
    }

    /// Writes this kernel again (forward or backward), for `specialising`.
    fn generate(
        &self,
        pairs: &[(&LossIr, &LossSchedule)],
        specialising: Option<emit::Specialising>,
    ) -> Result<emit::Generated, InternalError> {
        match &self.backward {
            Some(saved) => emit::generate_backward(&self.name, pairs, saved, specialising),
            None => emit::generate(&self.name, pairs, specialising),
        }
    }
}

/// Schedules, generates and validates the backward kernel of gradient losses
/// ([`crate::ir::COUNT_PARAM`]): `saved[i]` says where loss `i` reads its forward loss's
/// weight and count in the forward kernel's results.
pub fn compile_backward(
    name: &str,
    losses: &[&LossIr],
    saved: &[SavedReads],
) -> Result<Kernel, CompileError> {
    let terms = losses
        .iter()
        .map(|l| FactoryTerm::plain(l.name.clone()))
        .collect();
    build(name, losses, terms, Some(saved.to_vec()))
}

/// Schedules, generates and validates the fused kernel of the given terms.
pub fn compile(
    program: &Program,
    name: &str,
    terms: &[FactoryTerm],
) -> Result<Kernel, CompileError> {
    let losses: Vec<&LossIr> = terms
        .iter()
        .map(|t| {
            program
                .loss(&t.loss)
                .ok_or_else(|| CompileError::NoSuchLoss(t.loss.clone()))
        })
        .collect::<Result<_, _>>()?;
    build(name, &losses, terms.to_vec(), None)
}

/// Schedules, generates (forward, or backward with each loss's count position) and
/// validates a kernel.
fn build(
    name: &str,
    losses: &[&LossIr],
    terms: Vec<FactoryTerm>,
    backward: Option<Vec<SavedReads>>,
) -> Result<Kernel, CompileError> {
    let schedules: Vec<LossSchedule> = losses.iter().map(|l| schedule::schedule(l)).collect();
    let pairs: Vec<(&LossIr, &LossSchedule)> =
        losses.iter().copied().zip(schedules.iter()).collect();
    let generated = match &backward {
        Some(saved) => emit::generate_backward(name, &pairs, saved, None)?,
        None => emit::generate(name, &pairs, None)?,
    };
    if let Some(deep) = generated.too_deep {
        return Err(CompileError::TooDeep {
            loss: deep.loss,
            at: deep.at,
            limit: emit::MAX_BLOCK_DEPTH,
        });
    }
    let validated = validate::validate(&generated.wgsl)?;
    Ok(Kernel {
        name: name.to_string(),
        wgsl: generated.wgsl,
        layout: generated.layout,
        sites: generated.sites,
        terms,
        schedules,
        reads: generated.reads,
        validated,
        backward,
    })
}

/// `lossc explain`: how each loss of a kernel is scheduled, and how often each input is
/// read (the rule is once per dispatch).
pub fn explain(program: &Program, k: &Kernel) -> String {
    let mut out = format!(
        "kernel {}: {} loss(es), one dispatch\n",
        k.name,
        k.terms.len()
    );
    for (li, (t, s)) in k.terms.iter().zip(&k.schedules).enumerate() {
        if let Some(ir) = program.loss(&t.loss) {
            out.push_str(&schedule::explain(ir, s));
            out.push_str(&analysis::reads(ir, &k.reads, li));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Source;
    use crate::ir::FactoryTerm;

    fn examples() -> crate::ir::Program {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lightning_pose");
        let mut sources: Vec<Source> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                Source::new(
                    p.file_name().unwrap().to_string_lossy(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        let checked = crate::sema::check(&sources);
        assert!(!checked.has_errors());
        checked.program
    }

    #[test]
    fn every_example_compiles_to_valid_wgsl() {
        let program = examples();
        for l in &program.losses {
            let term = FactoryTerm::plain(l.name.clone());
            if let Err(e) = super::compile(&program, &l.name, &[term]) {
                let e = e.to_string();
                panic!("{}: {}", l.name, &e[..e.len().min(4000)]);
            }
        }
    }
}
