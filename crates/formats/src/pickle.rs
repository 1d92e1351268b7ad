//! A safe interpreter for the pickles inside PyTorch checkpoints (`data.pkl`).
//!
//! Written by hand because no crate offers what frugal needs: an allowlist interpreter that
//! rebuilds tensor descriptions (dtype, shape, strides, storage key and offset) without ever
//! running code named by the file. Only the opcodes `torch.save` emits for state dicts are
//! understood, and only these globals may be called: `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_tensor`, `torch._utils._rebuild_parameter`,
//! `collections.OrderedDict`, plus the storage classes and dtypes as plain values (the same set
//! PyTorch's `weights_only=True` loader accepts for tensors). Anything else — `os.system`,
//! `builtins.eval`, unknown opcodes — is refused with an error naming it.
//!
//! Threat model: the input is hostile. Every length is checked against the bytes that remain
//! before anything is allocated, and the total size of values built (including copies made by
//! memo lookups) is bounded, so a small file cannot make the interpreter allocate without limit.

use anyhow::{bail, Result};

/// Element type of a storage, from its class (`torch.BFloat16Storage`) or dtype (`torch.bfloat16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    U8,
    I16,
    I32,
    I64,
    Bool,
    C64,
    C128,
}

impl StorageDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageDType::I8 | StorageDType::U8 | StorageDType::Bool => 1,
            StorageDType::F16 | StorageDType::BF16 | StorageDType::I16 => 2,
            StorageDType::F32 | StorageDType::I32 => 4,
            StorageDType::F64 | StorageDType::I64 | StorageDType::C64 => 8,
            StorageDType::C128 => 16,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            StorageDType::F32 => "f32",
            StorageDType::F16 => "f16",
            StorageDType::BF16 => "bf16",
            StorageDType::F64 => "f64",
            StorageDType::I8 => "i8",
            StorageDType::U8 => "u8",
            StorageDType::I16 => "i16",
            StorageDType::I32 => "i32",
            StorageDType::I64 => "i64",
            StorageDType::Bool => "bool",
            StorageDType::C64 => "complex64",
            StorageDType::C128 => "complex128",
        }
    }

    fn from_torch_name(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" | "float32" | "float" => StorageDType::F32,
            "HalfStorage" | "float16" | "half" => StorageDType::F16,
            "BFloat16Storage" | "bfloat16" => StorageDType::BF16,
            "DoubleStorage" | "float64" | "double" => StorageDType::F64,
            "CharStorage" | "int8" => StorageDType::I8,
            "ByteStorage" | "uint8" => StorageDType::U8,
            "ShortStorage" | "int16" | "short" => StorageDType::I16,
            "IntStorage" | "int32" | "int" => StorageDType::I32,
            "LongStorage" | "int64" | "long" => StorageDType::I64,
            "BoolStorage" | "bool" => StorageDType::Bool,
            "ComplexFloatStorage" | "complex64" | "cfloat" => StorageDType::C64,
            "ComplexDoubleStorage" | "complex128" | "cdouble" => StorageDType::C128,
            _ => return None,
        })
    }
}

/// A tensor as described by the pickle: where its data lies, not the data.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub dtype: StorageDType,
    /// Name of the storage's record in the archive (`data/<key>`).
    pub key: String,
    /// Elements in the storage, as the pickle claims (checked against the archive by the caller).
    pub storage_numel: u64,
    /// Offset into the storage, in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

impl TensorRef {
    /// True if the strides are those of a row-major contiguous tensor.
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1u64;
        for (d, s) in self.shape.iter().zip(&self.stride).rev() {
            if *d != 1 && *s != expect {
                return false;
            }
            expect = expect.saturating_mul(*d);
        }
        true
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

/// A value of the pickle machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Dicts keep insertion order (OrderedDict and dict alike).
    Dict(Vec<(Value, Value)>),
    /// An allowed global, not yet called.
    Global(String),
    /// A storage from a persistent id.
    Storage {
        dtype: StorageDType,
        key: String,
        numel: u64,
    },
    Tensor(TensorRef),
    /// A storage dtype named as a value (`torch.bfloat16`).
    DType(StorageDType),
    /// A storage class (`torch.BFloat16Storage`), naming the dtype of a persistent storage.
    StorageClass(StorageDType),
}

impl Value {
    /// Rough count of nodes, to bound copies.
    fn weight(&self) -> usize {
        match self {
            Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(Value::weight).sum::<usize>(),
            Value::Dict(v) => {
                1 + v
                    .iter()
                    .map(|(k, x)| k.weight() + x.weight())
                    .sum::<usize>()
            }
            Value::Str(s) => 1 + s.len() / 16,
            Value::Bytes(b) => 1 + b.len() / 16,
            Value::Tensor(t) => 2 + t.shape.len(),
            _ => 1,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
            Value::DType(_) => "dtype",
            Value::StorageClass(_) => "storage class",
        }
    }
}

/// Globals that may appear; any other is refused.
fn allowed_global(module: &str, name: &str) -> Result<Value> {
    let full = format!("{module}.{name}");
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_parameter")
        | ("collections", "OrderedDict")
        | ("builtins", "dict" | "list" | "tuple") => Ok(Value::Global(full)),
        ("torch", n) => match StorageDType::from_torch_name(n) {
            Some(d) if n.ends_with("Storage") => Ok(Value::StorageClass(d)),
            Some(d) => Ok(Value::DType(d)),
            None => bail!("refusing global `{full}`: it is not needed to rebuild tensors, and frugal never runs code from a checkpoint"),
        },
        _ => bail!("refusing global `{full}`: it is not needed to rebuild tensors, and frugal never runs code from a checkpoint"),
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
    /// Remaining budget of value nodes that may still be built.
    budget: usize,
}

/// Runs a pickle and returns the object it builds.
pub fn load(data: &[u8]) -> Result<Value> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Default::default(),
        budget: data.len().saturating_mul(4) + 1_000_000,
    };
    m.run()
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() - self.pos {
            bail!(
                "pickle truncated at byte {}: {} more bytes needed, {} left",
                self.pos,
                n,
                self.data.len() - self.pos
            );
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
            anyhow::anyhow!("pickle truncated: unterminated line at byte {}", self.pos)
        })?;
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| anyhow::anyhow!("pickle: invalid text at byte {}", self.pos))?;
        self.pos += end + 1;
        Ok(s)
    }
    fn push(&mut self, v: Value) -> Result<()> {
        let w = v.weight();
        if w > self.budget {
            bail!("pickle builds more values than its size allows (a decompression bomb?)");
        }
        self.budget -= w;
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!(
                "pickle: stack underflow at byte {} (pops past a mark)",
                self.pos
            );
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow::anyhow!("pickle: stack underflow at byte {}", self.pos))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| anyhow::anyhow!("pickle: no mark at byte {}", self.pos))?;
        if m > self.stack.len() {
            bail!("pickle: corrupt mark at byte {}", self.pos);
        }
        Ok(self.stack.split_off(m))
    }
    fn top_mut(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        self.stack
            .last_mut()
            .ok_or_else(|| anyhow::anyhow!("pickle: empty stack at byte {pos}"))
    }
    fn memo_get(&mut self, k: u32) -> Result<()> {
        let v =
            self.memo.get(&k).cloned().ok_or_else(|| {
                anyhow::anyhow!("pickle: memo key {k} missing at byte {}", self.pos)
            })?;
        self.push(v)
    }
    fn memo_put(&mut self, k: u32) -> Result<()> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("pickle: empty stack at byte {}", self.pos))?;
        let w = v.weight();
        if w > self.budget {
            bail!("pickle builds more values than its size allows");
        }
        self.budget -= w;
        self.memo.insert(k, v);
        Ok(())
    }
    fn string(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8(b.to_vec()).map_err(|_| {
            anyhow::anyhow!("pickle: invalid UTF-8 string at byte {}", self.pos)
        })?))
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        bail!("pickle protocol {proto} is not supported");
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        bail!("pickle: integer of {n} bytes at byte {at} is too large");
                    }
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(s)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push(s)?
                }
                0x8d => {
                    let n = self.u64()?;
                    let n = usize::try_from(n).map_err(|_| anyhow::anyhow!("pickle: string length {n} too large"))?;
                    let s = self.string(n)?;
                    self.push(s)?
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(if op == b'T' { Value::Str(String::from_utf8_lossy(&b).into_owned()) } else { Value::Bytes(b) })?
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(if op == b'U' { Value::Str(String::from_utf8_lossy(&b).into_owned()) } else { Value::Bytes(b) })?
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items, at)?;
                    self.push(Value::Dict(d))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n || self.marks.last().is_some_and(|&m| m > self.stack.len() - n) {
                        bail!("pickle: stack underflow at byte {at}");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(d) => d.push((k, v)),
                        other => bail!("pickle: SETITEM on a {} at byte {at}", other.kind()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let kv = pairs(items, at)?;
                    match self.top_mut()? {
                        Value::Dict(d) => d.extend(kv),
                        other => bail!("pickle: SETITEMS on a {} at byte {at}", other.kind()),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top_mut()? {
                        Value::List(l) => l.push(v),
                        other => bail!("pickle: APPEND on a {} at byte {at}", other.kind()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(l) => l.extend(items),
                        other => bail!("pickle: APPENDS on a {} at byte {at}", other.kind()),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let g = allowed_global(&module, &name)?;
                    self.push(g)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = allowed_global(&m, &n)?;
                            self.push(g)?
                        }
                        _ => bail!("pickle: STACK_GLOBAL needs two strings at byte {at}"),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = persistent_storage(pid)?;
                    self.push(s)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = reduce(f, args, at)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top_mut()?;
                    // state_dict()'s OrderedDict carries a `_metadata` attribute: plain data,
                    // set through BUILD. It is dropped; nothing runs either way.
                    let dict_attrs = matches!((&*target, &state), (Value::Dict(_), Value::Dict(_)));
                    let trivial = dict_attrs || match &state {
                        Value::None => true,
                        Value::Dict(d) => d.is_empty(),
                        Value::Tuple(t) => t.iter().all(|x| matches!(x, Value::None) || matches!(x, Value::Dict(d) if d.is_empty())),
                        _ => false,
                    };
                    if !trivial {
                        bail!("pickle: refusing BUILD with a {} state on a {} at byte {at}", state.kind(), target.kind());
                    }
                }
                other => bail!(
                    "pickle: refusing opcode 0x{other:02x} ({:?}) at byte {at}: not used by torch.save for tensors",
                    other as char
                ),
            }
        }
    }
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("pickle: odd number of items for a dict at byte {at}");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn int(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => bail!(
            "pickle: {what} must be a non-negative integer, found {}",
            other.kind()
        ),
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<u64>> {
    match v {
        Value::Tuple(t) | Value::List(t) => t.iter().map(|x| int(x, what)).collect(),
        other => bail!("pickle: {what} must be a tuple, found {}", other.kind()),
    }
}

/// `('storage', class_or_dtype, key, location, numel)` -> a storage.
fn persistent_storage(pid: Value) -> Result<Value> {
    let Value::Tuple(t) = pid else {
        bail!(
            "pickle: persistent id must be a tuple, found {}",
            pid.kind()
        )
    };
    if t.len() != 5 || t[0] != Value::Str("storage".into()) {
        bail!("pickle: persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    let dtype = match &t[1] {
        Value::StorageClass(d) | Value::DType(d) => *d,
        other => bail!(
            "pickle: storage type is a {}, not a storage class",
            other.kind()
        ),
    };
    let Value::Str(key) = &t[2] else {
        bail!("pickle: storage key must be a string")
    };
    if key.is_empty() || key.contains('/') || key.contains("..") {
        bail!("pickle: storage key `{key}` is not a plain record name");
    }
    let numel = int(&t[4], "storage size")?;
    Ok(Value::Storage {
        dtype,
        key: key.clone(),
        numel,
    })
}

/// Calls an allowed global.
fn reduce(f: Value, args: Value, at: usize) -> Result<Value> {
    let Value::Global(name) = f else {
        bail!(
            "pickle: REDUCE calls a {} at byte {at}; only allowed globals may be called",
            f.kind()
        )
    };
    let Value::Tuple(a) = args else {
        bail!("pickle: REDUCE arguments must be a tuple at byte {at}")
    };
    match name.as_str() {
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            if a.len() < 4 {
                bail!("pickle: {name} needs at least 4 arguments, got {}", a.len());
            }
            let Value::Storage { dtype, key, numel } = &a[0] else {
                bail!(
                    "pickle: {name}'s first argument is a {}, not a storage",
                    a[0].kind()
                )
            };
            let offset = int(&a[1], "storage offset")?;
            let shape = ints(&a[2], "size")?;
            let stride = ints(&a[3], "stride")?;
            if shape.len() != stride.len() {
                bail!(
                    "pickle: tensor has {} sizes but {} strides",
                    shape.len(),
                    stride.len()
                );
            }
            Ok(Value::Tensor(TensorRef {
                dtype: *dtype,
                key: key.clone(),
                storage_numel: *numel,
                offset,
                shape,
                stride,
            }))
        }
        "torch._utils._rebuild_parameter" => match a.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => bail!("pickle: _rebuild_parameter needs a tensor"),
        },
        "collections.OrderedDict" | "builtins.dict" => match a.as_slice() {
            [] => Ok(Value::Dict(Vec::new())),
            _ => bail!("pickle: {name} called with arguments at byte {at}"),
        },
        "builtins.list" | "builtins.tuple" => match a.into_iter().next() {
            None => Ok(if name.ends_with("list") {
                Value::List(Vec::new())
            } else {
                Value::Tuple(Vec::new())
            }),
            Some(Value::List(l) | Value::Tuple(l)) => Ok(if name.ends_with("list") {
                Value::List(l)
            } else {
                Value::Tuple(l)
            }),
            Some(other) => bail!("pickle: {name} of a {}", other.kind()),
        },
        other => bail!("pickle: refusing to call `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cos\nsystem\n(S'echo pwned'\ntR.` : the classic attack.
    #[test]
    fn refuses_os_system() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
        let e = load(p).unwrap_err().to_string();
        assert!(e.contains("refusing global `os.system`"), "{e}");
    }

    #[test]
    fn refuses_eval_and_unknown_opcodes() {
        let e = load(b"\x80\x02cbuiltins\neval\n.").unwrap_err().to_string();
        assert!(e.contains("`builtins.eval`"), "{e}");
        let e = load(b"\x80\x02\x81.").unwrap_err().to_string();
        assert!(e.contains("refusing opcode 0x81"), "{e}");
    }

    #[test]
    fn truncated_and_oversized_lengths() {
        let e = load(b"\x80\x02X\xff\xff\xff\x7f").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = load(b"\x80\x02").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_bomb_is_bounded() {
        // A list doubled through the memo 40 times would hold 2^40 items.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            p.extend_from_slice(b"h\x00h\x00\x86q\x00");
        }
        p.push(b'.');
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("more values than its size allows"), "{e}");
    }

    #[test]
    fn contiguity() {
        let t = TensorRef {
            dtype: StorageDType::F32,
            key: "0".into(),
            storage_numel: 6,
            offset: 0,
            shape: vec![3, 2],
            stride: vec![2, 1],
        };
        assert!(t.is_contiguous());
        let t = TensorRef {
            stride: vec![1, 3],
            ..t
        };
        assert!(!t.is_contiguous());
    }
}
