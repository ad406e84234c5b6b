//! lossc inside other frameworks' training loops, each behind a cargo feature so that
//! the plain build needs none of them: a compiled factory as an op of Burn on its wgpu
//! tensors (`burn`), and as a Python extension module on NumPy arrays (`python`), which
//! the Python package turns into a PyTorch autograd function.

#[cfg(feature = "burn")]
pub mod burn;

#[cfg(feature = "python")]
pub mod python;
