//! No code: this crate's manifest declares the features of dependencies that the `googlenet`
//! binary and the Python extension share with tract, so that both builds resolve them alike
//! and reuse one compiled tract.
