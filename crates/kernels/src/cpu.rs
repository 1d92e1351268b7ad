//! What this CPU can run: the instruction-set levels of the kernels ([`Isa`]), the best one,
//! detected once, and what follows from it for the loader (the x4 layouts) and the fast path
//! (the bf16 dot product).

#[cfg(target_arch = "x86_64")]
use crate::x86;
use crate::DType;
use std::sync::OnceLock;

/// The dtype the loader gives a `rows x cols` matrix of `plain` blocks: its x4 layout
/// (`frugal_quant::x4`) where this CPU runs the AVX-512 quantized kernels (which read it) and
/// the shape fits, else `plain`.
pub fn layout_for(plain: DType, rows: usize, cols: usize) -> DType {
    match frugal_tensor::x4::x4_of(plain) {
        Some(x4) if frugal_tensor::x4::fits(rows, cols) && reads_x4() => x4,
        _ => plain,
    }
}

/// An instruction-set level the kernels can run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, no SIMD intrinsics.
    Scalar,
    /// AVX2 + FMA + F16C, 8 f32 lanes.
    Avx2,
    /// AVX-512F (+BW, VL), 16 f32 lanes.
    Avx512,
    /// AVX-512 with VNNI (`vpdpbusd`, `vpdpwssd`): quantized products use it; float products are
    /// those of [`Isa::Avx512`].
    Avx512Vnni,
}

impl Isa {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Whether this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::Avx512::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::Avx512Vnni::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level this CPU supports, slowest first.
    pub fn supported() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }
}

/// The best instruction-set level of this CPU, detected once.
pub fn isa() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| Isa::supported().into_iter().last().unwrap_or(Isa::Scalar))
}

/// Whether this CPU's quantized kernels read the x4 layouts [`DType::Q4_0X4`] and
/// [`DType::Q8_0X4`] (AVX-512; elsewhere such a matrix would go through the scalar job, so the
/// loader keeps the plain blocks).
pub fn reads_x4() -> bool {
    matches!(isa(), Isa::Avx512 | Isa::Avx512Vnni)
}

/// Whether [`crate::matmul_bf16_fast`] really takes the bf16 dot-product path on this CPU
/// (AVX512_BF16 present) rather than falling back to [`crate::matmul`].
pub fn has_bf16_dot() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            x86::Avx512Bf16::detect().is_some()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}
