//! Addressing: index polynomials and subscripts as WGSL, reads of the arena (gathered
//! subscripts bounds-checked, contiguous tails through the loop's linear index, aligned
//! ones in four-wide loops as shared vec4 loads), and reads of hoisted tables.

use petgraph::stable_graph::NodeIndex;

use super::{LossEmitter, SharedLoad};
use crate::codegen::layout::{Layout, Slot};
use crate::ir::{IndexExpr, IndexTerm, Op, Poly, Tensor, Ty};

impl LossEmitter<'_> {
    pub(super) fn poly(&mut self, p: &Poly) -> String {
        let mut parts = Vec::new();
        for (mono, c) in &p.terms {
            let mut f: Vec<String> = mono
                .iter()
                .map(|d| {
                    let dim = self.ir.dims[*d].name.clone();
                    self.m(Slot::Dim { loss: self.li, dim })
                })
                .collect();
            if *c != 1 || f.is_empty() {
                f.insert(0, format!("{c}"));
            }
            parts.push(f.join(" * "));
        }
        if parts.is_empty() {
            "0".into()
        } else {
            format!("({})", parts.join(" + "))
        }
    }

    pub(super) fn index(&mut self, e: &IndexExpr) -> String {
        let mut parts = Vec::new();
        if !e.offset.terms.is_empty() {
            parts.push(self.poly(&e.offset));
        }
        for (c, t) in &e.terms {
            let x = match t {
                IndexTerm::Var(v) => self.var(*v),
                IndexTerm::Gather(p, idx) => {
                    format!("i32({})", self.read(Tensor::Param(*p), idx, None))
                }
            };
            parts.push(if *c == 1 { x } else { format!("{c} * {x}") });
        }
        if parts.is_empty() {
            "0".into()
        } else {
            format!("({})", parts.join(" + "))
        }
    }

    /// An element of a tensor of the arena; every subscript is bounds-checked, and an
    /// out-of-range one raises the read's site in the error word.
    pub(super) fn read(&mut self, t: Tensor, idx: &[IndexExpr], at: Option<NodeIndex>) -> String {
        let name = match t {
            Tensor::Input(i) => self.ir.inputs[i].name.clone(),
            Tensor::Param(p) => self.ir.params[p].name.clone(),
        };
        let off = self.m(Slot::Offset {
            loss: self.li,
            tensor: name.clone(),
        });
        if idx.is_empty() {
            return format!("lc_arena[{off}]");
        }
        // Affine subscripts are checked against the shapes once, on the host, before the
        // dispatch (runtime::bind); only subscripts through gathers are checked here.
        let gathers = idx.iter().any(|e| {
            e.terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
        });
        let site = if gathers {
            let shown: Vec<String> = idx.iter().map(|e| self.ir.show_index(e)).collect();
            let place = at
                .map(|n| self.ir.origin.locate(self.ir.graph[n].span))
                .unwrap_or_else(|| self.ir.origin.locate(self.ir.span));
            // One number per read site, however often (four-wide loops, muted branches)
            // its code is written, so that generic and specialised kernels agree.
            let site = format!(
                "loss `{}`: `{name}[{}]` at {place}",
                self.ir.name,
                shown.join(", ")
            );
            match self.sites.iter().position(|s| *s == site) {
                Some(i) => i + 1,
                None if self.frozen => {
                    self.fail(format!(
                        "the specialised kernel reads {site}, a site the generic kernel does not have"
                    ));
                    0
                }
                None => {
                    self.sites.push(site);
                    self.sites.len()
                }
            }
        } else {
            0
        };
        let shapes: Vec<String> = (0..idx.len())
            .map(|axis| {
                self.m(Slot::Shape {
                    loss: self.li,
                    tensor: name.clone(),
                    axis,
                })
            })
            .collect();
        let tail = self.contiguous_tail(&name, idx);
        let lead = idx.len() - tail;
        let mut lin = String::new();
        for (axis, e) in idx.iter().enumerate().take(lead) {
            let i = self.index(e);
            let n = shapes[axis].clone();
            let gathered = e
                .terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)));
            let checked = if gathered {
                format!("lc_chk({i}, {n}, {site}u)")
            } else {
                i
            };
            lin = if axis == 0 {
                checked
            } else {
                format!("({lin}) * {n} + {checked}")
            };
        }
        if tail > 0 {
            // The trailing axes are exactly the loop's indices over their whole ranges:
            // the address is the loop's linear index plus the row's base, which
            // consecutive threads read consecutively.
            let (_, linear) = self.linear.clone().unwrap_or_default();
            let span = shapes[lead..].join(" * ");
            // In the four-wide element loop, an aligned row base makes it one vec4 load.
            let known_span = (lead..idx.len())
                .map(|axis| {
                    self.known(&Slot::Shape {
                        loss: self.li,
                        tensor: name.clone(),
                        axis,
                    })
                })
                .try_fold(1i64, |a, n| n.map(|n| a * n));
            let known_off = self.known(&Slot::Offset {
                loss: self.li,
                tensor: name.clone(),
            });
            if let (Some((x4, u)), Some(sp), Some(o)) = (self.lane.clone(), known_span, known_off)
                && sp % 4 == 0
                && o % 4 == 0
            {
                let base = if lead == 0 {
                    off.to_string()
                } else {
                    format!("{off} + ({lin}) * {span}")
                };
                let load = format!("lc_arena4[({base} + {x4}) / 4]");
                if !gathers && self.bound_outside_body(&idx[..lead]) {
                    // One vec4 load for the four elements, at the top of the body.
                    let comment = at.map(|n| self.comment(n)).unwrap_or_default();
                    if let Some((_, loads)) = &mut self.shared_loads {
                        let name = match loads.iter().find(|l| l.load == load) {
                            Some(l) => l.name.clone(),
                            None => {
                                *self.fresh += 1;
                                let name = format!("w{}", self.fresh);
                                loads.push(SharedLoad {
                                    load,
                                    name: name.clone(),
                                    comment,
                                });
                                name
                            }
                        };
                        return format!("{name}[{u}]");
                    }
                }
                return format!("{load}[{u}]");
            }
            lin = if lead == 0 {
                linear
            } else {
                format!("({lin}) * {span} + {linear}")
            };
        }
        format!("lc_arena[{off} + {lin}]")
    }

    /// Whether every index the subscripts mention is bound outside the body of the
    /// four-wide loop being written (so that a load through them can move to its top).
    pub(super) fn bound_outside_body(&self, idx: &[IndexExpr]) -> bool {
        let Some((body, _)) = &self.shared_loads else {
            return false;
        };
        let mut vs = Vec::new();
        for e in idx {
            e.vars(&mut vs);
        }
        vs.iter().all(|v| {
            self.binds
                .get(v)
                .and_then(|s| s.last())
                .is_some_and(|(d, _)| d < body)
        })
    }

    /// How many trailing subscripts of a read are exactly the indices of the loop being
    /// emitted, in order, each over the whole axis (known only in a kernel specialised to
    /// sizes); 0 when the read is not of that form.
    pub(super) fn contiguous_tail(&mut self, name: &str, idx: &[IndexExpr]) -> usize {
        let (Some(values), Some((vars, _))) = (self.values, self.linear.clone()) else {
            return 0;
        };
        let m = vars.len();
        if m == 0 || idx.len() < m {
            return 0;
        }
        let lead = idx.len() - m;
        let mentions = |e: &IndexExpr| {
            let mut vs = Vec::new();
            e.vars(&mut vs);
            vs.iter().any(|v| vars.contains(v))
        };
        if idx[..lead].iter().any(mentions) {
            return 0;
        }
        let value = |layout: &Layout, s: Slot| layout.value(&s, values);
        for (k, v) in vars.iter().enumerate() {
            let e = &idx[lead + k];
            if e.terms != [(1, IndexTerm::Var(*v))] || !e.offset.terms.is_empty() {
                return 0;
            }
            let lo = value(
                self.layout,
                Slot::Lo {
                    loss: self.li,
                    index: *v,
                },
            );
            let ext = value(
                self.layout,
                Slot::Extent {
                    loss: self.li,
                    index: *v,
                },
            );
            let size = value(
                self.layout,
                Slot::Shape {
                    loss: self.li,
                    tensor: name.to_string(),
                    axis: lead + k,
                },
            );
            if lo != Some(0) || ext.is_none() || ext != size {
                return 0;
            }
        }
        m
    }

    /// The entry of hoisted table `k` for the current table indices.
    pub(super) fn table_read(&mut self, k: usize, n: NodeIndex) -> String {
        let vars = self.sched.hoisted[k].table_vars.clone();
        // A table shared with an earlier reduction is read where that one was built; a
        // single shared value may be in a register.
        let k = match self.sched.hoisted[k].same_as {
            Some(src) => {
                if let Some(x) = self.lookup(self.sched.hoisted[src].node) {
                    return x;
                }
                src
            }
            None => k,
        };
        let mut lin = String::from("0");
        for (i, v) in vars.iter().enumerate() {
            let (x, lo, ext) = (self.var(*v), self.lo(*v), self.ext(*v));
            lin = if i == 0 {
                format!("({x} - {lo})")
            } else {
                format!("({lin}) * {ext} + ({x} - {lo})")
            };
        }
        let off = self.m(Slot::Table {
            loss: self.li,
            table: k,
        });
        let raw = format!("lc_scratch[{} + {off} + {lin}]", self.slice);
        if self.ir.graph[n].ty == Ty::Bool {
            format!("({raw} != 0.0)")
        } else {
            raw
        }
    }

    /// Whether evaluating `n` reads anything through a gather (whose index is data, and
    /// checked as it is read).
    pub(super) fn reads_through_gather(&self, n: NodeIndex) -> bool {
        use petgraph::visit::{Dfs, Reversed, Walker};
        let rev = Reversed(&self.ir.graph);
        let gathered = |e: &IndexExpr| {
            e.terms
                .iter()
                .any(|(_, t)| matches!(t, IndexTerm::Gather(..)))
        };
        Dfs::new(rev, n)
            .iter(rev)
            .any(|m| match &self.ir.graph[m].op {
                Op::Read(_, idx) => idx.iter().any(gathered),
                Op::IndexValue(e) => gathered(e),
                _ => false,
            })
    }
}
