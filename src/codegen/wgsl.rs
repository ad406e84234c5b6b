//! WGSL spellings shared by lossc's two code generators, the fused emitter
//! ([`super::emit`]) and the unfused baseline ([`super::unfused`]): the element-wise
//! operations, literals, the parameter block's slots, and the shader sources both include.

use super::layout::SlotId;
use crate::ir::{BinaryFn, UnaryFn};

/// The hand-written helpers every generated kernel splices in: `min`, `max`, `clamp`,
/// `pow` and `isnan` pinned to the CPU evaluator's meaning, special values by their bits,
/// and the workgroup arrays the reductions use.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");
/// The fused kernel's workgroup reductions, in a fixed order (bit-identical run to run).
pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");

/// The library of special functions (`lc_sin`, `lc_lgamma`, ...): WGSL has none of
/// erf, lgamma or digamma, and its own sin, cos, tanh and atan are only accurate to an
/// absolute 2^-11 or so, short of the relative 1e-5 lossc promises. A kernel carries only
/// the functions it calls ([`link`]).
pub const FUNCTIONS: &str = include_str!("../../shaders/functions.wgsl");

/// `module` with the library functions it calls (and the ones those call) appended, in
/// the library's order. WGSL lets a module use a function declared after the use, so a
/// kernel that calls none is left as it was.
pub fn link(mut module: String) -> String {
    let defs = library();
    let mut wanted = vec![false; defs.len()];
    let mut changed = true;
    while changed {
        changed = false;
        for (i, (name, _)) in defs.iter().enumerate() {
            if wanted[i] {
                continue;
            }
            let call = format!("{name}(");
            let used = module.contains(&call)
                || defs
                    .iter()
                    .zip(&wanted)
                    .any(|((_, text), w)| *w && text.contains(&call));
            if used {
                wanted[i] = true;
                changed = true;
            }
        }
    }
    if wanted.iter().any(|w| *w) {
        module.push('\n');
        module.push_str(
            "// lossc's function library (shaders/functions.wgsl), the functions used.\n",
        );
        for ((_, text), w) in defs.iter().zip(&wanted) {
            if *w {
                module.push('\n');
                module.push_str(text);
            }
        }
    }
    module
}

/// The library split into its functions: `(name, text)`, each text a function and the
/// comment above it. A function starts at a line `fn lc_...` and its comment at the
/// first `//` line after the previous function's closing `}`. Split once per process.
fn library() -> &'static [(&'static str, &'static str)] {
    static SPLIT: std::sync::OnceLock<Vec<(&'static str, &'static str)>> =
        std::sync::OnceLock::new();
    SPLIT.get_or_init(split_library)
}

fn split_library() -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut offset = 0;
    let mut name = "";
    for line in FUNCTIONS.split_inclusive('\n') {
        let end = offset + line.len();
        if start.is_none()
            && (line.starts_with("//") || line.starts_with("fn ") || line.starts_with("const "))
        {
            start = Some(offset);
        }
        if let Some(rest) = line.strip_prefix("fn ") {
            name = rest.split('(').next().unwrap_or("");
        }
        if line.starts_with('}')
            && let Some(s) = start.take()
        {
            out.push((name, &FUNCTIONS[s..end]));
        }
        offset = end;
    }
    out
}

/// `text` (a doc comment, a file name) made fit for a WGSL line comment: each of WGSL's
/// line breaks (U+000A to U+000D, U+0085, U+2028, U+2029) would end the comment and turn
/// the rest of the text into code, so each becomes a space.
pub fn comment_text(text: &str) -> String {
    text.replace(
        [
            '\n', '\u{b}', '\u{c}', '\r', '\u{85}', '\u{2028}', '\u{2029}',
        ],
        " ",
    )
}

/// WGSL for an element-wise function of one operand, `a` a WGSL expression (a `bool` for
/// `!`; `isnan` gives one).
pub fn unary_wgsl(f: UnaryFn, a: &str) -> String {
    match f {
        UnaryFn::Neg => format!("(-{a})"),
        UnaryFn::Not => format!("(!{a})"),
        // Subnormal operands and results included (see the prelude).
        UnaryFn::Exp => format!("lc_exp({a})"),
        UnaryFn::Log => format!("lc_log({a})"),
        UnaryFn::Sqrt => format!("sqrt({a})"),
        UnaryFn::Abs => format!("abs({a})"),
        UnaryFn::Relu => format!("lc_relu({a})"),
        UnaryFn::IsNan => format!("lc_isnan({a})"),
        // The library's (shaders/functions.wgsl), linked in where called.
        UnaryFn::Log1p => format!("lc_log1p({a})"),
        UnaryFn::Expm1 => format!("lc_expm1({a})"),
        UnaryFn::Softplus => format!("lc_softplus({a})"),
        UnaryFn::Sigmoid => format!("lc_sigmoid({a})"),
        UnaryFn::LogSigmoid => format!("lc_logsigmoid({a})"),
        UnaryFn::Tanh => format!("lc_tanh({a})"),
        UnaryFn::Sin => format!("lc_sin({a})"),
        UnaryFn::Cos => format!("lc_cos({a})"),
        UnaryFn::Atan => format!("lc_atan({a})"),
        UnaryFn::Erf => format!("lc_erf({a})"),
        UnaryFn::Lgamma => format!("lc_lgamma({a})"),
        UnaryFn::Digamma => format!("lc_digamma({a})"),
        UnaryFn::Trigamma => format!("lc_trigamma({a})"),
        UnaryFn::Sign => format!("lc_sign({a})"),
    }
}

/// WGSL for an element-wise function of two operands (`bool`s for `&&` and `||`;
/// comparisons give one).
pub fn binary_wgsl(f: BinaryFn, a: &str, b: &str) -> String {
    let infix = |op: &str| format!("({a} {op} {b})");
    match f {
        BinaryFn::Add => infix("+"),
        BinaryFn::Sub => infix("-"),
        BinaryFn::Mul => infix("*"),
        BinaryFn::Div => infix("/"),
        BinaryFn::Pow => format!("lc_pow({a}, {b})"),
        BinaryFn::Min => format!("lc_min({a}, {b})"),
        BinaryFn::Max => format!("lc_max({a}, {b})"),
        BinaryFn::Eq => infix("=="),
        // SPIR-V back ends may emit an ordered `!=`, false when either side is NaN; IEEE
        // (and the CPU evaluator) say true.
        BinaryFn::Ne => format!("(!({a} == {b}))"),
        BinaryFn::Lt => infix("<"),
        BinaryFn::Le => infix("<="),
        BinaryFn::Gt => infix(">"),
        BinaryFn::Ge => infix(">="),
        BinaryFn::And => infix("&&"),
        BinaryFn::Or => infix("||"),
        BinaryFn::Atan2 => format!("lc_atan2({a}, {b})"),
        BinaryFn::Xlogy => format!("lc_xlogy({a}, {b})"),
    }
}

/// An f32 literal in WGSL (NaN and infinities through `lc_bits`, at run time: WGSL's
/// constant evaluation rejects them).
pub fn f32_lit(v: f32) -> String {
    if v.is_finite() {
        let s = format!("{v:?}");
        if s.contains(['.', 'e']) {
            format!("{s}f")
        } else {
            format!("{s}.0f")
        }
    } else {
        format!("lc_bits({:#010x}u)", v.to_bits())
    }
}

/// The statement every entry point starts with: it sets the prelude's `lc_zero_bits` to 0
/// from the length of the storage array `array`, which the shader compiler cannot know.
pub fn set_zero_bits(array: &str) -> String {
    format!("lc_zero_bits = select(0u, 1u, arrayLength(&{array}) == 0u);")
}

/// The f32 expression `x`, hidden from the shader compiler's algebra (the prelude's
/// `lc_opaque`): no rewrite that assumes no NaN, infinity or signed zero applies to it.
pub fn opaque(x: &str) -> String {
    format!("lc_opaque({x})")
}

/// The constant `v`, hidden from the shader compiler's algebra (non-finite values already
/// are, through `lc_bits`).
pub fn opaque_lit(v: f32) -> String {
    if v.is_finite() {
        opaque(&f32_lit(v))
    } else {
        f32_lit(v)
    }
}

/// The uniform block's slot `slot`.
pub fn meta_ref(slot: SlotId) -> String {
    let i = slot.index();
    format!("lc_meta.m[{}].{}", i / 4, ["x", "y", "z", "w"][i % 4])
}

/// Slot `slot`: read from the uniform block, or, in a kernel specialised to one problem's
/// sizes, its value in the filled block `values` as a literal (so that the compiler
/// folds the arithmetic on it).
pub fn meta_value(slot: SlotId, values: Option<&[i32]>) -> String {
    match values.and_then(|v| v.get(slot.index())) {
        Some(v) if *v < 0 => format!("({v})"),
        Some(v) => format!("{v}"),
        None => meta_ref(slot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_f32_and_non_finite_ones_go_through_bits() {
        assert_eq!(f32_lit(1.0), "1.0f");
        assert_eq!(f32_lit(0.5), "0.5f");
        assert_eq!(f32_lit(1e-10), "1e-10f");
        assert_eq!(f32_lit(f32::INFINITY), "lc_bits(0x7f800000u)");
        assert_eq!(opaque_lit(0.0), "lc_opaque(0.0f)");
        assert_eq!(opaque_lit(f32::NAN), "lc_bits(0x7fc00000u)");
    }

    #[test]
    fn slots_read_the_uniform_block_unless_specialised() {
        let slot = SlotId::new;
        assert_eq!(meta_value(slot(5), None), "lc_meta.m[1].y");
        assert_eq!(meta_value(slot(1), Some(&[0, -3])), "(-3)");
        assert_eq!(meta_value(slot(0), Some(&[7])), "7");
    }
}
