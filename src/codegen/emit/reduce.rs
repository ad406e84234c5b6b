//! Reductions: inline (one thread, its own loops), cooperative (the workgroup's threads
//! and a fixed-order tree), hoisted into a row's tables, and medians by counting ranks.

use petgraph::stable_graph::NodeIndex;

use super::{LossEmitter, WORKGROUP};
use crate::codegen::layout::Slot;
use crate::codegen::wgsl::{opaque, opaque_lit};
use crate::ir::{IndexId, Op, ReduceFn, Ty, operands};

impl LossEmitter<'_> {
    /// Counts, over every value of `body` for the indices `bound`, those smaller than and
    /// equal to `a`: a value's rank without sorting. Returns the two counters' names.
    pub(super) fn count_ranks(
        &mut self,
        a: &str,
        body: NodeIndex,
        bound: &[IndexId],
    ) -> (String, String) {
        let (less, equal) = (self.name("mless"), self.name("meq"));
        self.w.line(format!("var {less}: i32 = 0;"));
        self.w.line(format!("var {equal}: i32 = 0;"));
        self.open_loops(bound);
        let b = self.val(body);
        self.w
            .line(format!("if ({b} < {a}) {{ {less} = {less} + 1; }}"));
        self.w
            .line(format!("if ({b} == {a}) {{ {equal} = {equal} + 1; }}"));
        for _ in bound {
            self.close();
        }
        (less, equal)
    }

    /// A reduction evaluated by the current thread alone, with loops over its indices.
    pub(super) fn inline_reduce(&mut self, n: NodeIndex) -> String {
        let node = self.ir.graph[n].clone();
        let Op::Reduce(kind, bound) = &node.op else {
            unreachable!("called on reductions")
        };
        let body = operands(&self.ir.graph, n)[0];
        let comment = self.comment(n);
        if *kind == ReduceFn::Median {
            return self.inline_median(n, body, bound);
        }
        if *kind == ReduceFn::NthLargest {
            return self.inline_nth_largest(n, body, bound);
        }
        let acc = self.name("acc");
        let (init, is_bool) = match kind {
            ReduceFn::All => ("true".to_string(), true),
            ReduceFn::Any => ("false".to_string(), true),
            ReduceFn::Max => ("-lc_inf()".to_string(), false),
            ReduceFn::Min => ("lc_inf()".to_string(), false),
            ReduceFn::Prod => (opaque_lit(1.0), false),
            _ => (opaque_lit(0.0), false),
        };
        self.w.line(format!(
            "var {acc}: {} = {init}; {comment}",
            if is_bool { "bool" } else { "f32" }
        ));
        let step = |acc: &str, b: String| match kind {
            ReduceFn::Sum | ReduceFn::Mean => format!("{acc} = {acc} + {b};"),
            ReduceFn::Norm => format!("{acc} = {acc} + {b} * {b};"),
            ReduceFn::Max => format!("{acc} = lc_max({acc}, {b});"),
            ReduceFn::Min => format!("{acc} = lc_min({acc}, {b});"),
            ReduceFn::All => format!("{acc} = {acc} && {b};"),
            ReduceFn::Any => format!("{acc} = {acc} || {b};"),
            ReduceFn::Prod => format!("{acc} = {acc} * {b};"),
            ReduceFn::Median | ReduceFn::NthLargest => unreachable!("handled above"),
        };
        let wide = self.known_multiple_of_4(bound);
        if is_bool {
            // A truth value is exact in any order: one value at a time (four per
            // iteration when the count allows, for the vec4 loads).
            if wide {
                self.open("");
                let (x4, xn) = (self.name("x"), self.count(bound));
                self.four_wide(bound, &x4, "0", &xn, false, &mut |e: &mut Self| {
                    let b = e.val(body);
                    e.w.line(step(&acc, b));
                });
                self.close();
            } else {
                let opened = bound.len();
                self.open_loops(bound);
                let b = self.val(body);
                self.w.line(step(&acc, b));
                for _ in 0..opened {
                    self.close();
                }
            }
        } else {
            // A number is folded in the order a workgroup's cooperative reduction folds
            // the same values (each lane its values, then lc_tree's groups of 8 lanes),
            // so that a reduction has one value wherever it is computed: by one thread
            // here, or by a workgroup into a hoisted table.
            let combine = |a: &str, b: &str| match kind {
                ReduceFn::Max => format!("{a} = lc_max({a}, {b});"),
                ReduceFn::Min => format!("{a} = lc_min({a}, {b});"),
                ReduceFn::Prod => format!("{a} = {a} * {b};"),
                _ => format!("{a} = {a} + {b};"),
            };
            self.open("");
            let (group, lane) = (self.name("grp"), self.name("lacc"));
            self.w.line(format!("var {group}: f32 = {init};"));
            self.w.line(format!("var {lane}: f32 = {init};"));
            let xn = self.count(bound);
            let lane_end = |l: &str| {
                vec![
                    combine(&group, &lane),
                    format!("{lane} = {init};"),
                    format!(
                        "if ({l} % 8 == 7) {{ {} {group} = {init}; }}",
                        combine(&acc, &group)
                    ),
                ]
            };
            self.lane_major(
                bound,
                if wide { 4 } else { 1 },
                &xn,
                &mut |e: &mut Self| {
                    let b = e.val(body);
                    e.w.line(step(&lane, b));
                },
                &lane_end,
            );
            self.w.line(combine(&acc, &group));
            self.close();
        }
        let result = match kind {
            ReduceFn::Mean => {
                let c = self.count(bound);
                format!("{acc} / {}", opaque(&format!("f32({c})")))
            }
            ReduceFn::Norm => format!("sqrt({acc})"),
            _ => acc.clone(),
        };
        let name = self.name("v");
        let result = if is_bool { result } else { opaque(&result) };
        self.w.line(format!("let {name} = {result};"));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// The median by counting ranks (no arrays needed): the values of rank ⌊(n−1)/2⌋ and
    /// of rank ⌊n/2⌋, combined by `lc_median_of` (the rule of `ir::scalar::median_of`).
    /// NaN if any value is NaN.
    pub(super) fn inline_median(
        &mut self,
        n: NodeIndex,
        body: NodeIndex,
        bound: &[IndexId],
    ) -> String {
        let comment = self.comment(n);
        let (lo_v, hi_v, nan, cnt) = (
            self.name("mlo"),
            self.name("mhi"),
            self.name("mnan"),
            self.name("mn"),
        );
        let total = self.count(bound);
        self.w.line(format!("let {cnt} = {total}; {comment}"));
        self.w.line(format!("var {lo_v}: f32 = lc_nan();"));
        self.w.line(format!("var {hi_v}: f32 = lc_nan();"));
        self.w.line(format!("var {nan}: bool = false;"));
        self.open_loops(bound);
        let a = self.val(body);
        let (less, equal) = self.count_ranks(&a, body, bound);
        self.w
            .line(format!("if (lc_isnan({a})) {{ {nan} = true; }}"));
        let (r1, r2) = (self.name("rank"), self.name("rank"));
        self.w.line(format!("let {r1} = ({cnt} - 1) / 2;"));
        self.w.line(format!("let {r2} = {cnt} / 2;"));
        self.w.line(format!(
            "if ({less} <= {r1} && {r1} < {less} + {equal}) {{ {lo_v} = {a}; }}"
        ));
        self.w.line(format!(
            "if ({less} <= {r2} && {r2} < {less} + {equal}) {{ {hi_v} = {a}; }}"
        ));
        for _ in bound {
            self.close();
        }
        let name = self.name("v");
        self.w.line(format!(
            "let {name} = lc_opaque(select(lc_median_of({lo_v}, {hi_v}), lc_nan(), {nan} || {cnt} == 0));"
        ));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// The k-th largest value of reduction `n` over `bound` (`NthLargest`): a bisection on
    /// the values' order-preserving keys (`lc_key`), from the highest bit down, keeping
    /// each bit while at least k values have a key at or above the prefix. 32 passes over
    /// the values: linear in their count, exact, and with no array to sort. `pass` writes
    /// one pass, counting the keys at or above the candidate (its first argument; the
    /// second names the number of values), and returns the count as an i32 expression. The pass's loops may bind the very
    /// variables of an enclosing loop (`sum_top`'s lowering shares them), whose linear
    /// index, lanes and shared loads then do not apply: they are set aside meanwhile.
    /// Returns the result's expression.
    fn nth_largest(
        &mut self,
        n: NodeIndex,
        bound: &[IndexId],
        pass: &mut dyn FnMut(&mut Self, &str, &str) -> String,
    ) -> String {
        let (cnt, key, bit) = (self.name("nn"), self.name("nkey"), self.name("nbit"));
        let total = self.count(bound);
        let comment = self.comment(n);
        self.w.line(format!("let {cnt} = {total}; {comment}"));
        // The count is whole and ≥ 0 (checked when the loss was bound); k is clamped to
        // 1..=cnt.
        let c = self.val(operands(&self.ir.graph, n)[1]);
        let k = self.name("k");
        self.w
            .line(format!("let {k} = max(1, i32(min({c}, f32({cnt}))));"));
        self.w.line(format!("var {key}: u32 = 0u;"));
        self.open(format!("for (var {bit}: i32 = 31; {bit} >= 0; {bit}--)"));
        let cand = self.name("ncand");
        self.w
            .line(format!("let {cand} = {key} | (1u << u32({bit}));"));
        let outer = (
            self.linear.take(),
            self.lane.take(),
            self.shared_loads.take(),
        );
        let at_least = pass(self, &cand, &cnt);
        (self.linear, self.lane, self.shared_loads) = outer;
        self.w
            .line(format!("if ({at_least} >= {k}) {{ {key} = {cand}; }}"));
        self.close();
        format!("select(lc_unkey({key}), -lc_inf(), {cnt} == 0)")
    }

    /// [`Self::nth_largest`] by one thread: each pass is its own loops.
    pub(super) fn inline_nth_largest(
        &mut self,
        n: NodeIndex,
        body: NodeIndex,
        bound: &[IndexId],
    ) -> String {
        let result = self.nth_largest(n, bound, &mut |e: &mut Self, cand: &str, _: &str| {
            let at_least = e.name("nge");
            e.w.line(format!("var {at_least}: i32 = 0;"));
            e.open_loops(bound);
            let b = e.val(body);
            e.w.line(format!(
                "if (lc_key({b}) >= {cand}) {{ {at_least} = {at_least} + 1; }}"
            ));
            for _ in bound {
                e.close();
            }
            at_least
        });
        let name = self.name("v");
        self.w.line(format!("let {name} = lc_opaque({result});"));
        let d = self.depth();
        self.cache[d].insert(n, name.clone());
        name
    }

    /// [`Self::nth_largest`] shared by the workgroup: in each pass every thread counts its
    /// values `lid, lid + 64, ...`, and the threads' counts are summed exactly (u32) in
    /// the fixed-order tree, so every thread keeps the same bits. Call from uniform
    /// control flow.
    fn cooperative_nth_largest(&mut self, n: NodeIndex, bound: &[IndexId]) -> String {
        let body = operands(&self.ir.graph, n)[0];
        self.nth_largest(n, bound, &mut |e: &mut Self, cand: &str, total: &str| {
            let (at_least, x) = (e.name("nge"), e.name("x"));
            e.w.line(format!("var {at_least}: u32 = 0u;"));
            e.open(format!(
                "for (var {x}: i32 = i32(lid); {x} < {total}; {x} += {WORKGROUP})"
            ));
            e.decompose(bound, &x);
            let b = e.val(body);
            e.w.line(format!(
                "if (lc_key({b}) >= {cand}) {{ {at_least} = {at_least} + 1u; }}"
            ));
            e.close();
            e.w.line("lc_red[lid] = 0.0f;");
            e.w.line(format!("lc_cnt[lid] = {at_least};"));
            e.w.line("_ = lc_tree_sum_count(lid);");
            "i32(lc_last_count)".to_string()
        })
    }

    /// Computes hoisted table `k` for the current row into the scratch slice.
    pub(super) fn table(&mut self, k: usize, n: NodeIndex, table_vars: &[IndexId]) {
        let node = self.ir.graph[n].clone();
        let Op::Reduce(kind, bound) = &node.op else {
            return;
        };
        let label = crate::ir::dot::op_label(self.ir, &node.op);
        self.w
            .line(format!("// hoisted: {label} {}", self.comment(n)));
        let size = self.count(table_vars);
        let off = self.m(Slot::Table {
            loss: self.li,
            table: k,
        });
        let checks = self.sched.hoisted[k].checks;
        // (Small tables of small rows are built one row per thread: see loss_fn.)
        // (Not a table built once per workgroup: the rows that read it are in another
        // block, and later work items, so it goes to scratch.)
        let per_workgroup = self.sched.hoisted[k].per_workgroup;
        if self.values.is_some()
            && table_vars.is_empty()
            && *kind != ReduceFn::Median
            && !checks
            && !per_workgroup
        {
            // One value, shared: every thread ends the tree holding it, so it stays in a
            // register (no scratch, no barrier to publish it).
            let r = self.cooperative_reduce(n, *kind, bound);
            let name = self.name("h");
            let value = if node.ty == Ty::Bool {
                format!("({r} != 0.0)")
            } else {
                r
            };
            self.w
                .line(format!("let {name} = {value}; {}", self.comment(n)));
            let d = self.depth();
            self.cache[d].insert(n, name);
            return;
        }
        let t = self.name("t");
        self.open(format!("for (var {t}: i32 = 0; {t} < {size}; {t}++)"));
        self.decompose(table_vars, &t);
        if checks {
            self.w.line("lc_fault = 0u;");
            self.w.line("lc_fault_at = 0u;");
        }
        self.quiet = checks;
        let result = if *kind == ReduceFn::Median {
            self.table_median(n, bound);
            let r = self.name("r");
            self.w.line(format!("let {r} = lc_median_result;"));
            r
        } else {
            self.cooperative_reduce(n, *kind, bound)
        };
        self.quiet = false;
        if checks {
            // The entry's failure: the highest code any thread noted, then the largest
            // index among the threads that noted it (its high 16 bits, then its low).
            let (code, hi, lo) = (self.name("fc"), self.name("fh"), self.name("fl"));
            self.w.line("lc_red[lid] = f32(lc_fault);");
            self.w.line(format!("let {code} = lc_tree(lid, 1u);"));
            self.w.line(format!(
                "lc_red[lid] = select(-1.0f, f32(lc_fault_at >> 16u), f32(lc_fault) == {code});"
            ));
            self.w.line(format!("let {hi} = lc_tree(lid, 1u);"));
            self.w.line(format!(
                "lc_red[lid] = select(-1.0f, f32(lc_fault_at & 0xffffu), f32(lc_fault) == {code} && f32(lc_fault_at >> 16u) == {hi});"
            ));
            self.w.line(format!("let {lo} = lc_tree(lid, 1u);"));
            self.open("if (lid == 0u)");
            self.w
                .line(format!("lc_scratch[slice + {off} + {t}] = {result};"));
            for (j, part) in [&code, &hi, &lo].iter().enumerate() {
                self.w.line(format!(
                    "lc_scratch[slice + {off} + {} * {size} + {t}] = {part};",
                    j + 1
                ));
            }
            self.close();
        } else {
            self.w.line(format!(
                "if (lid == 0u) {{ lc_scratch[slice + {off} + {t}] = {result}; }}"
            ));
        }
        self.close();
        self.w.line("storageBarrier();");
        self.w.line("workgroupBarrier();");
    }

    /// A reduction shared by the workgroup: each thread folds the values `lid, lid + 64,
    /// ...` of the binder space, then a tree combines the threads in a fixed order. Every
    /// thread ends with the result (an expression returned); call from uniform control
    /// flow.
    pub(super) fn cooperative_reduce(
        &mut self,
        n: NodeIndex,
        kind: ReduceFn,
        bound: &[IndexId],
    ) -> String {
        if kind == ReduceFn::NthLargest {
            return self.cooperative_nth_largest(n, bound);
        }
        let bound = bound.to_vec();
        let body = operands(&self.ir.graph, n)[0];
        let xs = self.count(&bound);
        let xn = self.name("xn");
        self.w.line(format!("let {xn} = {xs};"));
        let init = match kind {
            ReduceFn::All => "1.0f".to_string(),
            ReduceFn::Max => "-lc_inf()".to_string(),
            ReduceFn::Min => "lc_inf()".to_string(),
            ReduceFn::Prod => opaque_lit(1.0),
            _ => opaque_lit(0.0),
        };
        let bool_body = self.ir.graph[body].ty == Ty::Bool;
        let acc = self.name("acc");
        self.w.line(format!("var {acc}: f32 = {init};"));
        // Truth values are 0 or 1, never NaN: plain min/max suffice for all/any.
        let step = |b: String| {
            let as_f = if bool_body {
                format!("select(0.0f, 1.0f, {b})")
            } else {
                b
            };
            match kind {
                ReduceFn::Sum | ReduceFn::Mean => format!("{acc} = {acc} + {as_f};"),
                ReduceFn::Norm => format!("{acc} = {acc} + {as_f} * {as_f};"),
                ReduceFn::Prod => format!("{acc} = {acc} * {as_f};"),
                ReduceFn::Max | ReduceFn::Any if bool_body => {
                    format!("{acc} = max({acc}, {as_f});")
                }
                ReduceFn::Max | ReduceFn::Any => format!("{acc} = lc_max({acc}, {as_f});"),
                _ if bool_body => format!("{acc} = min({acc}, {as_f});"),
                _ => format!("{acc} = lc_min({acc}, {as_f});"),
            }
        };
        self.open("");
        if self.known_multiple_of_4(&bound) {
            // Four consecutive values per thread and iteration: contiguous reads load vec4s.
            let x4 = self.name("x");
            self.four_wide(&bound, &x4, "0", &xn, true, &mut |e: &mut Self| {
                let b = e.val(body);
                e.w.line(step(b));
            });
        } else {
            let x = self.name("x");
            let advance = self.counters(&bound, "i32(lid)", WORKGROUP);
            self.open(format!(
                "for (var {x}: i32 = i32(lid); {x} < {xn}; {x} += {WORKGROUP})"
            ));
            self.linear = Some((bound.clone(), x.clone()));
            let b = self.val(body);
            self.linear = None;
            self.w.line(step(b));
            for line in advance {
                self.w.line(line);
            }
            self.close();
        }
        self.close();
        self.w.line(format!("lc_red[lid] = {acc};"));
        let tk = match kind {
            ReduceFn::Max | ReduceFn::Any => 1,
            ReduceFn::Min | ReduceFn::All => 2,
            ReduceFn::Prod => 3,
            _ => 0,
        };
        let r = self.name("r");
        self.w.line(format!("let {r} = lc_tree(lid, {tk}u);"));
        match kind {
            ReduceFn::Mean => format!("{r} / {}", opaque(&format!("f32({xn})"))),
            ReduceFn::Norm => format!("sqrt({r})"),
            _ => r,
        }
    }

    /// A hoisted median, shared by the workgroup: each thread ranks the candidates
    /// `lid, lid + 64, ...` against every value; the values of rank ⌊(n−1)/2⌋ and ⌊n/2⌋
    /// come out of two max-reductions (NaN if any value is NaN), combined by
    /// `lc_median_of`.
    /// Leaves the result in `lc_median_result` (uniform: every thread reads the tree).
    pub(super) fn table_median(&mut self, n: NodeIndex, bound: &[IndexId]) {
        let body = operands(&self.ir.graph, n)[0];
        let total = self.count(bound);
        let (cnt, lo_v, hi_v) = (self.name("mn"), self.name("mlo"), self.name("mhi"));
        self.w.line(format!("let {cnt} = {total};"));
        self.w.line(format!("var {lo_v}: f32 = -lc_inf();"));
        self.w.line(format!("var {hi_v}: f32 = -lc_inf();"));
        let x = self.name("x");
        self.open(format!(
            "for (var {x}: i32 = i32(lid); {x} < {cnt}; {x} += {WORKGROUP})"
        ));
        self.decompose(bound, &x);
        let a = self.val(body);
        let (less, equal) = self.count_ranks(&a, body, bound);
        self.w.line(format!("let r1 = ({cnt} - 1) / 2;"));
        self.w.line(format!("let r2 = {cnt} / 2;"));
        self.open(format!("if (lc_isnan({a}))"));
        self.w.line(format!("{lo_v} = lc_nan();"));
        self.w.line(format!("{hi_v} = lc_nan();"));
        self.close();
        self.open("else");
        self.w.line(format!(
            "if ({less} <= r1 && r1 < {less} + {equal}) {{ {lo_v} = lc_max({lo_v}, {a}); }}"
        ));
        self.w.line(format!(
            "if ({less} <= r2 && r2 < {less} + {equal}) {{ {hi_v} = lc_max({hi_v}, {a}); }}"
        ));
        self.close();
        self.close();
        self.w.line(format!("lc_red[lid] = {lo_v};"));
        let (lo_r, hi_r) = (self.name("mlor"), self.name("mhir"));
        self.w.line(format!("let {lo_r} = lc_tree(lid, 1u);"));
        self.w.line(format!("lc_red[lid] = {hi_v};"));
        self.w.line(format!("let {hi_r} = lc_tree(lid, 1u);"));
        self.w.line(format!(
            "let lc_median_result = select(lc_median_of({lo_r}, {hi_r}), lc_nan(), {cnt} == 0);"
        ));
    }
}
