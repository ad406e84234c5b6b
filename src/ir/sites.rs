//! The reads a back end checks as it runs: an axis whose subscript goes through a gather
//! (an `index` param's value) may leave its axis whatever the ranges say, so both back
//! ends check it at each read (affine subscripts are checked once, when data is bound).
//! Both number these *sites* in one canonical order, so that when several reads fail
//! they report the same one: the first in this order.

use petgraph::stable_graph::NodeIndex;

use super::{IndexExpr, IndexTerm, LossIr, Op, Tensor};

/// One axis of one read checked at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRead {
    /// The node whose evaluation makes the read: a read, or an index value, holding the
    /// gather (a gather nested in another read's subscript belongs to that read's node).
    pub node: NodeIndex,
    /// The input or param read.
    pub tensor: Tensor,
    /// The read's subscripts.
    pub subscripts: Vec<IndexExpr>,
    /// The axis checked: its subscript goes through a gather.
    pub axis: usize,
}

/// Whether a subscript goes through a gather.
pub fn gathered(e: &IndexExpr) -> bool {
    e.terms
        .iter()
        .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
}

impl LossIr {
    /// Every checked read of the loss, in the order failures are reported in: nodes by
    /// their place in the source (then by number), and within a node in evaluation
    /// order: axis by axis, the gathers inside a subscript before the axis itself.
    pub fn checked_reads(&self) -> Vec<CheckedRead> {
        let mut nodes: Vec<NodeIndex> = self.graph.node_indices().collect();
        nodes.sort_by_key(|n| (self.graph[*n].span.start, n.index()));
        let mut out = Vec::new();
        for n in nodes {
            match &self.graph[n].op {
                Op::Read(t, idx) => read_sites(n, *t, idx, &mut out),
                Op::IndexValue(e) => expr_sites(n, e, &mut out),
                _ => {}
            }
        }
        out
    }

    /// The position of a checked read in [`LossIr::checked_reads`]' list `sites`.
    pub fn site_of(
        sites: &[CheckedRead],
        node: NodeIndex,
        tensor: Tensor,
        subscripts: &[IndexExpr],
        axis: usize,
    ) -> Option<usize> {
        sites.iter().position(|s| {
            s.node == node && s.tensor == tensor && s.axis == axis && s.subscripts == subscripts
        })
    }

    /// Whether evaluating `n` may make a checked read (directly, or through any node it
    /// depends on, a hoisted reduction's body included).
    pub fn checks_at_run_time(&self, n: NodeIndex) -> bool {
        use petgraph::visit::{Dfs, Reversed, Walker};
        let rev = Reversed(&self.graph);
        Dfs::new(rev, n).iter(rev).any(|m| match &self.graph[m].op {
            Op::Read(_, idx) => read_checks(idx),
            Op::IndexValue(e) => checks(e),
            _ => false,
        })
    }
}

/// Whether a read with these subscripts is checked, or makes a checked read.
fn read_checks(idx: &[IndexExpr]) -> bool {
    idx.iter().any(|e| gathered(e) || checks(e))
}

/// Whether evaluating a subscript makes a checked read (a gather through a gather).
fn checks(e: &IndexExpr) -> bool {
    e.terms.iter().any(|(_, t)| match t {
        IndexTerm::Gather(_, idx) => read_checks(idx),
        IndexTerm::Var(_) => false,
    })
}

fn read_sites(node: NodeIndex, tensor: Tensor, idx: &[IndexExpr], out: &mut Vec<CheckedRead>) {
    for (axis, e) in idx.iter().enumerate() {
        expr_sites(node, e, out);
        if gathered(e) {
            out.push(CheckedRead {
                node,
                tensor,
                subscripts: idx.to_vec(),
                axis,
            });
        }
    }
}

fn expr_sites(node: NodeIndex, e: &IndexExpr, out: &mut Vec<CheckedRead>) {
    for (_, t) in &e.terms {
        if let IndexTerm::Gather(p, idx) = t {
            read_sites(node, *p, idx, out);
        }
    }
}
