//! The IR as Graphviz DOT (`lossc graph`): one cluster per loss, a node per operation
//! labelled with what it computes and its free indices, and the stages as boxes.

use std::fmt::{self, Write};

use petgraph::stable_graph::NodeIndex;

use crate::ir::{LossIr, Op, ParamValue, Tensor};

/// A short label for a node's operation.
pub fn op_label(ir: &LossIr, op: &Op) -> String {
    match op {
        Op::Const(bits) => format!("{}", f32::from_bits(*bits)),
        Op::BoolConst(b) => b.to_string(),
        Op::Read(t, idx) => {
            let name = match t {
                Tensor::Input(i) => &ir.inputs[*i].name,
                Tensor::Param(p) => &ir.params[*p].name,
            };
            if idx.is_empty() {
                name.clone()
            } else {
                format!(
                    "{name}[{}]",
                    idx.iter()
                        .map(|e| ir.show_index(e))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        Op::IndexValue(e) => ir.show_index(e),
        Op::EnumIs(p, v) => format!("{} == \"{v}\"", ir.params[*p].name),
        Op::Unary(f) => format!("{f:?}").to_lowercase(),
        Op::Binary(f) => format!("{f:?}").to_lowercase(),
        Op::Select => "select".into(),
        Op::Clamp => "clamp".into(),
        Op::At(map) => format!(
            "at {}",
            map.iter()
                .map(|(v, e)| format!("{} := {}", ir.indices[*v].name, ir.show_index(e)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Op::Reduce(f, over) => format!(
            "{}({})",
            format!("{f:?}").to_lowercase(),
            over.iter()
                .map(|v| ir.indices[*v].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The range of every index variable, as `name ∈ [lo, hi]`.
pub fn ranges(ir: &LossIr) -> Vec<String> {
    let names = ir.dim_names();
    ir.indices
        .iter()
        .map(|v| match &v.range {
            Some((lo, hi)) => format!(
                "{} in {}..={}",
                v.name,
                lo.display(&names),
                hi.display(&names)
            ),
            None => format!("{} in ?", v.name),
        })
        .collect()
}

/// DOT for the given losses.
pub fn to_dot(losses: &[&LossIr]) -> String {
    let mut s = String::new();
    write_dot(&mut s, losses).expect("writing to a String cannot fail");
    s
}

fn write_dot(s: &mut String, losses: &[&LossIr]) -> fmt::Result {
    s.push_str("digraph lossc {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n");
    for (li, ir) in losses.iter().enumerate() {
        writeln!(
            s,
            "  subgraph cluster_{li} {{\n    label={:?};",
            format!("loss {} ({})", ir.name, ranges(ir).join(", "))
        )?;
        for n in ir.graph.node_indices() {
            let node = &ir.graph[n];
            let free: Vec<&str> = node
                .free
                .iter()
                .map(|v| ir.indices[*v].name.as_str())
                .collect();
            let label = if free.is_empty() {
                op_label(ir, &node.op)
            } else {
                format!("{}\\n({})", op_label(ir, &node.op), free.join(", "))
            };
            writeln!(
                s,
                "    l{li}n{} [label=\"{}\"];",
                n.index(),
                label.replace('"', "\\\"")
            )?;
        }
        for e in ir.graph.edge_indices() {
            if let Some((a, b)) = ir.graph.edge_endpoints(e) {
                writeln!(
                    s,
                    "    l{li}n{} -> l{li}n{} [label=\"{}\"];",
                    a.index(),
                    b.index(),
                    ir.graph[e]
                )?;
            }
        }
        let stage = |s: &mut String, name: String, n: NodeIndex| {
            writeln!(
                s,
                "    l{li}_{0} [shape=box, label=\"{0}\"];\n    l{li}n{1} -> l{li}_{0};",
                name,
                n.index()
            )
        };
        stage(s, "compute".into(), ir.compute)?;
        for (i, m) in ir.masks.iter_enumerated() {
            stage(
                s,
                format!("remove_nans_{}_{i}", format!("{:?}", m.mode).to_lowercase()),
                m.cond,
            )?;
        }
        if let Some(r) = ir.rectify {
            stage(s, "rectify".into(), r)?;
        }
        if let Some(e) = ir.empty {
            stage(s, "empty".into(), e)?;
        }
        stage(s, "weight".into(), ir.weight)?;
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    Ok(())
}

/// A param value as written in source.
pub fn show_value(ir: &LossIr, v: &ParamValue) -> String {
    let names = ir.dim_names();
    match v {
        ParamValue::Scalar(x) => format!("{x}"),
        ParamValue::List(xs) => format!(
            "[{}]",
            xs.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ParamValue::Range(lo, hi) => format!("{}..{}", lo.display(&names), hi.display(&names)),
        ParamValue::Str(s) => format!("\"{s}\""),
    }
}
