//! Dead-node removal: nodes no stage depends on are dropped.

use petgraph::visit::{Dfs, Reversed, Walker};

use crate::ir::LossIr;

/// Removes every node not reachable (backwards) from a stage's root.
pub fn remove_dead_nodes(ir: &mut LossIr) {
    let mut live = std::collections::HashSet::new();
    let reversed = Reversed(&ir.graph);
    for root in ir.roots() {
        for n in Dfs::new(reversed, root).iter(reversed) {
            live.insert(n);
        }
    }
    let dead: Vec<_> = ir
        .graph
        .node_indices()
        .filter(|n| !live.contains(n))
        .collect();
    for n in dead {
        ir.graph.remove_node(n);
    }
}
