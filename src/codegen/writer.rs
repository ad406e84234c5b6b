//! A small structured writer for WGSL: lines at the right indentation, blocks that open
//! and close together. Generated code goes through it, never through ad-hoc pasting.

/// Indented text being built.
#[derive(Default)]
pub struct Writer {
    text: String,
    indent: usize,
    /// Per open block: whether its contents are dropped (a branch a specialised kernel
    /// knows it never takes, written only so that both variants allocate the same slots).
    mutes: Vec<bool>,
}

impl Writer {
    /// One line at the current indentation.
    pub fn line(&mut self, s: impl AsRef<str>) {
        if self.mutes.iter().any(|m| *m) {
            return;
        }
        for _ in 0..self.indent {
            self.text.push_str("    ");
        }
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }

    /// `header {`, then everything until [`Writer::close`] one level deeper.
    pub fn open(&mut self, header: impl AsRef<str>) {
        let h = header.as_ref();
        self.line(if h.is_empty() {
            "{".to_string()
        } else {
            format!("{h} {{")
        });
        self.indent += 1;
        self.mutes.push(false);
    }

    /// A block `{ ... }` whose contents are dropped when `mute` is set.
    pub fn open_muted(&mut self, mute: bool) {
        self.line("{");
        self.indent += 1;
        self.mutes.push(mute);
    }

    /// `}`
    pub fn close(&mut self) {
        self.indent = self.indent.saturating_sub(1);
        self.mutes.pop();
        self.line("}");
    }

    /// How many blocks are open around the next line: its brace depth in the output.
    pub fn depth(&self) -> usize {
        self.indent
    }

    /// Whether lines written now are dropped (inside a muted block).
    pub fn muted(&self) -> bool {
        self.mutes.iter().any(|m| *m)
    }

    /// Where the next line will go, to [`Writer::insert`] lines there later; `None` inside
    /// a muted block.
    pub fn mark(&self) -> Option<(usize, usize)> {
        (!self.mutes.iter().any(|m| *m)).then_some((self.text.len(), self.indent))
    }

    /// Lines inserted at a [`Writer::mark`], at its indentation (declarations a block
    /// turns out to need once its body is written).
    pub fn insert(&mut self, at: Option<(usize, usize)>, lines: &[String]) {
        let Some((pos, indent)) = at else { return };
        let mut text = String::new();
        for l in lines {
            for _ in 0..indent {
                text.push_str("    ");
            }
            text.push_str(l);
            text.push('\n');
        }
        self.text.insert_str(pos, &text);
    }

    /// A blank line.
    pub fn blank(&mut self) {
        self.line("");
    }

    /// Hand-written WGSL, spliced verbatim (the `shaders/` pieces).
    pub fn splice(&mut self, wgsl: &str) {
        self.text.push_str(wgsl);
        if !wgsl.ends_with('\n') {
            self.text.push('\n');
        }
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}
