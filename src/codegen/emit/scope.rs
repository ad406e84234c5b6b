//! The emitter's scopes: WGSL blocks and the values cached in them, fresh names, the
//! WGSL names bound to index variables, the parameter block's slots, and what a kernel
//! specialised to one problem knows (configuration choices, and so which tables it needs).

use std::collections::HashMap;

use petgraph::stable_graph::NodeIndex;

use super::{LossEmitter, MAX_BLOCK_DEPTH, TooDeep};
use crate::codegen::analysis;
use crate::codegen::layout::Slot;
use crate::codegen::wgsl::meta_value;
use crate::ice::InternalError;
use crate::ir::{IndexId, Op, ParamId, operands};

impl LossEmitter<'_> {
    pub(super) fn depth(&self) -> usize {
        self.cache.len() - 1
    }

    pub(super) fn name(&mut self, prefix: &str) -> String {
        *self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    pub(super) fn open(&mut self, header: impl AsRef<str>) {
        self.w.open(header);
        self.cache.push(HashMap::new());
        self.note_depth();
    }

    /// Notes the first node whose code opens a block deeper than WGSL compilers accept
    /// ([`MAX_BLOCK_DEPTH`]), so that the kernel is refused with its place.
    fn note_depth(&mut self) {
        if self.w.depth() > MAX_BLOCK_DEPTH && self.too_deep.is_none() {
            let at = self
                .at
                .map(|n| self.ir.graph[n].span)
                .map(|span| self.ir.origin.locate(span));
            self.too_deep = Some(TooDeep {
                loss: self.ir.name.clone(),
                at,
            });
        }
    }

    /// `if (cond) {`; in a kernel specialised to sizes where the condition is `known`,
    /// a plain block, its contents dropped when the condition is false.
    pub(super) fn open_if(&mut self, cond: String, known: Option<bool>) {
        match known {
            None => self.open(format!("if ({cond})")),
            Some(taken) => {
                self.w.open_muted(!taken);
                self.cache.push(HashMap::new());
                self.note_depth();
            }
        }
    }

    /// The `else` of [`Self::open_if`] with the same `known`.
    pub(super) fn open_else(&mut self, known: Option<bool>) {
        match known {
            None => self.open("else"),
            Some(taken) => {
                self.w.open_muted(taken);
                self.cache.push(HashMap::new());
                self.note_depth();
            }
        }
    }

    pub(super) fn close(&mut self) {
        self.w.close();
        self.cache.pop();
        let d = self.cache.len();
        for stack in self.binds.values_mut() {
            while stack.last().is_some_and(|(bd, _)| *bd >= d) {
                stack.pop();
            }
        }
    }

    pub(super) fn bind(&mut self, v: IndexId, name: String) {
        let d = self.depth();
        self.binds.entry(v).or_default().push((d, name));
    }

    pub(super) fn var(&mut self, v: IndexId) -> String {
        match self.binds.get(&v).and_then(|s| s.last()) {
            Some((_, n)) => n.clone(),
            None => {
                self.bug = Some(InternalError::in_loss(
                    &self.ir.name,
                    Some(self.ir.origin.locate(self.ir.indices[v].span)),
                    format!(
                        "index `{}` is unbound in generated code",
                        self.ir.indices[v].name
                    ),
                ));
                "0".into()
            }
        }
    }

    pub(super) fn lookup(&self, n: NodeIndex) -> Option<String> {
        let free = &self.ir.graph[n].free;
        for d in (0..self.cache.len()).rev() {
            if let Some(name) = self.cache[d].get(&n) {
                // Valid only if none of its indices was rebound deeper since.
                if free.iter().all(|v| {
                    self.binds
                        .get(v)
                        .and_then(|s| s.last())
                        .is_none_or(|(bd, _)| *bd <= d)
                }) {
                    return Some(name.clone());
                }
            }
        }
        None
    }

    pub(super) fn comment(&self, n: NodeIndex) -> String {
        let at = self.ir.origin.locate(self.ir.graph[n].span);
        format!("// {}", crate::codegen::wgsl::comment_text(&at))
    }

    pub(super) fn m(&mut self, s: Slot) -> String {
        let i = self.slot_id(s);
        meta_value(i, self.values)
    }

    /// Slot `s` read from the uniform block even in a specialised kernel: a value the
    /// host may change between runs without a new pipeline (the anneal factors).
    pub(super) fn m_live(&mut self, s: Slot) -> String {
        let i = self.slot_id(s);
        super::super::wgsl::meta_ref(i)
    }

    fn slot_id(&mut self, s: Slot) -> crate::codegen::layout::SlotId {
        if self.frozen && self.layout.get(&s).is_none() {
            self.fail(format!(
                "the specialised kernel uses the slot {s:?}, which the generic kernel does not have"
            ));
        }
        self.layout.slot(s)
    }

    /// Records a compiler bug met while writing this loss, located at the node being
    /// written (or the loss); the first one is reported.
    pub(super) fn fail(&mut self, message: String) {
        if self.bug.is_some() {
            return;
        }
        let span = self.at.map_or(self.ir.span, |n| self.ir.graph[n].span);
        self.bug = Some(InternalError::in_loss(
            &self.ir.name,
            Some(self.ir.origin.locate(span)),
            message,
        ));
    }

    pub(super) fn lo(&mut self, v: IndexId) -> String {
        self.m(Slot::Lo {
            loss: self.li,
            index: v,
        })
    }

    pub(super) fn ext(&mut self, v: IndexId) -> String {
        self.m(Slot::Extent {
            loss: self.li,
            index: v,
        })
    }

    /// A slot's value, in a kernel specialised to sizes (and once the slot exists).
    pub(super) fn known(&self, s: &Slot) -> Option<i64> {
        self.layout.value(s, self.values?).map(i64::from)
    }

    /// The value of an enum test (or its negation), in a kernel specialised to sizes.
    pub(super) fn known_truth(&self, n: NodeIndex) -> Option<bool> {
        let variant = |p: ParamId| {
            self.known(&Slot::Enum {
                loss: self.li,
                param: self.ir.params[p].name.clone(),
            })
        };
        analysis::known_truth(self.ir, n, &variant)
    }

    /// [`Self::known_truth`] of a select's condition.
    pub(super) fn known_truth_peek(&self, n: NodeIndex) -> Option<bool> {
        match self.ir.graph[n].op {
            Op::Select => self.known_truth(operands(&self.ir.graph, n)[0]),
            _ => None,
        }
    }

    /// Whether a hoisted reduction is needed at all: in a specialised kernel, tables only
    /// reachable through the untaken branch of a known configuration choice are not.
    pub(super) fn needed(&self, h: NodeIndex) -> bool {
        if self.values.is_none() {
            return true;
        }
        let mut roots = self.ir.element_roots();
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = roots.pop() {
            if n == h {
                return true;
            }
            if !seen.insert(n) {
                continue;
            }
            let args = operands(&self.ir.graph, n);
            match (&self.ir.graph[n].op, self.known_truth_peek(n)) {
                (Op::Select, Some(taken)) => roots.push(if taken { args[1] } else { args[2] }),
                _ => roots.extend(args),
            }
        }
        false
    }

    /// Whether hoisted table `k` must be built: some per-element stage reaches it, or a
    /// reduction that reads it in its place ([`crate::codegen::schedule::Hoisted::same_as`]).
    pub(super) fn table_needed(&self, k: usize) -> bool {
        self.sched
            .hoisted
            .iter()
            .enumerate()
            .filter(|(j, h)| *j == k || h.same_as == Some(k))
            .any(|(_, h)| self.needed(h.node))
    }
}
