//! One loss's part of the kernel: its function `loss_N` (one work item, row per thread or
//! rows shared by the workgroup), the per-element stages, and its final combination in the
//! last workgroup.

use std::collections::HashMap;

use super::{CHUNK, LossEmitter, WORKGROUP};
use crate::codegen::layout::Slot;
use crate::codegen::wgsl::comment_text;
use crate::ir::{ParamKind, ReduceMode, Ty};

impl LossEmitter<'_> {
    /// `fn loss_N(item, gitem, lid, slice)`: one work item of this loss. Two modes, chosen
    /// by the host from the sizes: rows shared by the workgroup (hoisted tables computed
    /// cooperatively, elements streamed by all threads), or, for small rows, one row per
    /// thread, with no barrier at all until the partial sums are combined.
    pub(super) fn loss_fn(&mut self) {
        let li = self.li;
        self.w.line(format!(
            "// loss {} ({})",
            self.ir.name,
            comment_text(&self.ir.origin.locate(self.ir.span))
        ));
        for line in self.ir.doc.lines() {
            self.w.line(format!("/// {}", comment_text(line)));
        }
        self.open(format!(
            "fn loss_{li}(item: i32, gitem: i32, lid: u32, slice: i32)"
        ));
        self.w.line("var part: f32 = 0.0f;");
        self.w.line("var part_n: u32 = 0u;");
        // Enum slots first, so that a specialised kernel knows every configuration choice
        // before it decides which hoisted tables are needed.
        for p in &self.ir.params {
            if matches!(p.kind, ParamKind::Enum(_)) {
                self.layout.slot(Slot::Enum {
                    loss: li,
                    param: p.name.clone(),
                });
            }
        }
        let rows = self.sched.row_vars.clone();
        let hoisted = self.sched.hoisted.clone();
        let ev = self.sched.elem_vars.clone();
        let elems = self.m(Slot::Elems { loss: li });
        let mode = self.m(Slot::RowPerThread { loss: li });
        let n_rows = self.m(Slot::Rows { loss: li });
        let slice_size = self.m(Slot::SliceSize);

        // Tables that depend on no row index: built by the workgroup before its first
        // item of this loss (its items of a loss are consecutive), read by every row.
        let per_workgroup: Vec<usize> = hoisted
            .iter()
            .enumerate()
            .filter(|(_, h)| h.per_workgroup && h.same_as.is_none())
            .map(|(k, _)| k)
            .collect();
        if !per_workgroup.is_empty() {
            let nwg = self.m(Slot::Workgroups);
            self.open(format!("if (item < {nwg})"));
            self.per_workgroup_tables = true;
            self.shared_tables(&per_workgroup);
            self.per_workgroup_tables = false;
            self.close();
        }

        let known_mode = self.known(&Slot::RowPerThread { loss: li }).map(|m| m != 0);
        self.open_if(format!("{mode} != 0"), known_mode);
        self.placement = Some(true);
        self.w.line(format!("let row = item * {mode} + i32(lid);"));
        self.open(format!("if (i32(lid) < {mode} && row < {n_rows})"));
        self.w.line(format!(
            "let tslice = slice + i32(lid) * ({slice_size} / {WORKGROUP});"
        ));
        self.slice = "tslice";
        self.decompose(&rows, "row");
        for (k, h) in hoisted.iter().enumerate() {
            if h.same_as.is_some() || h.per_workgroup {
                continue;
            }
            let needed = self.table_needed(k);
            self.w.open_muted(!needed);
            self.cache.push(HashMap::new());
            let node = self.ir.graph[h.node].clone();
            self.w.line(format!(
                "// hoisted, this thread's row: {} {}",
                crate::ir::dot::op_label(self.ir, &node.op),
                self.comment(h.node)
            ));
            let size = self.count(&h.table_vars);
            let off = self.m(Slot::Table { loss: li, table: k });
            let t = self.name("t");
            self.open(format!("for (var {t}: i32 = 0; {t} < {size}; {t}++)"));
            self.decompose(&h.table_vars, &t);
            if h.checks {
                self.w.line("lc_fault = 0u;");
                self.w.line("lc_fault_at = 0u;");
            }
            self.quiet = h.checks;
            let r = self.inline_reduce(h.node);
            self.quiet = false;
            let r = if node.ty == Ty::Bool {
                format!("select(0.0f, 1.0f, {r})")
            } else {
                r
            };
            self.w
                .line(format!("lc_scratch[tslice + {off} + {t}] = {r};"));
            if h.checks {
                for (j, part) in [
                    "f32(lc_fault)",
                    "f32(lc_fault_at >> 16u)",
                    "f32(lc_fault_at & 0xffffu)",
                ]
                .iter()
                .enumerate()
                {
                    self.w.line(format!(
                        "lc_scratch[tslice + {off} + {} * {size} + {t}] = {part};",
                        j + 1
                    ));
                }
            }
            self.close();
            self.close();
        }
        self.row_invariants();
        if self.known_multiple_of_4(&ev) {
            // Four consecutive elements per iteration: contiguous reads load a vec4 each.
            self.four_wide(&ev, "e4", "0", &elems, false, &mut |e: &mut Self| {
                e.element()
            });
        } else {
            self.element_loop(&ev, "0", &elems, 1);
        }
        self.close();
        self.slice = "slice";
        self.close();

        self.open_else(known_mode);
        self.placement = Some(false);
        let cpr = self.m(Slot::ChunksPerRow { loss: li });
        self.w.line(format!("let row = item / {cpr};"));
        self.w.line(format!("let chunk = item % {cpr};"));
        self.decompose(&rows, "row");
        let per_row: Vec<usize> = hoisted
            .iter()
            .enumerate()
            .filter(|(_, h)| h.same_as.is_none() && !h.per_workgroup)
            .map(|(k, _)| k)
            .collect();
        self.shared_tables(&per_row);
        // Stream this chunk of the row's elements.
        self.w.line(format!("let e0 = chunk * {CHUNK};"));
        self.w.line(format!("let e1 = min(e0 + {CHUNK}, {elems});"));
        self.row_invariants();
        if self.known_multiple_of_4(&ev) {
            // Four consecutive elements per thread and iteration, so that contiguous
            // reads load a vec4 each: a quarter of the load instructions.
            self.four_wide(&ev, "e4", "e0", "e1", true, &mut |e: &mut Self| e.element());
        } else {
            self.element_loop(&ev, "e0 + i32(lid)", "e1", WORKGROUP);
        }
        self.close();

        if self.store.is_some() {
            // A backward loss stored its elements: nothing to publish or combine.
            self.placement = None;
            self.close();
            self.w.blank();
            return;
        }
        // A row of one element shared by the workgroup (a heatmap's KL per keypoint):
        // only thread 0 has a value, so no reduction is needed to publish it.
        let single = self.known(&Slot::RowPerThread { loss: li }) == Some(0)
            && self.known(&Slot::Elems { loss: li }) == Some(1);
        if single {
            self.open("if (lid == 0u)");
            self.w
                .line("atomicStore(&lc_sync[2 + 2 * gitem], lc_publish(part));");
            self.w.line("atomicStore(&lc_sync[3 + 2 * gitem], part_n);");
            self.close();
        } else {
            self.w.line("lc_red[lid] = part;");
            self.w.line("lc_cnt[lid] = part_n;");
            self.w.line("let s = lc_tree_sum_count(lid);");
            self.w.line("let c = lc_last_count;");
            self.open("if (lid == 0u)");
            self.w
                .line("atomicStore(&lc_sync[2 + 2 * gitem], lc_publish(s));");
            self.w.line("atomicStore(&lc_sync[3 + 2 * gitem], c);");
            self.close();
        }
        self.placement = None;
        self.close();
        self.w.blank();
    }

    /// Hoisted tables `ks`, each built by the whole workgroup together (in a specialised
    /// kernel, one no stage needs is written muted: walked for its slots, not emitted).
    fn shared_tables(&mut self, ks: &[usize]) {
        for &k in ks {
            let h = self.sched.hoisted[k].clone();
            if self.table_needed(k) {
                self.table(k, h.node, &h.table_vars);
            } else {
                self.w.open_muted(true);
                self.cache.push(HashMap::new());
                self.table(k, h.node, &h.table_vars);
                self.close();
            }
        }
    }

    /// Before a row's element loop: the values `compute` and `rectify` use that depend on
    /// the row's indices alone (a row's mask read from its table, a mean's 1 / count, a
    /// per-frame weight), written once, so that every element reads them instead of
    /// computing them again. Only where the stages are computed whatever the masks say
    /// (no read through a gather: see `element_stages`), so nothing is evaluated that
    /// the elements would not evaluate.
    fn row_invariants(&mut self) {
        let mut roots = vec![self.ir.compute];
        roots.extend(self.ir.rectify);
        if self.sched.elem_vars.is_empty() || roots.iter().any(|r| self.ir.checks_at_run_time(*r)) {
            return;
        }
        let row: std::collections::HashSet<_> = self.sched.row_vars.iter().copied().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = roots.pop() {
            if !seen.insert(n) {
                continue;
            }
            let node = &self.ir.graph[n];
            if matches!(
                node.op,
                crate::ir::Op::Const(_) | crate::ir::Op::BoolConst(_)
            ) {
                continue;
            }
            if node.free.iter().all(|v| row.contains(v)) {
                self.val(n);
                continue;
            }
            roots.extend(crate::ir::operands(&self.ir.graph, n));
        }
    }

    /// The per-element stages for the current element: masks, compute, rectify, and the
    /// running partial sum and count.
    pub(super) fn element(&mut self) {
        self.in_elements = true;
        self.element_stages();
        self.in_elements = false;
    }

    fn element_stages(&mut self) {
        let li = self.li;
        if let Some(store) = self.store {
            // A gradient element, written once where the input's element is: the domain
            // is the input's axes, row-major. It is stored as the loss's term of the
            // total's gradient: times the forward loss's anneal factor (never a literal,
            // see `generate`) and weight, in the order the CPU evaluator scales it.
            let g = self.val(self.ir.compute);
            let anneal = self.m_live(Slot::Anneal { loss: li });
            let v = format!(
                "(lc_bits(bitcast<u32>({anneal})) * lc_saved[{}]) * {g}",
                store.weight_at
            );
            // Rows then elements in the input's order: the row's first element, plus the
            // element loop's linear index.
            let rows_first = self
                .sched
                .row_vars
                .iter()
                .chain(&self.sched.elem_vars)
                .eq(self.ir.domain.iter());
            if let Some((vars, lin)) = self.linear.clone()
                && rows_first
                && vars == self.sched.elem_vars
            {
                let mut row = String::from("0");
                for d in self.sched.row_vars.clone() {
                    let x = self.var(d);
                    let e = self.m(Slot::Extent { loss: li, index: d });
                    row = format!("({row}) * {e} + {x}");
                }
                let elems = self.m(Slot::Elems { loss: li });
                let off = self.m(Slot::GradOffset { loss: li });
                self.w
                    .line(format!("lc_grad[{off} + ({row}) * {elems} + {lin}] = {v};"));
                return;
            }
            let mut flat = String::new();
            for (k, d) in self.ir.domain.clone().iter().enumerate() {
                let x = self.var(*d);
                if k == 0 {
                    flat = x;
                } else {
                    let e = self.m(Slot::Extent {
                        loss: li,
                        index: *d,
                    });
                    flat = format!("({flat}) * {e} + {x}");
                }
            }
            if flat.is_empty() {
                flat = "0".into();
            }
            let off = self.m(Slot::GradOffset { loss: li });
            self.w.line(format!("lc_grad[{off} + {flat}] = {v};"));
            return;
        }
        self.w.line("var keep = true;");
        self.w.line("var zeroed = false;");
        for (mi, mask) in self.ir.masks.clone().iter_enumerated() {
            let on = self.m(Slot::MaskOn { loss: li, mask: mi });
            self.open(format!("if (keep && {on} != 0)"));
            let c = self.val(mask.cond);
            match mask.mode {
                crate::ir::MaskMode::Drop => self.w.line(format!("if ({c}) {{ keep = false; }}")),
                crate::ir::MaskMode::Zero => self.w.line(format!("if ({c}) {{ zeroed = true; }}")),
            }
            self.close();
        }
        // Only compute and rectify decide the form below (not every element root): the
        // masks' conditions are evaluated under their own branches in either form.
        let mut unmasked = std::iter::once(self.ir.compute).chain(self.ir.rectify);
        if !unmasked.any(|r| self.ir.checks_at_run_time(r)) {
            // Without gathers every read is in bounds (checked on the host), so the value
            // is computed whatever the masks say, and then selected: no loads under a
            // branch, which SIMD back ends would have to mask. A masked NaN is not
            // selected, so it still never reaches the result.
            let v = self.val(self.ir.compute);
            self.w
                .line(format!("var x: f32 = select({v}, 0.0f, zeroed);"));
            if let Some(r) = self.ir.rectify {
                let eps = self.val(r);
                self.w.line(format!("x = lc_relu(x - {eps}); // rectify"));
            }
            self.w.line("part = part + select(0.0f, x, keep);");
            self.w.line("part_n = part_n + select(0u, 1u, keep);");
            return;
        }
        self.open("if (keep)");
        self.w.line("var x: f32 = 0.0f;");
        self.open("if (!zeroed)");
        let v = self.val(self.ir.compute);
        self.w.line(format!("x = {v};"));
        self.close();
        if let Some(r) = self.ir.rectify {
            let eps = self.val(r);
            self.w.line(format!("x = lc_relu(x - {eps}); // rectify"));
        }
        self.w.line("part = part + x;");
        self.w.line("part_n = part_n + 1u;");
        self.close();
    }

    /// In the last workgroup: this loss's value, weight and weighted value.
    pub(super) fn finish(&mut self) {
        let li = self.li;
        let (base, items) = (
            self.m(Slot::Base { loss: li }),
            self.m(Slot::Items { loss: li }),
        );
        self.w.line(format!("// combine loss {}", self.ir.name));
        self.open("");
        self.w.line("var s: f32 = 0.0f;");
        self.w.line("var c: u32 = 0u;");
        self.open(format!(
            "for (var k: i32 = i32(lid); k < {items}; k += {WORKGROUP})"
        ));
        self.w.line(format!("let slot = 2 + 2 * ({base} + k);"));
        self.w.line("s = s + bitcast<f32>(lc_wait(slot));");
        self.w.line("c = c + lc_wait(slot + 1);");
        self.close();
        self.w.line("lc_red[lid] = s;");
        self.w.line("lc_cnt[lid] = c;");
        self.w.line("let total = lc_tree_sum_count(lid);");
        self.w.line("let count = lc_last_count;");
        self.open("if (lid == 0u)");
        self.w.line("var loss: f32;");
        self.open("if (count > 0u)");
        match self.ir.reduce {
            ReduceMode::Mean => self.w.line("loss = total / f32(count);"),
            ReduceMode::Sum => self.w.line("loss = total;"),
        }
        self.close();
        self.open("else");
        match (self.ir.empty, self.ir.reduce) {
            (Some(e), _) => {
                let v = self.val(e);
                self.w.line(format!("loss = {v}; // empty:"));
            }
            (None, ReduceMode::Mean) => self.w.line("loss = lc_nan(); // the mean of nothing"),
            (None, ReduceMode::Sum) => self.w.line("loss = 0.0f;"),
        }
        self.close();
        let w = self.val(self.ir.weight);
        self.w.line(format!("lc_out[{}] = loss;", 3 * li));
        self.w.line(format!("lc_out[{}] = {w};", 3 * li + 1));
        self.w.line(format!("lc_out[{}] = {w} * loss;", 3 * li + 2));
        // What a backward kernel divides by.
        self.w.line(format!(
            "lc_out[{}] = f32(count);",
            3 * self.n_losses + 1 + li
        ));
        self.close();
        self.close();
    }
}
