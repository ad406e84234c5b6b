//! The fused kernel's bindings, in one table: the emitter declares them from it, the
//! manifest lists them from it, and a wgpu host builds its bind group layout from it
//! ([`Binding::is_uniform`], [`Binding::read_only`]) and binds the buffer each one views
//! ([`Binding::holds`]).

/// The bind group every binding of lossc's kernels is in.
pub const GROUP: u32 = 0;

/// The WGSL struct the parameter block is declared as: a uniform array must have a fixed
/// size, and lives in a struct (field `m`), hence [`super::wgsl::meta_ref`]'s spelling.
pub const META_STRUCT: &str = "LcMeta";

/// How a kernel may access a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A uniform buffer (read only, of fixed size).
    Uniform,
    /// A read-only storage buffer.
    Read,
    /// A read-write storage buffer.
    ReadWrite,
}

/// The buffer a binding views (two bindings may view the same one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// The parameter block: the layout's slots, as i32.
    Meta,
    /// Every input and param, f32, at the offsets the parameter block gives.
    Arena,
    /// Hoisted tables, one slice per workgroup.
    Scratch,
    /// The finished-workgroup counter, the error word and the partial-result slots.
    Sync,
    /// The results.
    Out,
    /// The unfused baseline's intermediate values (see [`super::unfused`]).
    Values,
    /// A backward kernel's view of its forward kernel's results ([`Holds::Out`]).
    Saved,
    /// A backward kernel's gradients.
    Grads,
}

/// One binding of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Its binding number in [`GROUP`].
    pub number: u32,
    /// The WGSL variable.
    pub name: &'static str,
    /// How the kernel accesses it.
    pub access: Access,
    /// The WGSL type of its elements.
    pub element: &'static str,
    /// The buffer it views.
    pub holds: Holds,
    /// What it holds, for the manifest's readers.
    pub role: &'static str,
    /// A comment written above its WGSL declaration, if any.
    pub note: Option<&'static str>,
}

/// The fused kernel's bindings, by number.
pub const BINDINGS: [Binding; 6] = [
    Binding {
        number: 0,
        name: "lc_meta",
        access: Access::Uniform,
        element: "vec4<i32>",
        holds: Holds::Meta,
        role: "parameter block: the slots below, as i32",
        note: None,
    },
    Binding {
        number: 1,
        name: "lc_arena",
        access: Access::Read,
        element: "f32",
        holds: Holds::Arena,
        role: "every input (once per name) and every param of every loss, f32, row-major, at the offsets the `offset` slots give",
        note: None,
    },
    Binding {
        number: 2,
        name: "lc_scratch",
        access: Access::ReadWrite,
        element: "f32",
        holds: Holds::Scratch,
        role: "hoisted tables: `slice_size` f32 per workgroup",
        note: None,
    },
    Binding {
        number: 3,
        name: "lc_sync",
        access: Access::ReadWrite,
        element: "atomic<u32>",
        holds: Holds::Sync,
        role: "[0] finished-workgroup counter, [1] error word, then (sum bits, count) per work item, then one word per site (see `sites`); initialise to 0, 0, then 0xffffffff per item slot, then 0 per site; the kernel restores the counter and the item slots itself, the host zeroes the error word and the site words before each dispatch",
        note: None,
    },
    Binding {
        number: 4,
        name: "lc_out",
        access: Access::ReadWrite,
        element: "f32",
        holds: Holds::Out,
        role: "per loss i: loss at 3i, weight at 3i+1, weighted at 3i+2; the factory total at 3n; the count of loss i's counted elements (as f32) at 3n + 1 + i (4n + 1 floats)",
        note: None,
    },
    Binding {
        number: 5,
        name: "lc_arena4",
        access: Access::Read,
        element: "vec4<f32>",
        holds: Holds::Arena,
        role: "the same arena buffer again, as vec4s (pad the arena to a multiple of 4 floats)",
        note: Some("The arena again, four floats at a time (for aligned contiguous reads)."),
    },
];

/// A backward kernel's bindings: the forward kernel's, with the results read (their
/// counts) instead of written, and the gradient buffer.
pub const BACKWARD_BINDINGS: [Binding; 7] = [
    BINDINGS[0],
    BINDINGS[1],
    BINDINGS[2],
    Binding {
        role: "[1] error word (reads the backward kernel discards never raise it, since the forward kernel checked every read it uses), then one word per site; the other words are unused",
        ..BINDINGS[3]
    },
    Binding {
        number: 4,
        name: "lc_saved",
        access: Access::Read,
        element: "f32",
        holds: Holds::Saved,
        role: "the forward kernel's results (its `lc_out`): the count of loss i's counted elements at 3n + 1 + i",
        note: Some("The forward kernel's results: the counts its means divided by."),
    },
    BINDINGS[5],
    Binding {
        number: 6,
        name: "lc_grad",
        access: Access::ReadWrite,
        element: "f32",
        holds: Holds::Grads,
        role: "each backward loss's gradient, row-major in its input's shape, at the offset its `grad_offset` slot gives; every element written once per dispatch",
        note: None,
    },
];

impl Binding {
    /// Whether it is a uniform buffer (else a storage buffer).
    pub fn is_uniform(&self) -> bool {
        self.access == Access::Uniform
    }

    /// Whether the kernel only reads it (a uniform, or read-only storage).
    pub fn read_only(&self) -> bool {
        self.access != Access::ReadWrite
    }

    /// The WGSL type of its variable: a runtime-sized array in storage; for a uniform,
    /// [`META_STRUCT`].
    pub fn wgsl_type(&self) -> String {
        match self.access {
            Access::Uniform => META_STRUCT.to_string(),
            Access::Read | Access::ReadWrite => format!("array<{}>", self.element),
        }
    }

    /// Its WGSL address space and access mode, as in `var<...>`.
    fn address_space(&self) -> &'static str {
        match self.access {
            Access::Uniform => "uniform",
            Access::Read => "storage, read",
            Access::ReadWrite => "storage, read_write",
        }
    }

    /// Its WGSL declaration, one line.
    pub fn declaration(&self) -> String {
        format!(
            "@group({GROUP}) @binding({}) var<{}> {}: {};",
            self.number,
            self.address_space(),
            self.name,
            self.wgsl_type()
        )
    }

    /// Its type as the manifest states it, a uniform's array holding `len` elements.
    pub fn manifest_type(&self, len: usize) -> String {
        match self.access {
            Access::Uniform => format!("uniform array<{}, {len}>", self.element),
            Access::Read | Access::ReadWrite => {
                format!("{}: array<{}>", self.address_space(), self.element)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_in_order_and_the_arena_viewed_twice() {
        for (i, b) in BINDINGS.iter().enumerate() {
            assert_eq!(b.number as usize, i);
        }
        let arena: Vec<&str> = BINDINGS
            .iter()
            .filter(|b| b.holds == Holds::Arena)
            .map(|b| b.name)
            .collect();
        assert_eq!(arena, ["lc_arena", "lc_arena4"]);
        assert!(BINDINGS.iter().filter(|b| b.is_uniform()).count() == 1);
    }

    #[test]
    fn declarations_and_manifest_types() {
        assert_eq!(
            BINDINGS[0].declaration(),
            "@group(0) @binding(0) var<uniform> lc_meta: LcMeta;"
        );
        assert_eq!(
            BINDINGS[3].declaration(),
            "@group(0) @binding(3) var<storage, read_write> lc_sync: array<atomic<u32>>;"
        );
        assert_eq!(BINDINGS[0].manifest_type(7), "uniform array<vec4<i32>, 7>");
        assert_eq!(
            BINDINGS[5].manifest_type(7),
            "storage, read: array<vec4<f32>>"
        );
        assert!(BINDINGS[1].read_only() && !BINDINGS[2].read_only());
    }
}
