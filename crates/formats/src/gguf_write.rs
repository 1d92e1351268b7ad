//! Writing GGUF files (llama.cpp's format, version 3): the header, metadata and tensor
//! directory first, computed from the tensors' shapes and dtypes, then each tensor's data
//! streamed in order by the caller, aligned to 32 bytes. Written into a temporary file beside
//! the destination and renamed into place only when complete.

use anyhow::{bail, Context, Result};
use frugal_tensor::DType;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Data alignment (GGUF's default; `general.alignment` is not written).
pub const ALIGNMENT: u64 = super::gguf::DEFAULT_ALIGNMENT;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    F32Array(Vec<f32>),
    I32Array(Vec<i32>),
    BoolArray(Vec<bool>),
    /// A value copied from another GGUF file: its type and its encoded bytes.
    Raw {
        vtype: u32,
        bytes: Vec<u8>,
    },
}

pub use super::gguf::ggml_type;
use super::gguf::vt::{
    ARRAY as T_ARRAY, BOOL as T_BOOL, F32 as T_FLOAT32, I32 as T_INT32, STRING as T_STRING,
    U32 as T_UINT32,
};

/// One tensor of the file: its GGUF name, shape in row-major order (`[rows, cols]`; written
/// innermost first as GGUF wants), and dtype.
#[derive(Clone, Debug)]
pub struct OutTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl OutTensor {
    /// Bytes of the tensor's data.
    pub fn bytes(&self) -> Result<u64> {
        Ok(self
            .dtype
            .tensor_bytes(&self.shape)
            .with_context(|| format!("tensor `{}`", self.name))? as u64)
    }
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let u32le = |x: u32| x.to_le_bytes();
    match v {
        Value::U32(x) => {
            w.write_all(&u32le(T_UINT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::I32(x) => {
            w.write_all(&u32le(T_INT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            w.write_all(&u32le(T_FLOAT32))?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            w.write_all(&u32le(T_BOOL))?;
            w.write_all(&[*x as u8])
        }
        Value::Str(s) => {
            w.write_all(&u32le(T_STRING))?;
            put_str(w, s)
        }
        Value::StrArray(a) => {
            w.write_all(&u32le(T_ARRAY))?;
            w.write_all(&u32le(T_STRING))?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|s| put_str(w, s))
        }
        Value::F32Array(a) => {
            w.write_all(&u32le(T_ARRAY))?;
            w.write_all(&u32le(T_FLOAT32))?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::I32Array(a) => {
            w.write_all(&u32le(T_ARRAY))?;
            w.write_all(&u32le(T_INT32))?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::BoolArray(a) => {
            w.write_all(&u32le(T_ARRAY))?;
            w.write_all(&u32le(T_BOOL))?;
            w.write_all(&(a.len() as u64).to_le_bytes())?;
            a.iter().try_for_each(|x| w.write_all(&[*x as u8]))
        }
        Value::Raw { vtype, bytes } => {
            w.write_all(&u32le(*vtype))?;
            w.write_all(bytes)
        }
    }
}

/// Every metadata entry of `g` as it is in the file (`map` is the file's map), for a writer to
/// copy: the tokenizer, chat template and hyper-parameters travel unchanged.
pub fn metadata_of(g: &super::gguf::Gguf, map: &[u8]) -> Vec<(String, Value)> {
    g.raw
        .iter()
        .map(|(k, t, r)| {
            (
                k.clone(),
                Value::Raw {
                    vtype: *t,
                    bytes: map[r.clone()].to_vec(),
                },
            )
        })
        .collect()
}

/// Writes a GGUF file at `out`: `kv` metadata, then `tensors`, whose data `fill(i, w)` writes
/// (exactly `tensors[i].bytes()` bytes, checked). Refuses an existing `out` unless `force`.
/// Returns the file's size.
pub fn write(
    out: &Path,
    force: bool,
    kv: &[(String, Value)],
    tensors: &[OutTensor],
    mut fill: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<u64> {
    crate::output::atomic_file(out, force, |tmp, file| {
        let mut w = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            n: 0,
        };
        w.write_all(super::gguf::MAGIC)?;
        w.write_all(&3u32.to_le_bytes())?;
        w.write_all(&(tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(kv.len() as u64).to_le_bytes())?;
        for (k, v) in kv {
            put_str(&mut w, k)?;
            put_value(&mut w, v)?;
        }
        let mut offset = 0u64;
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            put_str(&mut w, &t.name)?;
            w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
            for d in t.shape.iter().rev() {
                w.write_all(&(*d as u64).to_le_bytes())?;
            }
            w.write_all(&ggml_type(t.dtype)?.to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            let b = t.bytes()?;
            sizes.push(b);
            offset = (offset + b).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        pad(&mut w)?;
        for (i, t) in tensors.iter().enumerate() {
            let start = w.n;
            fill(i, &mut w)?;
            if w.n - start != sizes[i] {
                bail!(
                    "tensor `{}`: wrote {} bytes, its shape and dtype need {}",
                    t.name,
                    w.n - start,
                    sizes[i]
                );
            }
            pad(&mut w)?;
        }
        let n = w.n;
        w.inner
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
        Ok(n)
    })
}

/// Zeros up to the next multiple of [`ALIGNMENT`].
fn pad<W: Write>(w: &mut Counting<W>) -> std::io::Result<()> {
    let n = (w.n.div_ceil(ALIGNMENT) * ALIGNMENT - w.n) as usize;
    w.write_all(&[0u8; ALIGNMENT as usize][..n])
}

/// A writer that counts the bytes through it.
struct Counting<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
