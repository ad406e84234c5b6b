//! The `lossc` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use lossc::diagnostics::Source;
use lossc::gpu::{Adapter, RowPlacement};
use lossc::ir::{FactoryTerm, Program};
use lossc::runtime::data::{Data, read_data};
use lossc::runtime::run::{Overrides, RunOptions, RunResult, parse_override};
use lossc::runtime::select::{describe_layout, kernel_terms, run_terms};
use lossc::runtime::{self, RunError};

#[derive(Parser)]
#[command(name = "lossc", version, about = "A compiler for training losses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check .loss files; print diagnostics.
    Check {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate losses on arrays and print the total, each loss and the logs.
    Run {
        #[command(flatten)]
        selection: Selection,
        /// The arrays: an .npz file or a JSON object.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Losses (of --losses) to which the anneal factor applies.
        #[arg(long, value_delimiter = ',')]
        annealed: Vec<String>,
        /// The anneal factor.
        #[arg(long, default_value_t = 1.0)]
        anneal: f32,
        /// The stage that prefixes the log names.
        #[arg(long, default_value = "train")]
        stage: String,
        /// Where to evaluate: the fused GPU kernel, or the CPU reference evaluator
        /// (default: the GPU when an adapter exists).
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
        /// How the GPU kernel places each loss's rows on threads (the numbers are the
        /// same; the speed is not): auto chooses per loss from the sizes and the adapter.
        #[arg(long, value_enum, default_value_t = Rows::Auto)]
        rows: Rows,
        /// Set a param: name=value or loss.name=value (JSON, or a bare string).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also compute the gradient of the total with respect to every input the data
        /// gives (on the CPU evaluator for now).
        #[arg(long)]
        grad: bool,
        /// Compute the gradient with respect to these inputs only (implies --grad).
        #[arg(long, value_delimiter = ',', value_name = "INPUTS")]
        wrt: Vec<String>,
    },
    /// Write one fused kernel and its manifest per factory (or per loss).
    Compile {
        #[command(flatten)]
        selection: Selection,
        /// The output folder.
        #[arg(short, long)]
        out: PathBuf,
        /// The output language.
        #[arg(long, value_enum, default_value_t = TargetArg::Wgsl)]
        target: TargetArg,
        /// Print how each loss was scheduled.
        #[arg(long)]
        explain: bool,
        /// Also write the backward kernel: the gradient of the total with respect to
        /// every input (docs/gradients.md), and its part of the manifest.
        #[arg(long)]
        grad: bool,
        /// The backward kernel's inputs, these only (implies --grad).
        #[arg(long, value_delimiter = ',', value_name = "INPUTS")]
        wrt: Vec<String>,
    },
    /// Print how each loss of a factory is scheduled in its fused kernel; with --data,
    /// also how a dispatch on that data is laid out and how many bytes it loads.
    Explain {
        #[command(flatten)]
        selection: Selection,
        /// Data (.npz or .json) to lay the dispatch out on.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Set a param: name=value or loss.name=value (JSON, or a bare string).
        #[arg(long = "set", value_name = "NAME=VALUE", requires = "data")]
        set: Vec<String>,
        /// How the rows are placed on threads, as for `run`.
        #[arg(long, value_enum, default_value_t = Rows::Auto)]
        rows: Rows,
        /// Also say how the gradient with respect to these inputs is gathered, and how
        /// the backward kernel is scheduled.
        #[arg(long, value_delimiter = ',', value_name = "INPUTS")]
        wrt: Vec<String>,
        /// Also say how the backward kernel (every input) is scheduled.
        #[arg(long)]
        grad: bool,
    },
    /// Print the IR as Graphviz DOT.
    Graph {
        /// The .loss files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only these losses.
        #[arg(long, value_delimiter = ',')]
        losses: Vec<String>,
        /// Print each loss's adjoint IR with respect to these of its inputs instead
        /// (every `remove_nans` stage on; docs/gradients.md).
        #[arg(long, value_delimiter = ',', value_name = "INPUTS")]
        wrt: Vec<String>,
    },
}

/// The .loss files, and which of their losses make a kernel: `--losses`, else
/// `--factory`, else (for `run`) the files' only factory or loss, (for `compile` and
/// `explain`) one kernel per factory and one per loss.
#[derive(Args)]
struct Selection {
    /// The .loss files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// These losses, in order (a factory formed on the fly).
    #[arg(long, value_delimiter = ',', conflicts_with = "factory")]
    losses: Vec<String>,
    /// A factory defined in the files.
    #[arg(long)]
    factory: Option<String>,
}

impl Selection {
    /// The kernels `compile` and `explain` write for this selection.
    fn kernels(&self, program: &Program) -> Result<Vec<(String, Vec<FactoryTerm>)>, RunError> {
        kernel_terms(program, &self.losses, self.factory.as_deref())
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Rows {
    /// Per loss, from its sizes and the adapter.
    Auto,
    /// Every row shared by the threads of a workgroup.
    Shared,
    /// One row per thread wherever a loss has more than one row.
    PerThread,
}

impl From<Backend> for runtime::Backend {
    fn from(b: Backend) -> runtime::Backend {
        match b {
            Backend::Auto => runtime::Backend::Auto,
            Backend::Gpu => runtime::Backend::Gpu,
            Backend::Cpu => runtime::Backend::Cpu,
        }
    }
}

impl From<Rows> for RowPlacement {
    fn from(r: Rows) -> RowPlacement {
        match r {
            Rows::Auto => RowPlacement::Auto,
            Rows::Shared => RowPlacement::Shared,
            Rows::PerThread => RowPlacement::PerThread,
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Backend {
    /// The GPU if an adapter exists, else the CPU.
    Auto,
    /// The fused kernel through wgpu.
    Gpu,
    /// The CPU reference evaluator.
    Cpu,
}

fn main() -> ExitCode {
    // Mesa's device-select layer prints "error: XDG_RUNTIME_DIR is invalid" on headless
    // machines, which reads like a lossc error; it chooses nothing lossc needs.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files } => {
            let Some(program) = load(&files) else {
                return ExitCode::FAILURE;
            };
            eprintln!(
                "ok: {} loss(es), {} factory(ies)",
                program.losses.len(),
                program.factories.len()
            );
            ExitCode::SUCCESS
        }
        Command::Graph { files, losses, wrt } => {
            let Some(program) = load(&files) else {
                return ExitCode::FAILURE;
            };
            let chosen: Vec<_> = program
                .losses
                .iter()
                .filter(|l| losses.is_empty() || losses.contains(&l.name))
                .collect();
            if wrt.is_empty() {
                print_out(&lossc::ir::dot::to_dot(&chosen));
                return ExitCode::SUCCESS;
            }
            exit_with(adjoint_graphs(&chosen, &wrt).map(|dot| print_out(&dot)))
        }
        Command::Compile {
            selection,
            out,
            target,
            explain,
            grad,
            wrt,
        } => {
            let Some(program) = load(&selection.files) else {
                return ExitCode::FAILURE;
            };
            let wrt = wrt_of(grad, wrt);
            exit_with(compile(&program, &out, &selection, target, explain, &wrt))
        }
        Command::Explain {
            selection,
            data,
            set,
            rows,
            wrt,
            grad,
        } => {
            let Some(program) = load(&selection.files) else {
                return ExitCode::FAILURE;
            };
            let backward = wrt_of(grad, wrt.clone());
            let result = (|| -> Result<(), RunError> {
                let ks = selection.kernels(&program)?;
                let on = match &data {
                    Some(path) => Some(data_and_overrides(Some(path), &set)?),
                    None => None,
                };
                for (name, terms) in ks {
                    let k = lossc::codegen::compile(&program, &name, &terms)?;
                    print_out(&lossc::codegen::explain(&program, &k));
                    if let (Some((data, overrides)), Some(path)) = (&on, &data) {
                        print_out(&layout(&program, &k, data, overrides, path, rows.into()));
                    }
                    if !wrt.is_empty() {
                        print_out(&explain_gradients(&program, &terms, &wrt)?);
                    }
                    if backward != runtime::grad::Wrt::Nothing {
                        runtime::grad::check_wrt(&program, &terms, &backward)?;
                        let b =
                            runtime::grad::compile_backward(&program, &name, &terms, &backward)?;
                        print_out(&b.explain());
                    }
                }
                Ok(())
            })();
            exit_with(result)
        }
        Command::Run {
            selection,
            data,
            annealed,
            anneal,
            stage,
            backend,
            rows,
            set,
            json,
            grad,
            wrt,
        } => {
            let Some(program) = load(&selection.files) else {
                return ExitCode::FAILURE;
            };
            let opts = RunOptions {
                stage,
                anneal,
                rows: rows.into(),
                backend: backend.into(),
                wrt: wrt_of(grad, wrt),
            };
            let result = run_terms(
                &program,
                &selection.losses,
                &annealed,
                selection.factory.as_deref(),
            )
            .and_then(|(name, terms)| {
                let (data, overrides) = data_and_overrides(data.as_deref(), &set)?;
                runtime::run(&program, &name, &terms, &data, &overrides, &opts)
            })
            .map(|result| print_result(&result, json));
            exit_with(result)
        }
    }
}

/// A loss's adjoint IR with respect to those of `wrt` it reads, every mask on (`None`
/// when it reads none).
fn adjoint_wrt(
    l: &lossc::ir::LossIr,
    wrt: &[String],
) -> Result<Option<lossc::ad::Adjoint>, RunError> {
    let ids: Vec<lossc::ir::InputId> = l
        .inputs
        .iter_enumerated()
        .filter(|(_, i)| wrt.contains(&i.name))
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let on: lossc::ir::TiVec<lossc::ir::MaskId, bool> = l.masks.iter().map(|_| true).collect();
    Ok(Some(lossc::ad::adjoint(l, &ids, &on)?))
}

/// How each loss of `terms` gathers its gradient with respect to those of `wrt` it
/// reads (every mask on).
fn explain_gradients(
    program: &lossc::ir::Program,
    terms: &[lossc::ir::FactoryTerm],
    wrt: &[String],
) -> Result<String, RunError> {
    let mut out = String::from("gradients (the CPU evaluator's adjoint IR; docs/gradients.md):\n");
    for t in terms {
        let Some(l) = program.loss(&t.loss) else {
            continue;
        };
        if let Some(adj) = adjoint_wrt(l, wrt)? {
            out.push_str(&lossc::ad::explain(l, &adj));
        }
    }
    Ok(out)
}

/// The DOT of each loss's adjoint IR with respect to those of `wrt` it reads (with
/// every mask on); an error when no loss reads one of them.
fn adjoint_graphs(losses: &[&lossc::ir::LossIr], wrt: &[String]) -> Result<String, RunError> {
    let mut adjoints = Vec::new();
    for l in losses {
        if let Some(adj) = adjoint_wrt(l, wrt)? {
            adjoints.push(adj.ir);
        }
    }
    if adjoints.is_empty() {
        return Err(RunError::Usage(format!(
            "--wrt: no loss of the selection reads {}",
            wrt.join(", ")
        )));
    }
    Ok(lossc::ir::dot::to_dot(&adjoints.iter().collect::<Vec<_>>()))
}

/// Prints a run's warnings and notes on stderr, its result on stdout; writes the kernel
/// it ran where `LOSSC_DUMP_KERNEL` says (for debugging: the specialised kernel as run).
fn print_result(result: &RunResult, json: bool) {
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    for n in &result.notes {
        eprintln!("note: {n}");
    }
    if let (Some(path), Some(wgsl)) = (std::env::var_os("LOSSC_DUMP_KERNEL"), &result.kernel)
        && let Err(e) = std::fs::write(&path, wgsl)
    {
        eprintln!(
            "warning: LOSSC_DUMP_KERNEL: cannot write {}: {e}",
            path.display()
        );
    }
    let mut text = String::new();
    if json {
        text = serde_json::to_string(result).expect("a run result serialises") + "\n";
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(text, "total {}", fmt(result.total));
        for (name, r) in &result.losses {
            let _ = writeln!(
                text,
                "  {name:<36} loss {:<14} weight {:<12} weighted {}",
                fmt(r.loss),
                fmt(r.weight),
                fmt(r.weighted)
            );
        }
        let _ = writeln!(text, "logs:");
        for (name, v) in &result.logs {
            let _ = writeln!(text, "  {name} = {}", fmt(*v));
        }
        if !result.grads.is_empty() {
            let _ = writeln!(text, "gradients of the total:");
        }
        for (name, g) in &result.grads {
            let shape: Vec<String> = g.shape.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(
                text,
                "  {name:<36} shape [{}]  norm {}  max |g| {}",
                shape.join(", "),
                fmt(g.norm() as f32),
                fmt(g.max_abs())
            );
        }
        let _ = writeln!(
            text,
            "backend {} ({} dispatches)",
            result.backend, result.dispatches
        );
    }
    print_out(&text);
}

/// The exit code of a command, printing its error.
fn exit_with(result: Result<(), RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The arrays of `--data` (none without it) and the param overrides of `--set`, as `run`
/// and `explain` read them.
fn data_and_overrides(path: Option<&Path>, set: &[String]) -> Result<(Data, Overrides), RunError> {
    let data = match path {
        Some(p) => read_data(p)?,
        None => Data::new(),
    };
    let overrides = set
        .iter()
        .map(|s| parse_override(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((data, overrides))
}

/// How a dispatch of kernel `k` on `data` is laid out, on this machine's adapter (or, with
/// none, a GPU's), as `lossc explain --data` prints it.
fn layout(
    program: &Program,
    k: &lossc::codegen::Kernel,
    data: &Data,
    overrides: &Overrides,
    path: &Path,
    rows: RowPlacement,
) -> String {
    let (adapter, which) = match lossc::gpu::gpu() {
        Ok(g) => (Adapter::of(g), g.describe()),
        Err(_) => (
            Adapter::a_gpu(),
            "none found, so as a GPU would".to_string(),
        ),
    };
    let mut out = format!(
        "layout on {} (adapter: {which}; --rows {}):\n",
        path.display(),
        rows.name()
    );
    match describe_layout(program, k, data, overrides, &adapter, rows) {
        Ok(text) => out.push_str(&text),
        Err(e) => out.push_str(&format!("  not laid out: {e}\n")),
    }
    out
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    /// WGSL, as generated and validated.
    Wgsl,
    /// SPIR-V binary (naga).
    Spirv,
    /// Metal Shading Language (naga).
    Msl,
    /// HLSL (naga).
    Hlsl,
    /// GLSL ES 3.10 compute (naga).
    Glsl,
}

/// The inputs `--grad` and `--wrt` ask gradients for.
fn wrt_of(grad: bool, wrt: Vec<String>) -> runtime::grad::Wrt {
    if !wrt.is_empty() {
        runtime::grad::Wrt::Inputs(wrt)
    } else if grad {
        runtime::grad::Wrt::EveryInput
    } else {
        runtime::grad::Wrt::Nothing
    }
}

fn compile(
    program: &Program,
    out: &Path,
    selection: &Selection,
    target: TargetArg,
    explain: bool,
    wrt: &runtime::grad::Wrt,
) -> Result<(), RunError> {
    use lossc::codegen::validate::Target;
    let target = match target {
        TargetArg::Wgsl => Target::Wgsl,
        TargetArg::Spirv => Target::Spirv,
        TargetArg::Msl => Target::Msl,
        TargetArg::Hlsl => Target::Hlsl,
        TargetArg::Glsl => Target::Glsl,
    };
    let write_error = |path: &Path, e: std::io::Error| RunError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(|e| write_error(out, e))?;
    for (name, terms) in selection.kernels(program)? {
        let k = lossc::codegen::compile(program, &name, &terms)?;
        let code = lossc::codegen::validate::translate(&k.validated, &k.wgsl, target)?;
        let path = out.join(format!("{name}.{}", target.extension()));
        std::fs::write(&path, code).map_err(|e| write_error(&path, e))?;
        let mut manifest = lossc::codegen::manifest::manifest(program, &k);
        if *wrt != runtime::grad::Wrt::Nothing {
            runtime::grad::check_wrt(program, &terms, wrt)?;
            let b = runtime::grad::compile_backward(program, &name, &terms, wrt)?;
            let code =
                lossc::codegen::validate::translate(&b.kernel.validated, &b.kernel.wgsl, target)?;
            let bpath = out.join(format!("{name}.backward.{}", target.extension()));
            std::fs::write(&bpath, code).map_err(|e| write_error(&bpath, e))?;
            manifest["backward"] = b.manifest();
            eprintln!("wrote {}", bpath.display());
        }
        let mpath = out.join(format!("{name}.manifest.json"));
        let json = serde_json::to_string_pretty(&manifest).expect("a manifest serialises") + "\n";
        std::fs::write(&mpath, json).map_err(|e| write_error(&mpath, e))?;
        eprintln!("wrote {} and {}", path.display(), mpath.display());
        if explain {
            eprint!("{}", lossc::codegen::explain(program, &k));
        }
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`lossc run ... | head`) is not an error.
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn fmt(v: f32) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// Reads, parses and checks the files; prints diagnostics; `None` on any error.
fn load(files: &[PathBuf]) -> Option<Program> {
    let mut sources = Vec::new();
    let mut read_errors = false;
    for f in files {
        match Source::read(f) {
            Ok(s) => sources.push(s),
            Err(e) => {
                eprint!("{}", e.render());
                read_errors = true;
            }
        }
    }
    let checked = lossc::sema::check(&sources);
    eprint!("{}", checked.render(&sources));
    if checked.has_errors() || read_errors {
        let n = checked
            .diagnostics
            .iter()
            .filter(|(_, d)| d.is_error)
            .count();
        if n > 0 {
            eprintln!("error: {n} error{} found", if n == 1 { "" } else { "s" });
        }
        return None;
    }
    Some(checked.program)
}
