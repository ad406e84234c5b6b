//! Common-subexpression elimination: two nodes with the same operation, type and
//! operands become one. Plain `let`s are expanded at each use, so this is what makes a
//! `let` used twice computed once.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;

use crate::ir::{LossIr, Op, Ty, operands};

/// Merges structurally equal nodes in place.
pub fn eliminate_common_subexpressions(ir: &mut LossIr) {
    let order = toposort(&ir.graph, None).unwrap_or_default();
    let mut seen: HashMap<(Op, Ty, Vec<NodeIndex>), NodeIndex> = HashMap::new();
    let mut replaced: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    for n in order {
        let key = (
            ir.graph[n].op.clone(),
            ir.graph[n].ty,
            operands(&ir.graph, n),
        );
        match seen.get(&key) {
            Some(&keep) => {
                let users: Vec<(NodeIndex, u8)> = ir
                    .graph
                    .edges_directed(n, Direction::Outgoing)
                    .map(|e| (e.target(), *e.weight()))
                    .collect();
                for (user, slot) in users {
                    ir.graph.add_edge(keep, user, slot);
                }
                ir.graph.remove_node(n);
                replaced.insert(n, keep);
            }
            None => {
                seen.insert(key, n);
            }
        }
    }
    ir.remap_roots(&|n| replaced.get(&n).copied().unwrap_or(n));
}

#[cfg(test)]
mod tests {
    use crate::diagnostics::Source;

    #[test]
    fn a_let_used_twice_is_computed_once() {
        let src = "loss l { input x : [N]\n let p = x[i] + 1\n compute log(p) * p\n reduce sum }";
        let checked = crate::sema::check(&[Source::new("l.loss", src)]);
        assert!(!checked.has_errors());
        let ir = &checked.program.losses[0];
        // x[i], 1, x[i] + 1, log, *: five nodes (the default weight is the same
        // constant 1). Without CSE, the let's three nodes would appear twice.
        assert_eq!(ir.graph.node_count(), 5);
    }
}
