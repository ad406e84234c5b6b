//! Loops over index variables: counts of assignments, linear indices decomposed into
//! indices or advanced as counters with carries, plain nested loops, and the four-wide
//! loops in which each iteration takes four consecutive values.

use super::{LossEmitter, WORKGROUP};
use crate::codegen::layout::Slot;
use crate::ir::IndexId;

impl LossEmitter<'_> {
    /// The number of assignments of `vars`, as an i32 expression.
    pub(super) fn count(&mut self, vars: &[IndexId]) -> String {
        if vars.is_empty() {
            return "1".into();
        }
        let parts: Vec<String> = vars.iter().map(|v| self.ext(*v)).collect();
        format!("({})", parts.join(" * "))
    }

    /// Binds `vars` from a row-major linear index held in `linear`. (Divisors are at least
    /// 1: with an empty range the code never runs, but a literal zero divisor would not
    /// compile.)
    pub(super) fn decompose(&mut self, vars: &[IndexId], linear: &str) {
        if vars.is_empty() {
            return;
        }
        for (v, n) in self.split(vars, linear, false) {
            self.bind(v, n);
        }
    }

    /// Splits the row-major index `linear` into the values of `vars` (last first), each in
    /// a fresh `let`, or with `mutable` a `var`; returns their names, in `vars`' order.
    fn split(&mut self, vars: &[IndexId], linear: &str, mutable: bool) -> Vec<(IndexId, String)> {
        let q = self.name("q");
        self.w.line(format!("var {q}: i32 = {linear};"));
        let mut names = Vec::new();
        for v in vars.iter().rev() {
            let (lo, ext) = (self.lo(*v), self.ext(*v));
            let n = self.name(&format!("{}{v}_", if mutable { "c" } else { "i" }));
            let decl = if mutable {
                format!("var {n}: i32")
            } else {
                format!("let {n}")
            };
            self.w.line(format!("{decl} = {lo} + {q} % max({ext}, 1);"));
            self.w.line(format!("{q} = {q} / max({ext}, 1);"));
            names.push((*v, n));
        }
        names.reverse();
        names
    }

    /// Binds `vars` to mutable counters starting at the row-major index `start`, and
    /// returns how to advance them by `stride` (a multiple-digit add with carries, so that
    /// the loop does no division: GPUs and CPU SIMD lack fast integer division).
    pub(super) fn counters(&mut self, vars: &[IndexId], start: &str, stride: usize) -> Vec<String> {
        self.counters_by(vars, start, &[stride])
            .pop()
            .unwrap_or_default()
    }

    /// [`Self::counters`] with several strides: one list of advancing lines per stride.
    pub(super) fn counters_by(
        &mut self,
        vars: &[IndexId],
        start: &str,
        strides: &[usize],
    ) -> Vec<Vec<String>> {
        let (names, out) = self.counter_set(vars, start, strides);
        for (v, n) in names {
            self.bind(v, n);
        }
        out
    }

    /// Mutable counters for `vars` starting at the row-major index `start`, not bound:
    /// their names, and how to advance them by each of `strides`.
    fn counter_set(
        &mut self,
        vars: &[IndexId],
        start: &str,
        strides: &[usize],
    ) -> (Vec<(IndexId, String)>, Vec<Vec<String>>) {
        if vars.is_empty() {
            return (vec![], strides.iter().map(|_| vec![]).collect());
        }
        // Each stride's digits in the mixed radix of the extents, once.
        let mut digits_by: Vec<Vec<String>> = Vec::new();
        for stride in strides {
            let digits: Vec<String> = vars.iter().map(|_| self.name("d")).collect();
            let rest = self.name("r");
            self.w.line(format!("var {rest}: i32 = {stride};"));
            for (v, d) in vars.iter().zip(&digits).rev() {
                let ext = self.ext(*v);
                self.w.line(format!("let {d} = {rest} % max({ext}, 1);"));
                self.w.line(format!("{rest} = {rest} / max({ext}, 1);"));
            }
            digits_by.push(digits);
        }
        let names = self.split(vars, start, true);
        let mut out = Vec::new();
        for digits in &digits_by {
            // In braces: the same advance may be written more than once in a block.
            let mut advance = vec!["{".to_string()];
            let carry = self.name("carry");
            advance.push(format!("    var {carry}: i32 = 0;"));
            for ((v, n), d) in names.iter().zip(digits).rev() {
                let (lo, ext) = (self.lo(*v), self.ext(*v));
                advance.push(format!("    {n} = {n} + {d} + {carry};"));
                advance.push(format!("    {carry} = select(0, 1, {n} >= {lo} + {ext});"));
                advance.push(format!("    {n} = {n} - {carry} * {ext};"));
            }
            advance.push("}".to_string());
            out.push(advance);
        }
        (names, out)
    }

    /// Opens one loop per index over its range, binding each; close with [`Self::close`].
    pub(super) fn open_loops(&mut self, vars: &[IndexId]) {
        for v in vars {
            let (lo, ext) = (self.lo(*v), self.ext(*v));
            let x = self.name(&format!("i{v}_"));
            self.open(format!(
                "for (var {x}: i32 = {lo}; {x} < {lo} + {ext}; {x}++)"
            ));
            self.bind(*v, x);
        }
    }

    /// A loop over `vars` from the linear index `start` to `end` in which each thread
    /// takes four consecutive values (`{x4} + 0..3`) per iteration, so that aligned
    /// contiguous reads load one vec4 each; `each` writes the code for one value. With
    /// `shared`, the workgroup's threads interleave (thread `lid` starts at `4 * lid` and
    /// steps by 256); otherwise the current thread walks every value alone.
    pub(super) fn four_wide(
        &mut self,
        vars: &[IndexId],
        x4: &str,
        start: &str,
        end: &str,
        shared: bool,
        each: &mut dyn FnMut(&mut Self),
    ) {
        let (first, step) = if shared {
            (format!("{start} + 4 * i32(lid)"), 4 * WORKGROUP)
        } else {
            (start.to_string(), 4)
        };
        let adv = self.counters_by(vars, &first, &[1, step - 3]);
        self.open(format!(
            "for (var {x4}: i32 = {first}; {x4} < {end}; {x4} += {step})"
        ));
        let top = self.w.mark();
        let outer = (
            self.linear.take(),
            self.lane.take(),
            self.shared_loads.replace((self.depth(), Vec::new())),
        );
        for u in 0..4 {
            self.open("");
            self.linear = Some((vars.to_vec(), format!("({x4} + {u})")));
            self.lane = Some((x4.to_string(), u));
            self.four_wide_depth += 1;
            each(self);
            self.four_wide_depth -= 1;
            self.lane = None;
            self.linear = None;
            self.close();
            for line in &adv[if u < 3 { 0 } else { 1 }] {
                self.w.line(line);
            }
        }
        self.end_four_wide(top, outer);
        self.close();
    }

    /// A loop over the `count` assignments of `vars` (row-major) taken in the order of a
    /// workgroup's shared loop ([`super::reduce`]'s cooperative reductions): the values are
    /// cut into blocks of `width` (4 when the shared loop is four-wide, else 1), block `b`
    /// belongs to lane `b mod 64`, and the loop walks lane 0's blocks, then lane 1's, and
    /// so on. `each` writes the code for one value; `lane_end` the lines that close a lane
    /// (the lane's number in `{lane}`). So one thread folds the values exactly as the 64
    /// threads of a workgroup fold them, each its lane, and as `lc_tree` combines the
    /// lanes. As many iterations as blocks; the index counters advance by carries, by
    /// `64 × width` within a lane and from one lane's first block to the next's.
    pub(super) fn lane_major(
        &mut self,
        vars: &[IndexId],
        width: usize,
        count: &str,
        each: &mut dyn FnMut(&mut Self),
        lane_end: &dyn Fn(&str) -> Vec<String>,
    ) {
        let (lane, block, blocks) = (self.name("lane"), self.name("blk"), self.name("nb"));
        self.w.line(format!("let {blocks} = {count} / {width};"));
        self.w.line(format!("var {lane}: i32 = 0;"));
        self.w.line(format!("var {block}: i32 = 0;"));
        let jump = width * WORKGROUP - (width - 1);
        // The first value of the current lane, and of the next one.
        let (firsts, next) = self.counter_set(vars, "0", &[width]);
        let firsts: Vec<String> = firsts.into_iter().map(|(_, n)| n).collect();
        let adv = self.counters_by(vars, "0", &[1, jump]);
        let p = self.name("p");
        self.open(format!("for (var {p}: i32 = 0; {p} < {blocks}; {p}++)"));
        let x4 = self.name("x");
        self.w.line(format!("let {x4} = {block} * {width};"));
        let top = self.w.mark();
        // Only a four-wide body shares vec4 loads (declared at its top once it is written).
        let loads = (width == 4).then(|| (self.depth(), Vec::new()));
        let outer = (
            self.linear.take(),
            self.lane.take(),
            std::mem::replace(&mut self.shared_loads, loads),
        );
        for u in 0..width {
            self.open("");
            self.linear = Some((vars.to_vec(), format!("({x4} + {u})")));
            if width == 4 {
                self.lane = Some((x4.clone(), u));
                self.four_wide_depth += 1;
            }
            each(self);
            if width == 4 {
                self.four_wide_depth -= 1;
            }
            self.lane = None;
            self.linear = None;
            self.close();
            if u + 1 < width {
                for line in &adv[0] {
                    self.w.line(line);
                }
            }
        }
        self.end_four_wide(top, outer);
        self.w.line(format!("{block} = {block} + {WORKGROUP};"));
        self.open(format!("if ({block} < {blocks})"));
        for line in &adv[1] {
            self.w.line(line);
        }
        self.close();
        self.open("else");
        for line in lane_end(&lane) {
            self.w.line(line);
        }
        self.w.line(format!("{lane} = {lane} + 1;"));
        self.w.line(format!("{block} = {lane};"));
        for line in &next[0] {
            self.w.line(line);
        }
        for (v, first) in vars.iter().zip(&firsts) {
            let running = self.var(*v);
            self.w.line(format!("{running} = {first};"));
        }
        self.close();
        self.close();
    }

    /// Whether, in a kernel specialised to sizes, the number of assignments of `vars` is a
    /// positive multiple of 4 (a loop over them can be four-wide). Allocates the ranges'
    /// slots in the generic kernel too, so that both lay out the same slots whichever
    /// loop follows.
    pub(super) fn known_multiple_of_4(&mut self, vars: &[IndexId]) -> bool {
        let mut known = Some(1i64);
        for v in vars {
            self.lo(*v);
            self.ext(*v);
            let e = self.known(&Slot::Extent {
                loss: self.li,
                index: *v,
            });
            known = known.zip(e).map(|(a, e)| a * e);
        }
        !vars.is_empty() && known.is_some_and(|n| n >= 4 && n % 4 == 0)
    }

    /// `for (e = start; e < end; e += stride)` over the elements, one at a time: the
    /// stages for each, with the element indices advanced by carries.
    pub(super) fn element_loop(&mut self, ev: &[IndexId], start: &str, end: &str, stride: usize) {
        let advance = self.counters(ev, start, stride);
        self.open(format!(
            "for (var e: i32 = {start}; e < {end}; e += {stride})"
        ));
        self.linear = Some((ev.to_vec(), "e".into()));
        self.element();
        self.linear = None;
        for line in advance {
            self.w.line(line);
        }
        self.close();
    }

    /// Ends a four-wide loop's body: declares at `top` the vec4 loads its four elements
    /// shared, and gives back the enclosing loop's state (`outer`).
    fn end_four_wide(&mut self, top: Option<(usize, usize)>, outer: FourWideOuter) {
        let loads = self.shared_loads.take().map(|(_, l)| l).unwrap_or_default();
        let lets: Vec<String> = loads
            .iter()
            .map(|l| format!("let {} = {}; {}", l.name, l.load, l.comment))
            .collect();
        self.w.insert(top, &lets);
        (self.linear, self.lane, self.shared_loads) = outer;
    }
}

/// The loop state a four-wide loop replaces while its body is written: the linear index,
/// the lane, and the shared loads of an enclosing four-wide loop.
type FourWideOuter = (
    Option<(Vec<IndexId>, String)>,
    Option<(String, usize)>,
    Option<(usize, Vec<super::SharedLoad>)>,
);
