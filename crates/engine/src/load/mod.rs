//! Opening a model: find the checkpoint and config in a path, build the tensor index from
//! headers, predict the resident memory ([`plan`]), and bind the weights in place.

pub mod budget;
pub mod mix;
pub mod plan;
pub mod quantize;
pub mod stream;

use anyhow::{bail, Result};
use frugal_formats::{gguf, pytorch, safetensors, StoredDType, TensorIndex};
use frugal_model::bind::Binding;
use frugal_model::tensors::key;
use frugal_model::{arch, GemmaConfig, Model};
use std::path::{Path, PathBuf};

/// frugal's cache folder (demo models, quantized copies for streaming): `$FRUGAL_CACHE`, else
/// the user's cache folder (`~/.cache/frugal`), else the temporary folder.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FRUGAL_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("frugal")))
        .unwrap_or_else(|| std::env::temp_dir().join("frugal"))
}

/// How to find a checkpoint's config when the folder does not say.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// A known variant's name (as `frugal synth --shape`).
    pub variant: Option<String>,
    /// A Hugging Face style config.json.
    pub config: Option<PathBuf>,
}

/// A model folder whose headers have been read and checked, its files mapped.
pub struct Checkpoint {
    /// The model folder.
    pub dir: PathBuf,
    pub cfg: GemmaConfig,
    pub index: TensorIndex,
    /// The index checked against the config's tensor table.
    pub binding: Binding,
    /// The matrices quantized while loading ([`Checkpoint::quantize`]), used instead of the
    /// stored ones.
    pub quant: Option<quantize::Quantized>,
    /// A GGUF file's header (its config and tokenizer come from its metadata).
    pub gguf: Option<gguf::Gguf>,
}

impl Checkpoint {
    /// Opens a model folder (config.json + safetensors or PyTorch weights), or a PyTorch
    /// weights file with config.json beside it. Reads headers only.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Where the config comes from, in order: `--config FILE`, `--variant NAME`, config.json
    /// beside the weights, or (gemma_pytorch checkpoints) inferred from tensor shapes.
    fn resolve_config(dir: &Path, index: &TensorIndex, opts: &OpenOptions) -> Result<GemmaConfig> {
        if let Some(f) = &opts.config {
            return GemmaConfig::from_file(f);
        }
        if let Some(v) = &opts.variant {
            let shape = arch::Variant::by_name(v).map_err(|e| anyhow::anyhow!("--variant: {e}"))?;
            let mut c = shape.config_json();
            if let Some(rows) = arch::embedding_rows(index) {
                c["vocab_size"] = serde_json::json!(rows);
            }
            return GemmaConfig::from_json(&c, &format!("--variant {v}"));
        }
        let file = dir.join("config.json");
        if file.is_file() || !arch::is_gemma_pytorch(index) {
            return GemmaConfig::from_file(&file);
        }
        let (cfg, name) = arch::infer_pytorch_variant(index, &dir.display().to_string())?;
        eprintln!("{}: no config.json; inferred variant {name} from tensor shapes (name another with --variant or --config)", dir.display());
        Ok(cfg)
    }

    /// Opens with explicit config choices.
    pub fn open_with(path: &Path, opts: &OpenOptions) -> Result<Self> {
        let dir = if path.is_file() {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        } else {
            path.to_path_buf()
        };
        if !dir.is_dir() {
            bail!("{}: no such model folder", path.display());
        }
        if path.is_file() && gguf::is_gguf(path) {
            if opts.config.is_some() || opts.variant.is_some() {
                bail!(
                    "{}: a GGUF file carries its own config in its metadata; --config and --variant do not apply",
                    path.display()
                );
            }
            let (g, index) = gguf::open(path)?;
            let cfg = arch::config_from_gguf(&g, &index)?;
            let binding = arch::check(&cfg, &index, &g.path)?;
            return Ok(Checkpoint {
                dir,
                cfg,
                index,
                binding,
                quant: None,
                gguf: Some(g),
            });
        }
        let index = if safetensors::is_safetensors_dir(&dir) && !path.is_file() {
            safetensors::open_dir(&dir)?
        } else if pytorch::is_pytorch(path) {
            pytorch::open(path)?
        } else {
            bail!(
                "{}: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or .ckpt here; give -m the folder of a Gemma checkpoint (or make one with `frugal synth`)",
                path.display()
            );
        };
        let cfg = Self::resolve_config(&dir, &index, opts)?;
        // Validate the whole binding now, so errors surface before any data is read.
        let binding = arch::check(&cfg, &index, &dir.display().to_string())?;
        Ok(Checkpoint {
            dir,
            cfg,
            index,
            binding,
            quant: None,
            gguf: None,
        })
    }

    /// The quantize-on-load plan for `kind`, from headers alone.
    pub fn quant_plan(&self, kind: quantize::QuantKind) -> Result<quantize::QuantPlan> {
        quantize::QuantPlan::new(&self.binding, &self.index, kind)
    }

    /// Quantizes every weight matrix to `kind` (see [`quantize`]); the model then uses the
    /// quantized copies and the checkpoint's matrices are no longer touched.
    pub fn quantize(&mut self, kind: quantize::QuantKind) -> Result<()> {
        let plan = self.quant_plan(kind)?;
        self.index.files.iter().for_each(|f| f.advise_random());
        self.quant = Some(quantize::Quantized::build(&self.index, &plan, kind)?);
        self.advise_in_place(&plan, true);
        Ok(())
    }

    /// After a quantized load: block matrices left in place (a GGUF file's Q6_K embedding
    /// beside Q4_0 ones, say) are read whole, so their ranges go back to normal read-ahead and
    /// are read ahead now, or the first product would fault them in one page at a time
    /// (several times slower); when `drop`, everything else the chunked reads
    /// left cached (pages straddling chunk edges) is dropped, so the norms read next fault in
    /// single pages (MADV_RANDOM), not the large folios around them.
    fn advise_in_place(&self, plan: &quantize::QuantPlan, drop: bool) {
        let replaced: std::collections::HashSet<String> =
            plan.matrix_bytes().into_iter().map(|(n, _)| n).collect();
        // Per file, the (offset, len) of the block matrices kept, in file order.
        let mut kept = vec![Vec::new(); self.index.files.len()];
        for (name, t) in &self.index.tensors {
            let block = matches!(t.dtype, StoredDType::Known(d) if d.is_quantized());
            if block && !replaced.contains(name) {
                kept[t.file].push((t.offset, t.len));
            }
        }
        for (f, kept) in self.index.files.iter().zip(&mut kept) {
            kept.sort_unstable();
            let mut at = 0;
            for &(off, len) in kept.iter() {
                if drop && off > at {
                    f.drop_cache(&f.map[at..off]);
                }
                let bytes = &f.map[off..off + len];
                f.advise_normal(bytes);
                f.will_need(bytes);
                at = at.max(off + len);
            }
            if drop && at < f.map.len() {
                f.drop_cache(&f.map[at..]);
            }
        }
    }

    /// Like [`Checkpoint::quantize`], into the cache file for this checkpoint and `kind`
    /// ([`quantize::cache_path`]; reused when present), so the quantized layers can be
    /// streamed.
    pub fn quantize_to_cache(&mut self, kind: quantize::QuantKind) -> Result<()> {
        let plan = self.quant_plan(kind)?;
        self.index.files.iter().for_each(|f| f.advise_random());
        let path = quantize::cache_path(&self.index, kind)?;
        self.quant = Some(quantize::Quantized::build_file(
            &self.index,
            &plan,
            kind,
            &path,
        )?);
        self.advise_in_place(&plan, false);
        Ok(())
    }

    /// Bytes of the weights as the model uses them: the quantized matrices plus the tensors
    /// used in place, or the whole checkpoint when nothing was quantized.
    pub fn weights_bytes(&self) -> u64 {
        match &self.quant {
            None => self.index.total_bytes(),
            Some(q) => {
                let replaced: u64 = self.quant_plan(q.kind).map(|p| p.source_bytes).unwrap_or(0);
                self.index.total_bytes() - replaced + q.bytes()
            }
        }
    }

    /// Binds the weights (in place, or the quantized copies) and builds the model.
    pub fn model(&self) -> Result<Model<'_>> {
        let replaced = self
            .quant
            .as_ref()
            .map(|q| q.matrices())
            .unwrap_or_default();
        if self.quant.is_none() {
            // The weights are about to be read in place: in 2 MiB folios from here on.
            self.index.files.iter().for_each(|f| f.advise_hugepage());
        }
        // Tables read a row per token (Gemma 4's per-layer embeddings) stay out of the folios.
        for s in &self.binding.stored {
            if s.keys.iter().any(|k| key::read_by_token_rows(k)) {
                if let Some(t) = self.index.tensors.get(&s.name) {
                    self.index.advise_rows(self.index.bytes(t));
                }
            }
        }
        let model = arch::model(&self.cfg, &self.index, &self.source(), &replaced)?;
        // Reading the small tensors (norms) from the map faults in whole folios around them,
        // most of it bytes of the quantized matrices' sources: give those pages back.
        for name in replaced.keys() {
            if let Some(t) = self.index.tensors.get(name) {
                self.index.release(self.index.bytes(t));
            }
        }
        Ok(model)
    }

    /// The checkpoint's name in errors (a GGUF file's path, else the folder).
    pub fn source(&self) -> String {
        match &self.gguf {
            Some(g) => g.path.clone(),
            None => self.dir.display().to_string(),
        }
    }

    /// Path of the tokenizer beside the weights (tokenizer.json, else tokenizer.model), if any.
    /// None for a GGUF file, whose tokenizer is in its metadata ([`Checkpoint::tokenizer`]).
    pub fn tokenizer_path(&self) -> Option<PathBuf> {
        match self.gguf {
            Some(_) => None,
            None => frugal_tokenizer::GemmaTokenizer::find(&self.dir),
        }
    }

    /// Bytes the tokenizer is read from and whether it is a `tokenizer.json` (for the plan).
    pub fn tokenizer_source_bytes(&self) -> (u64, bool) {
        if let Some(g) = &self.gguf {
            return (frugal_tokenizer::gguf::vocab_bytes(g), false);
        }
        match self.tokenizer_path() {
            Some(p) => (
                std::fs::metadata(&p).map_or(0, |m| m.len()),
                p.extension().is_some_and(|e| e == "json"),
            ),
            None => (0, false),
        }
    }

    /// The tokenizer: a GGUF file's vocabulary, else tokenizer.json or tokenizer.model beside
    /// the weights; None when there is none.
    pub fn tokenizer(&self) -> Result<Option<frugal_tokenizer::GemmaTokenizer>> {
        use frugal_tokenizer::GemmaTokenizer;
        if let Some(g) = &self.gguf {
            return frugal_tokenizer::gguf::tokenizer(g, &self.index.files[0].map);
        }
        self.tokenizer_path()
            .map(|p| GemmaTokenizer::from_file(&p))
            .transpose()
    }
}

impl frugal_model::Pager for Checkpoint {
    fn prefetch(&self, bytes: &[u8]) {
        match self.quant.as_ref().and_then(|q| q.file()) {
            Some(f) if f.contains(bytes) => f.will_need(bytes),
            _ => self.index.will_need(bytes),
        }
    }

    fn evict(&self, bytes: &[u8]) {
        match self.quant.as_ref().and_then(|q| q.file()) {
            Some(f) if f.contains(bytes) => {
                f.release(bytes);
                f.drop_cache(bytes);
            }
            _ => {
                self.index.release(bytes);
                self.index.drop_cache(bytes);
            }
        }
    }
}
