//! Addressing: index polynomials and subscripts as WGSL, reads of the arena (gathered
//! subscripts bounds-checked, contiguous tails through the loop's linear index, aligned
//! ones in four-wide loops as shared vec4 loads), and reads of hoisted tables.

use petgraph::stable_graph::NodeIndex;

use super::{LossEmitter, SharedLoad};
use crate::codegen::analysis::ReadRecord;
use crate::codegen::layout::{Layout, Slot};
use crate::ir::sites::gathered;
use crate::ir::{COUNT_PARAM, IndexExpr, IndexId, IndexTerm, InputId, LossIr, Poly, Tensor, Ty};

impl LossEmitter<'_> {
    pub(super) fn poly(&mut self, p: &Poly) -> String {
        self.poly_as(p, false)
    }

    /// A polynomial of dimensions as i32, or `as_f32` as f32 (the shadow of a gathered
    /// subscript, see [`Self::index`]).
    fn poly_as(&mut self, p: &Poly, as_f32: bool) -> String {
        let mut parts = Vec::new();
        for (mono, c) in &p.terms {
            let mut f: Vec<String> = mono
                .iter()
                .map(|d| {
                    let dim = self.ir.dims[*d].name.clone();
                    let x = self.m(Slot::Dim { loss: self.li, dim });
                    if as_f32 { format!("f32({x})") } else { x }
                })
                .collect();
            if *c != 1 || f.is_empty() {
                f.insert(
                    0,
                    if as_f32 {
                        format!("{c}.0f")
                    } else {
                        format!("{c}")
                    },
                );
            }
            parts.push(f.join(" * "));
        }
        if parts.is_empty() {
            "0".into()
        } else {
            format!("({})", parts.join(" + "))
        }
    }

    /// A subscript as i32. One through a gather is computed as the CPU evaluator does,
    /// in whole numbers saturated at i32's bounds (`lc_idx` for a gathered value,
    /// `lc_exact` for the sum): 32-bit arithmetic would wrap a huge gathered value into
    /// range and read silently, and would report another index than the CPU. The sum is
    /// also computed in f32 beside it, and where the two differ by more than f32's
    /// rounding can, the i32 wrapped, and the result is the bound on that side.
    pub(super) fn index(&mut self, e: &IndexExpr) -> String {
        let through_gather = gathered(e);
        let mut parts = Vec::new();
        let mut shadow = Vec::new();
        if !e.offset.terms.is_empty() {
            parts.push(self.poly(&e.offset));
            if through_gather {
                shadow.push(self.poly_as(&e.offset, true));
            }
        }
        for (c, t) in &e.terms {
            let (x, f) = match t {
                IndexTerm::Var(v) => {
                    let x = self.var(*v);
                    let f = format!("f32({x})");
                    (x, f)
                }
                IndexTerm::Gather(p, idx) => {
                    let g = self.read(*p, idx, None);
                    let name = self.name("g");
                    self.w.line(format!("let {name} = {g};"));
                    (format!("lc_idx({name})"), name)
                }
            };
            match c.as_constant() {
                Some(1) => {
                    parts.push(x);
                    shadow.push(f);
                }
                Some(k) => {
                    parts.push(format!("{k} * {x}"));
                    shadow.push(format!("{k}.0f * {f}"));
                }
                None => {
                    let (k, kf) = (self.poly(c), self.poly_as(c, true));
                    parts.push(format!("{k} * {x}"));
                    shadow.push(format!("{kf} * {f}"));
                }
            }
        }
        if parts.is_empty() {
            return "0".into();
        }
        let sum = format!("({})", parts.join(" + "));
        if through_gather {
            format!("lc_exact({sum}, {})", shadow.join(" + "))
        } else {
            sum
        }
    }

    /// An element of a tensor of the arena; every subscript is bounds-checked, and an
    /// out-of-range one raises the read's site in the error word.
    pub(super) fn read(&mut self, t: Tensor, idx: &[IndexExpr], at: Option<NodeIndex>) -> String {
        let name = self.ir.tensor_name(t).to_string();
        if let (Tensor::Param(_), Some(store)) = (t, self.store)
            && name == COUNT_PARAM
        {
            // The forward kernel's count, from its results.
            return match store.count_at {
                Some(k) => format!("lc_saved[{k}]"),
                None => {
                    self.fail("a backward loss reads a count its forward loss has not".into());
                    "0.0f".into()
                }
            };
        }
        let off = self.m(Slot::Offset {
            loss: self.li,
            tensor: name.clone(),
        });
        if let (Tensor::Input(input), Some(node)) = (t, at.or(self.at)) {
            self.record_read(input, node);
        }
        if idx.is_empty() {
            return format!("lc_arena[{off}]");
        }
        // Affine subscripts are checked against the shapes once, on the host, before the
        // dispatch (runtime::bind); only subscripts through gathers are checked here.
        let gathers = idx.iter().any(gathered);
        // The node this read belongs to: the read, or the read whose subscript gathers.
        let node = at.or(self.at);
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
            let gathered = gathered(e);
            let checked = if gathered {
                let code = node
                    .and_then(|node| LossIr::site_of(&self.checked, node, t, idx, axis))
                    .map(|k| self.codes[k]);
                let Some(code) = code else {
                    self.fail(format!(
                        "`{name}[{}]` is read through a gather, but is not a checked read",
                        self.ir.show_subscripts(idx)
                    ));
                    return "0.0f".into();
                };
                let check = if self.quiet { "lc_chkq" } else { "lc_chk" };
                format!("{check}({i}, {n}, {code}u)")
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
            if *e != IndexExpr::var(*v) {
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
        let reader = k;
        // A table shared with an earlier reduction is read where that one was built; a
        // single shared value may be in a register (never a table that checks reads:
        // reading it raises the failures it keeps).
        let k = match self.sched.hoisted[k].same_as {
            Some(src) => {
                if !self.sched.hoisted[src].checks
                    && let Some(x) = self.lookup(self.sched.hoisted[src].node)
                {
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
        // A table built once per workgroup is in the workgroup's slice (thread 0's, in
        // the one-row-per-thread mode), at its own offset.
        let slice = if self.sched.hoisted[k].per_workgroup {
            "slice"
        } else {
            self.slice
        };
        let raw = format!("lc_scratch[{slice} + {off} + {lin}]");
        if self.sched.hoisted[k].checks {
            // The entry's failed read, stored after the values (code, then the index's
            // high and low 16 bits): raised here, where the entry's value is needed.
            let entries = self.count(&vars);
            let part =
                |j: usize| format!("u32(lc_scratch[{slice} + {off} + {j} * {entries} + {lin}])");
            let call = if self.quiet { "lc_note" } else { "lc_raise" };
            let (code, hi, lo) = (part(1), part(2), part(3));
            let name = self.name("fc");
            self.w.line(format!("let {name} = {code};"));
            let code = self.own_code(reader, k, name);
            self.w
                .line(format!("{call}({code}, ({hi} << 16u) | {lo});"));
        }
        if self.ir.graph[n].ty == Ty::Bool {
            format!("({raw} != 0.0)")
        } else {
            raw
        }
    }

    /// Records a read of input `input` written here, with the indices whose loops enclose
    /// it (one per binding: a ranking loop binds its reduction's indices a second time),
    /// for `lossc explain`'s counts. Muted code is never run, and is not recorded.
    fn record_read(&mut self, input: InputId, node: NodeIndex) {
        if self.w.muted() {
            return;
        }
        let mut loops: Vec<IndexId> = self
            .binds
            .iter()
            .flat_map(|(v, stack)| std::iter::repeat_n(*v, stack.len()))
            .collect();
        loops.sort_unstable();
        self.reads.push(ReadRecord {
            loss: self.li,
            input,
            node,
            placement: self.placement,
            in_elements: self.in_elements,
            loops,
            four_wide: self.four_wide_depth,
            per_workgroup: self.per_workgroup_tables,
        });
    }

    /// The code a failure kept in table `built` is raised with where reduction `reader`
    /// reads it: its own. A reduction equal to the built one up to renaming reads the
    /// built table; a read that failed there failed at the reader's corresponding read,
    /// which has its own site (and place), so the code is mapped to it (the evaluator
    /// computes both and reports the reader's).
    fn own_code(&mut self, reader: usize, built: usize, code: String) -> String {
        if reader == built {
            return code;
        }
        let (a, b) = (
            self.sched.hoisted[built].node,
            self.sched.hoisted[reader].node,
        );
        let mut mapped = code.clone();
        for (x, y) in crate::codegen::schedule::corresponding_nodes(self.ir, a, b) {
            let own: Vec<usize> = (0..self.checked.len())
                .filter(|i| self.checked[*i].node == y)
                .collect();
            let theirs = (0..self.checked.len()).filter(|i| self.checked[*i].node == x);
            for (i, j) in theirs.zip(own) {
                let (from, to) = (self.codes[i], self.codes[j]);
                mapped = format!("select({mapped}, {to}u, {code} == {from}u)");
            }
        }
        mapped
    }
}
