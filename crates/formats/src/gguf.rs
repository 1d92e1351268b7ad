//! GGUF (llama.cpp's format, versions 2 and 3): what the file says and where its tensors lie,
//! read from the header alone, every field checked. The one place for GGUF's constants (value
//! and tensor type ids, alignment), shared by the reader here and the writer (`gguf_write.rs`).
//! The reader knows no architecture: metadata is read through typed getters ([`Gguf::uint`],
//! [`Gguf::float`], [`Gguf::array`], ...) by the model's architecture (its config and tensor
//! names) and the tokenizer (its vocabulary).
//!
//! Layout (little-endian): `GGUF`, version u32, tensor count u64, metadata count u64, the
//! metadata (key string, value type u32, value), the tensor directory (name string, n_dims u32,
//! n_dims u64 dims innermost first, type u32, offset u64 relative to the data section), then
//! the data section at the next multiple of `general.alignment` (32 by default). A string is a
//! u64 length and its bytes. Version 1 (u32 counts and lengths) is refused.
//!
//! Tensors are used in place from the map: their dims are reversed into row-major shapes (GGUF
//! lists `ne[0]`, the row length, first) and their bytes are the file's blocks, which frugal's
//! kernels read as they are (unaligned loads), so nothing is repacked. A tensor whose offset is
//! not a multiple of the alignment is refused (the file is not valid GGUF: llama.cpp refuses it
//! too), as is any field that would put a tensor outside the file or over another.

use super::{MappedFile, StoredDType, TensorIndex, TensorInfo};
use anyhow::{bail, Context, Result};
use frugal_tensor::DType;
use std::collections::BTreeMap;
use std::path::Path;

/// The file's first four bytes.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// Data alignment when `general.alignment` is absent (GGUF's default).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Metadata value type ids.
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// ggml's tensor types frugal knows: (id, name, the dtype it reads them as), as
/// `ggml/include/ggml.h` numbers them. Their block sizes are the dtypes' ([`DType::block_len`],
/// [`DType::block_bytes`]); ids not here are refused by name or number.
const GGML_TYPES: &[(u32, &str, Option<DType>)] = &[
    (0, "F32", Some(DType::F32)),
    (1, "F16", Some(DType::F16)),
    (2, "Q4_0", Some(DType::Q4_0)),
    (3, "Q4_1", Some(DType::Q4_1)),
    (6, "Q5_0", Some(DType::Q5_0)),
    (7, "Q5_1", Some(DType::Q5_1)),
    (8, "Q8_0", Some(DType::Q8_0)),
    (9, "Q8_1", None),
    (10, "Q2_K", Some(DType::Q2_K)),
    (11, "Q3_K", Some(DType::Q3_K)),
    (12, "Q4_K", Some(DType::Q4_K)),
    (13, "Q5_K", Some(DType::Q5_K)),
    (14, "Q6_K", Some(DType::Q6_K)),
    (15, "Q8_K", None),
    (16, "IQ2_XXS", Some(DType::IQ2_XXS)),
    (17, "IQ2_XS", Some(DType::IQ2_XS)),
    (18, "IQ3_XXS", Some(DType::IQ3_XXS)),
    (19, "IQ1_S", Some(DType::IQ1_S)),
    (20, "IQ4_NL", Some(DType::IQ4_NL)),
    (21, "IQ3_S", Some(DType::IQ3_S)),
    (22, "IQ2_S", Some(DType::IQ2_S)),
    (23, "IQ4_XS", Some(DType::IQ4_XS)),
    (24, "I8", None),
    (25, "I16", None),
    (26, "I32", None),
    (27, "I64", None),
    (28, "F64", None),
    (29, "IQ1_M", Some(DType::IQ1_M)),
    (30, "BF16", Some(DType::BF16)),
    (34, "TQ1_0", Some(DType::TQ1_0)),
    (35, "TQ2_0", Some(DType::TQ2_0)),
    (39, "MXFP4", Some(DType::MXFP4)),
    (40, "NVFP4", Some(DType::NVFP4)),
    (41, "Q1_0", Some(DType::Q1_0)),
    (42, "Q2_0", Some(DType::Q2_0)),
];

/// Elements per block and bytes per block of the ggml types frugal does not read (activation
/// types, plain integers), so a file holding them is still indexed and refused by name.
fn other_layout(id: u32) -> Option<(usize, usize)> {
    Some(match id {
        9 => (32, 36),    // Q8_1
        15 => (256, 292), // Q8_K
        24 => (1, 1),
        25 => (1, 2),
        26 => (1, 4),
        27 | 28 => (1, 8),
        _ => return None,
    })
}

/// ggml's type id for a dtype GGUF can hold.
pub fn ggml_type(d: DType) -> Result<u32> {
    if d == DType::I8 {
        bail!("int8 with per-row scales has no GGUF type: quantize it (--quant q8)");
    }
    GGML_TYPES
        .iter()
        .find(|t| t.2 == Some(d))
        .map(|t| t.0)
        .with_context(|| {
            format!(
                "{} is an in-memory layout of frugal's, not a GGUF type",
                d.name()
            )
        })
}

/// The dtype frugal computes with for a ggml type id, if any.
pub fn dtype_of_ggml(id: u32) -> Option<DType> {
    GGML_TYPES.iter().find(|t| t.0 == id).and_then(|t| t.2)
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for the dtype most matrices have.
pub fn file_type(d: DType) -> u32 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 | DType::Q4_0X4 => 2,
        DType::Q4_1 => 3,
        DType::Q8_0 | DType::Q8_0X4 | DType::I8 => 7,
        DType::Q5_0 => 8,
        DType::Q5_1 => 9,
        DType::Q2_K => 10,
        DType::Q3_K => 12,
        DType::Q4_K => 14,
        DType::Q5_K => 16,
        DType::Q6_K => 18,
        DType::IQ2_XXS => 19,
        DType::IQ2_XS => 20,
        DType::IQ3_XXS => 23,
        DType::IQ1_S => 24,
        DType::IQ4_NL => 25,
        DType::IQ3_S => 26,
        DType::IQ2_S => 28,
        DType::IQ4_XS => 30,
        DType::IQ1_M => 31,
        DType::BF16 => 32,
        DType::TQ1_0 => 36,
        DType::TQ2_0 => 37,
        DType::MXFP4 => 38,
        DType::NVFP4 => 39,
        DType::Q1_0 => 40,
        DType::Q2_0 => 41,
    }
}

/// Whether `path` is a GGUF file (by its magic).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut m = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut m))
            .is_ok()
        && &m == MAGIC
}

/// A metadata value. Arrays are kept as the byte range of their elements in the map, read when
/// asked for (a vocabulary of 256K strings is never copied unless the tokenizer is built).
#[derive(Clone, Debug, PartialEq)]
pub enum Meta {
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array {
        elem: u32,
        len: u64,
        start: usize,
        end: usize,
    },
}

impl Meta {
    fn kind(&self) -> &'static str {
        match self {
            Meta::UInt(_) | Meta::Int(_) => "an integer",
            Meta::Float(_) => "a float",
            Meta::Bool(_) => "a bool",
            Meta::Str(_) => "a string",
            Meta::Array { .. } => "an array",
        }
    }
}

/// A cursor over the header, each read checked against the file's end.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = (self.b.len() - self.pos) as u64;
        if n > left {
            bail!(
                "{} needs {n} bytes at offset {} but the file ends {left} bytes later: the file is truncated or its header is corrupt",
                what(),
                self.pos
            );
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn str(&mut self, what: &dyn Fn() -> String) -> Result<&'a str> {
        let n = self.u64(what)?;
        let b = self.take(n, &|| format!("{} (a string of {n} bytes)", what()))?;
        std::str::from_utf8(b).with_context(|| format!("{} is not UTF-8", what()))
    }

    /// Bytes of one element of value type `t` (None for strings and arrays).
    fn fixed_size(t: u32) -> Option<u64> {
        Some(match t {
            vt::U8 | vt::I8 | vt::BOOL => 1,
            vt::U16 | vt::I16 => 2,
            vt::U32 | vt::I32 | vt::F32 => 4,
            vt::U64 | vt::I64 | vt::F64 => 8,
            _ => return None,
        })
    }

    /// Reads a value of type `t`; arrays are skipped over and returned as ranges.
    fn value(&mut self, t: u32, depth: u32, what: &dyn Fn() -> String) -> Result<Meta> {
        let b = |c: &mut Self, n| c.take(n, what);
        Ok(match t {
            vt::U8 => Meta::UInt(b(self, 1)?[0] as u64),
            vt::I8 => Meta::Int(b(self, 1)?[0] as i8 as i64),
            vt::U16 => Meta::UInt(u16::from_le_bytes(b(self, 2)?.try_into().unwrap()) as u64),
            vt::I16 => Meta::Int(i16::from_le_bytes(b(self, 2)?.try_into().unwrap()) as i64),
            vt::U32 => Meta::UInt(self.u32(what)? as u64),
            vt::I32 => Meta::Int(self.u32(what)? as i32 as i64),
            vt::F32 => Meta::Float(f32::from_bits(self.u32(what)?) as f64),
            vt::U64 => Meta::UInt(self.u64(what)?),
            vt::I64 => Meta::Int(self.u64(what)? as i64),
            vt::F64 => Meta::Float(f64::from_bits(self.u64(what)?)),
            vt::BOOL => match b(self, 1)?[0] {
                0 => Meta::Bool(false),
                1 => Meta::Bool(true),
                x => bail!("{} is a bool of value {x} (not 0 or 1)", what()),
            },
            vt::STRING => Meta::Str(self.str(what)?.to_string()),
            vt::ARRAY => {
                if depth > 2 {
                    bail!("{} nests arrays too deeply", what());
                }
                let elem = self.u32(what)?;
                let len = self.u64(what)?;
                let start = self.pos;
                match Self::fixed_size(elem) {
                    Some(sz) => {
                        let n = len.checked_mul(sz).with_context(|| {
                            format!("{}: an array of {len} elements is too large", what())
                        })?;
                        self.take(n, &|| format!("{} (an array of {len} elements)", what()))?;
                    }
                    None if elem == vt::STRING || elem == vt::ARRAY => {
                        // Every element takes at least 8 bytes: a length past that is corrupt.
                        let left = (self.b.len() - self.pos) as u64;
                        if len > left / 8 {
                            bail!(
                                "{} claims {len} elements but only {left} bytes remain: the header is corrupt",
                                what()
                            );
                        }
                        for i in 0..len {
                            let w = || format!("{}[{i}]", what());
                            if elem == vt::STRING {
                                self.str(&w)?;
                            } else {
                                self.value(vt::ARRAY, depth + 1, &w)?;
                            }
                        }
                    }
                    None => bail!("{} is an array of unknown value type {elem}", what()),
                }
                Meta::Array {
                    elem,
                    len,
                    start,
                    end: self.pos,
                }
            }
            _ => bail!("{} has unknown value type {t}", what()),
        })
    }
}

/// A GGUF file's header: its metadata (arrays as ranges of the file's map, so the
/// [`TensorIndex`] that owns the map is passed where they are read).
pub struct Gguf {
    pub path: String,
    pub version: u32,
    pub meta: BTreeMap<String, Meta>,
    /// Every metadata entry in file order: key, value type and the value's bytes in the map
    /// (for copying entries verbatim: `gguf_write::metadata_of`).
    pub raw: Vec<(String, u32, std::ops::Range<usize>)>,
    /// Absolute offset of the data section.
    pub data_offset: usize,
    pub alignment: u64,
}

/// Reads the header of the GGUF file at `path` and indexes its tensors (shapes row-major), the
/// file mapped, no tensor data read. Every error names the file.
pub fn open(path: &Path) -> Result<(Gguf, TensorIndex)> {
    let shown = path.display().to_string();
    let file = MappedFile::open(path)?;
    let (version, meta, raw, tensors, data_offset, alignment) =
        parse(&file.map).with_context(|| format!("{shown}: not a valid GGUF file"))?;
    let mut index = TensorIndex::new();
    index.files.push(file);
    for (name, info) in tensors {
        index.insert(name, info)?;
    }
    index.check_overlaps()?;
    Ok((
        Gguf {
            path: shown,
            version,
            meta,
            raw,
            data_offset,
            alignment,
        },
        index,
    ))
}

type Parsed = (
    u32,
    BTreeMap<String, Meta>,
    Vec<(String, u32, std::ops::Range<usize>)>,
    Vec<(String, TensorInfo)>,
    usize,
    u64,
);

fn parse(b: &[u8]) -> Result<Parsed> {
    let mut c = Cur { b, pos: 0 };
    let magic = c.take(4, &|| "the magic".into())?;
    if magic != MAGIC {
        bail!("it does not start with `GGUF`");
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => bail!("GGUF version 1 (32-bit counts) is not supported; convert the model again with a current llama.cpp"),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            bail!("the file is big-endian GGUF; frugal reads little-endian files")
        }
        v => bail!("unsupported GGUF version {v} (frugal reads versions 2 and 3)"),
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;
    // Each metadata entry takes at least 12 bytes and each tensor entry 24: counts beyond what
    // the file can hold are refused before anything is sized by them.
    let left = (b.len() - c.pos) as u64;
    if n_kv > left / 12 || n_tensors > left / 24 {
        bail!("the header claims {n_kv} metadata entries and {n_tensors} tensors, more than its {} bytes can hold: the header is corrupt", b.len());
    }
    let mut meta = BTreeMap::new();
    let mut raw = Vec::new();
    for i in 0..n_kv {
        let key = c.str(&|| format!("metadata key {i}"))?.to_string();
        let t = c.u32(&|| format!("the type of metadata `{key}`"))?;
        let start = c.pos;
        let v = c.value(t, 0, &|| format!("metadata `{key}`"))?;
        raw.push((key.clone(), t, start..c.pos));
        if meta.insert(key.clone(), v).is_some() {
            bail!("metadata `{key}` appears twice");
        }
    }
    let alignment = match meta.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Meta::UInt(a)) if a.is_power_of_two() && *a <= 1 << 20 => *a,
        Some(v) => bail!("metadata `general.alignment` is {v:?}; it must be a power of two"),
    };
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.str(&|| format!("the name of tensor {i}"))?.to_string();
        let w = |s: &str| format!("{s} of tensor `{name}`");
        let n_dims = c.u32(&|| w("the dimension count"))?;
        if n_dims == 0 || n_dims > 4 {
            bail!("tensor `{name}` has {n_dims} dimensions (GGUF allows 1 to 4)");
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64(&|| w("the dimensions"))?;
            if d == 0 || d > 1 << 40 {
                bail!("tensor `{name}` has a dimension of {d}");
            }
            dims.push(d as usize);
        }
        let ty = c.u32(&|| w("the type"))?;
        let off = c.u64(&|| w("the data offset"))?;
        dims.reverse(); // GGUF lists ne[0] (the row length) first.
        let Some(&(_, tname, dtype)) = GGML_TYPES.iter().find(|t| t.0 == ty) else {
            bail!("tensor `{name}` has unknown ggml type id {ty}, newer than the types this frugal reads: requantize the file with llama.cpp's `llama-quantize --allow-requantize IN OUT Q4_K_M` (or Q8_0), or use a newer frugal");
        };
        let (blk, bytes) = match dtype {
            Some(d) => (d.block_len(), d.block_bytes()),
            None => other_layout(ty).expect("every listed type has a layout"),
        };
        let dtype = match dtype {
            Some(d) => StoredDType::Known(d),
            None => StoredDType::Other(tname.to_string()),
        };
        let numel = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .with_context(|| format!("tensor `{name}` has too many elements ({dims:?})"))?;
        let row = *dims.last().unwrap();
        if row % blk != 0 {
            bail!("tensor `{name}` is {tname} but its rows of {row} elements are not whole blocks of {blk}");
        }
        let len = (numel / blk)
            .checked_mul(bytes)
            .with_context(|| format!("tensor `{name}` is too large"))?;
        if off % alignment != 0 {
            bail!(
                "tensor `{name}` starts at data offset {off}, not a multiple of the file's alignment {alignment}: the file is not valid GGUF (llama.cpp refuses it too); frugal uses tensors in place and does not repack them, so write the file again with a GGUF writer"
            );
        }
        tensors.push((name, dims, dtype, off, len));
    }
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    if data_offset > b.len() as u64 && !tensors.is_empty() {
        bail!(
            "the data section would start at byte {data_offset} but the file has {} bytes: the file is truncated",
            b.len()
        );
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, shape, dtype, off, len)| {
            // Saturating: an offset past the file is refused by `TensorIndex::insert`.
            let offset =
                (data_offset as usize).saturating_add(usize::try_from(off).unwrap_or(usize::MAX));
            (
                name,
                TensorInfo {
                    file: 0,
                    dtype,
                    shape,
                    offset,
                    len,
                },
            )
        })
        .collect();
    Ok((version, meta, raw, tensors, data_offset as usize, alignment))
}

impl Gguf {
    fn path(&self) -> String {
        self.path.clone()
    }

    /// `general.architecture`: the model architecture, which the reader does not interpret.
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture")?
            .with_context(|| format!("{}: missing metadata `general.architecture`", self.path()))
    }

    /// A metadata value, or None.
    pub fn get(&self, key: &str) -> Option<&Meta> {
        self.meta.get(key)
    }

    fn err_type(&self, key: &str, want: &str, v: &Meta) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: metadata `{key}` is {}, expected {want}",
            self.path(),
            v.kind()
        )
    }

    /// An unsigned integer key (any integer type).
    pub fn uint(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Meta::UInt(x)) => Ok(Some(*x)),
            Some(Meta::Int(x)) if *x >= 0 => Ok(Some(*x as u64)),
            Some(v) => Err(self.err_type(key, "a non-negative integer", v)),
        }
    }

    /// An unsigned integer key the file must have.
    pub fn uint_req(&self, key: &str) -> Result<u64> {
        self.uint(key)?.with_context(|| {
            format!(
                "{}: missing metadata `{key}`, which a GGUF file of this architecture must have",
                self.path()
            )
        })
    }

    /// A float key (integers accepted).
    pub fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Meta::Float(x)) => Ok(Some(*x)),
            Some(Meta::UInt(x)) => Ok(Some(*x as f64)),
            Some(Meta::Int(x)) => Ok(Some(*x as f64)),
            Some(v) => Err(self.err_type(key, "a number", v)),
        }
    }

    /// A string key.
    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Meta::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.err_type(key, "a string", v)),
        }
    }

    /// A bool key.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Meta::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err_type(key, "a bool", v)),
        }
    }

    /// An array key: its element type, length and bytes (the header's, in `map`, the file's
    /// map); typed reads through [`Array`]'s methods.
    pub fn array<'m>(&self, map: &'m [u8], key: &str) -> Result<Option<Array<'m>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Meta::Array {
                elem,
                len,
                start,
                end,
            }) => Ok(Some(Array {
                path: self.path.clone(),
                key: key.to_string(),
                elem: *elem,
                len: *len as usize,
                bytes: &map[*start..*end],
            })),
            Some(v) => Err(self.err_type(key, "an array", v)),
        }
    }

    /// A per-item unsigned integer key: one integer for all `n` items, or an array of `n`
    /// integers (any integer element type), as llama.cpp writes per-layer values; None when
    /// absent.
    pub fn uints(&self, map: &[u8], key: &str, n: usize) -> Result<Option<Vec<u64>>> {
        if !matches!(self.get(key), Some(Meta::Array { .. })) {
            return Ok(self.uint(key)?.map(|x| vec![x; n]));
        }
        let a = self.array(map, key)?.expect("an array");
        let size = match a.elem {
            vt::U8 | vt::I8 => 1,
            vt::U16 | vt::I16 => 2,
            vt::U32 | vt::I32 => 4,
            vt::U64 | vt::I64 => 8,
            _ => bail!(
                "{}: metadata `{key}` is not an array of integers",
                self.path()
            ),
        };
        if a.len != n {
            bail!(
                "{}: metadata `{key}` has {} values, expected {n} (one per layer)",
                self.path(),
                a.len
            );
        }
        let signed = matches!(a.elem, vt::I8 | vt::I16 | vt::I32 | vt::I64);
        a.bytes
            .chunks_exact(size)
            .map(|b| {
                let mut w = [0u8; 8];
                w[..size].copy_from_slice(b);
                let x = u64::from_le_bytes(w);
                let neg = signed && b[size - 1] & 0x80 != 0;
                if neg {
                    bail!("{}: metadata `{key}` holds a negative value", self.path());
                }
                Ok(x)
            })
            .collect::<Result<Vec<u64>>>()
            .map(Some)
    }

    /// Bytes of the arrays `keys` name in the header (absent ones count 0).
    pub fn array_bytes(&self, keys: &[&str]) -> u64 {
        keys.iter()
            .filter_map(|k| match self.get(k) {
                Some(Meta::Array { start, end, .. }) => Some((end - start) as u64),
                _ => None,
            })
            .sum()
    }
}

/// An array of the metadata, its bytes borrowed from the header (checked when the header was
/// read: they hold `len` elements of type `elem`). Typed reads name the key when the type is
/// not the one asked for.
pub struct Array<'m> {
    path: String,
    key: String,
    /// Element value type ([`vt`]).
    pub elem: u32,
    /// Number of elements.
    pub len: usize,
    bytes: &'m [u8],
}

impl<'m> Array<'m> {
    fn expect(&self, elem: u32, what: &str) -> Result<()> {
        if self.elem != elem {
            bail!(
                "{}: metadata `{}` is not an array of {what}",
                self.path,
                self.key
            );
        }
        Ok(())
    }

    /// The elements of an array of strings, in order, each checked as it is read.
    pub fn strings(&self) -> Result<impl Iterator<Item = Result<&'m str>> + '_> {
        self.expect(vt::STRING, "strings")?;
        let mut c = Cur {
            b: self.bytes,
            pos: 0,
        };
        Ok((0..self.len).map(move |i| c.str(&|| format!("{}[{i}]", self.key))))
    }

    /// The elements of an array of f32.
    pub fn f32s(&self) -> Result<impl Iterator<Item = f32> + 'm> {
        self.expect(vt::F32, "f32 values")?;
        Ok(self
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// The elements of an array of i32.
    pub fn i32s(&self) -> Result<impl Iterator<Item = i32> + 'm> {
        self.expect(vt::I32, "i32 values")?;
        Ok(self
            .bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// The elements of an array of bools.
    pub fn bools(&self) -> Result<Vec<bool>> {
        self.expect(vt::BOOL, "bools")?;
        Ok(self.bytes.iter().map(|&b| b != 0).collect())
    }
}
