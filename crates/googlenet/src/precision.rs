//! The numbers the network's convolutions multiply, and the kernel path that runs them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::{KernelPrecision, Kernels, ISA_ENV};
use googlenet_kernels::Bf16Unit;

/// The precision of the convolutions' products; everything else (bias, ReLU, pools, LRN, the
/// classifier, softmax) stays f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 throughout: the default, and the reference the others are measured against.
    #[default]
    F32,
    /// bf16 weights and activations with f32 sums. It runs where the kernel multiplies bf16 in
    /// hardware (AMX's tiles, AVX512-BF16's dot products); elsewhere a classifier asked for it
    /// runs at f32 and says so, unless [`ISA_ENV`] forces a kernel path, which then runs bf16's
    /// numbers by widening them to f32 (for measuring them: no faster than f32).
    Bf16,
    /// Weights as signed bytes (scaled per output channel), activations as 7-bit codes (scaled
    /// per image and layer), exact integer sums: every convolution that follows a ReLU.
    Int8,
}

impl Precision {
    /// Every precision, by name.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// Its name: `f32`, `bf16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// A precision by its [`Precision::name`].
    fn from_str(text: &str) -> Result<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == text).ok_or_else(|| {
            Error::setting("precision", format!("`{text}` is not f32, bf16 or int8"))
        })
    }
}

/// What a load runs: the operators and the precision they run at, and the note that says why
/// that is not the precision asked for, where it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) kernels: Kernels,
    pub(crate) precision: Precision,
    pub(crate) note: Option<String>,
}

/// The operators and precision for `asked` on this CPU, with the path [`ISA_ENV`] forces.
pub(crate) fn resolve(asked: Precision) -> Result<Resolved> {
    let kernels = Kernels::from_env().map_err(|problem| Error::setting(ISA_ENV, problem))?;
    let forced = std::env::var_os(ISA_ENV).is_some();
    let at = |precision, kernels| Ok(Resolved { kernels, precision, note: None });
    let fallback = |why: String| {
        let note = format!("precision {asked}: {why}; running at f32");
        Ok(Resolved { kernels, precision: Precision::F32, note: Some(note) })
    };
    let tract = |precision: Precision| {
        let why = format!(
            "{precision} runs on the project's kernels, not {ISA_ENV}=tract's f32 operators"
        );
        Err(Error::setting("precision", why))
    };
    match (asked, kernels) {
        (Precision::F32, _) => at(Precision::F32, kernels),
        (Precision::Bf16, Kernels::Project(Some(kernel), _))
            if forced || kernel.bf16_unit() != Bf16Unit::Widening =>
        {
            at(Precision::Bf16, Kernels::Project(Some(kernel), KernelPrecision::Bf16))
        }
        (Precision::Bf16, Kernels::Tract) => tract(asked),
        (Precision::Bf16, _) => {
            let why = "it needs AMX or AVX512-BF16, or a path forced by";
            fallback(format!(
                "no bf16 kernel for this CPU ({} path: {why} {ISA_ENV})",
                kernels.name()
            ))
        }
        (Precision::Int8, Kernels::Project(Some(kernel), _)) => {
            at(Precision::Int8, Kernels::Project(Some(kernel), KernelPrecision::Int8))
        }
        (Precision::Int8, Kernels::Project(None, _)) => {
            fallback("no int8 kernel for this CPU (it needs AVX2 and FMA)".into())
        }
        (Precision::Int8, Kernels::Tract) => tract(asked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_parse_by_name_and_nothing_else() {
        for precision in Precision::ALL {
            assert_eq!(precision.name().parse::<Precision>().unwrap(), precision);
        }
        let err = "fp16".parse::<Precision>().unwrap_err();
        assert_eq!(err.to_string(), "precision `fp16` is not f32, bf16 or int8");
    }

    #[test]
    fn bf16_runs_where_the_cpu_multiplies_it_and_elsewhere_at_f32_with_a_note() {
        // The suite runs without `GOOGLENET_ISA`: the fastest kernel of this CPU.
        let resolved = resolve(Precision::Bf16).unwrap();
        let hardware = match resolved.kernels {
            Kernels::Project(Some(kernel), _) => kernel.bf16_unit() != Bf16Unit::Widening,
            _ => false,
        };
        if hardware {
            assert_eq!((resolved.precision, resolved.note), (Precision::Bf16, None));
        } else {
            assert_eq!(resolved.precision, Precision::F32);
            let note = resolved.note.unwrap();
            assert!(note.starts_with("precision bf16: no bf16 kernel for this CPU"), "{note}");
        }
        assert_eq!(resolve(Precision::F32).unwrap().note, None);
        assert_eq!(resolve(Precision::Int8).unwrap().precision, Precision::Int8);
    }
}
