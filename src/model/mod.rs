//! Model serving's core: a model loaded from a `wren-model/1` file
//! (`docs/MODEL_FORMAT.md`), its evaluators, and the slot that holds the
//! served model so that SIGHUP can replace it while requests run.
//!
//! Why a format of wren's own rather than ONNX: tract-onnx cannot load
//! scikit-learn tree models, while a small evaluator over the exported trees
//! matches scikit-learn to 1e-12 at under a microsecond a row. Everything
//! here is pure except [`ModelSlot`]'s file reading.

mod eval;
mod features;
pub mod format;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

pub use features::{Encoding, Feature, FeatureKind, Input};

use eval::{Linear, TreeEnsemble};

/// The default sales model, trained by `tools/train_sales_model.py`.
const EMBEDDED_SALES_MODEL: &[u8] = include_bytes!("../../models/sales.json");

/// The range of the seed's placeholder predictions (`--model random`).
pub const RANDOM_RANGE: (i64, i64) = (2000, 5000);

/// A loaded, checked model.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub version: String,
    pub features: Vec<Feature>,
    /// Positions of the encoded input row.
    width: usize,
    kind: ModelKind,
    output: Output,
    pub training: Option<Map<String, Value>>,
    /// A digest of the file, for ETags: a changed file changes every ETag
    /// even when its version string stays the same.
    digest: u64,
}

#[derive(Debug, Clone)]
enum ModelKind {
    Linear(Linear),
    Trees(TreeEnsemble),
    /// The seed's placeholder: a random integer in [`RANDOM_RANGE`].
    Random,
}

/// Post-processing of the model's value: round (halves away from zero),
/// then clamp.
#[derive(Debug, Clone, Default, PartialEq)]
struct Output {
    round: bool,
    clamp: Option<(f64, f64)>,
}

impl Model {
    /// Parses and checks a model file.
    pub fn from_json(bytes: &[u8]) -> Result<Model, String> {
        format::parse(bytes)
    }

    /// The sales model compiled into the binary.
    pub fn embedded() -> Result<Model, String> {
        Model::from_json(EMBEDDED_SALES_MODEL)
            .map_err(|err| format!("the embedded sales model: {err}"))
    }

    /// The placeholder: the embedded model's inputs, random answers.
    pub fn random() -> Result<Model, String> {
        Ok(Model {
            name: "random".to_owned(),
            version: "placeholder".to_owned(),
            kind: ModelKind::Random,
            output: Output::default(),
            training: None,
            ..Model::embedded()?
        })
    }

    /// Reads and checks a model file, at most
    /// [`format::MAX_MODEL_FILE_BYTES`] long.
    pub fn load(path: &std::path::Path) -> Result<Model, String> {
        use std::io::Read;
        let file = std::fs::File::open(path)
            .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(format::MAX_MODEL_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        if bytes.len() as u64 > format::MAX_MODEL_FILE_BYTES {
            return Err(format!(
                "{} is larger than {} bytes",
                path.display(),
                format::MAX_MODEL_FILE_BYTES
            ));
        }
        Model::from_json(&bytes).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// The feature called `name` and its index.
    pub fn feature(&self, name: &str) -> Option<(usize, &Feature)> {
        self.features
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == name)
    }

    /// Positions of the encoded row: the length [`Model::encode`] fills.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Encodes one input per feature, in feature order, into `row`.
    pub fn encode(&self, inputs: &[Input], row: &mut [f64]) {
        for (feature, &input) in self.features.iter().zip(inputs) {
            feature.encode(input, row);
        }
        if let ModelKind::Trees(trees) = &self.kind {
            trees.prepare(row);
        }
    }

    /// The prediction for one instance's inputs, in feature order: encoded
    /// in a buffer on the stack unless the model is unusually wide.
    pub fn predict_inputs(&self, inputs: &[Input]) -> f64 {
        let mut stack = [0.0; 64];
        let mut heap = Vec::new();
        let row = if self.width <= stack.len() {
            &mut stack[..self.width]
        } else {
            heap.resize(self.width, 0.0);
            &mut heap[..]
        };
        self.encode(inputs, row);
        self.predict(row)
    }

    /// The prediction for one encoded row, post-processed.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let value = match &self.kind {
            ModelKind::Linear(model) => model.value(row),
            ModelKind::Trees(model) => model.value(row),
            ModelKind::Random => fastrand::i64(RANDOM_RANGE.0..=RANDOM_RANGE.1) as f64,
        };
        self.output.apply(value)
    }

    /// Whether the same inputs always get the same answer, so responses
    /// may be cached.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self.kind, ModelKind::Random)
    }

    /// Whether predictions are whole numbers, to be shown as integers.
    pub fn rounds(&self) -> bool {
        self.output.round || !self.is_deterministic()
    }

    /// The tag of a document describing this model (its metadata, the
    /// spec built from it), marked `document`: the file's digest and this
    /// build's version, since a new build may describe the same file
    /// otherwise.
    pub fn document_etag(&self, document: &str) -> String {
        let mut tag = String::with_capacity(48);
        tag.push('"');
        tag.push_str(document);
        tag.push('-');
        crate::hex::push(&mut tag, &self.digest.to_be_bytes());
        tag.push('-');
        tag.push_str(env!("CARGO_PKG_VERSION"));
        tag.push('"');
        tag
    }

    /// A strong ETag for the answer to `inputs` in the representation
    /// marked `representation`: the model file's digest and the inputs' own.
    pub fn etag(&self, inputs: &[Input], representation: char) -> String {
        let inputs_digest = inputs.iter().fold(format::FNV_OFFSET, |hash, input| {
            let (tag, bits) = match *input {
                Input::Number(x) => (0u8, x.to_bits()),
                Input::Category(i) => (1u8, i as u64),
            };
            let hash = format::fnv1a_extend(hash, &[tag]);
            format::fnv1a_extend(hash, &bits.to_le_bytes())
        });
        // Written by hand: this is on every `GET /predict`, and `format!`
        // costs several times more than the hashing.
        let mut tag = String::with_capacity(35);
        tag.push('"');
        for digest in [self.digest, inputs_digest] {
            crate::hex::push(&mut tag, &digest.to_be_bytes());
        }
        tag.push(representation);
        tag.push('"');
        tag
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ModelKind::Linear(_) => "linear",
            ModelKind::Trees(_) => "tree_ensemble",
            ModelKind::Random => "random",
        }
    }
}

impl Output {
    fn apply(&self, mut value: f64) -> f64 {
        if self.round {
            value = value.round();
        }
        if let Some((min, max)) = self.clamp {
            value = value.clamp(min, max);
        }
        value
    }
}

/// Where the served model comes from (`--model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Embedded,
    Random,
    File(PathBuf),
}

/// `--model`: `random`, a file path, or empty for the built-in model.
impl std::str::FromStr for ModelSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" => ModelSource::Embedded,
            "random" => ModelSource::Random,
            path => ModelSource::File(PathBuf::from(path)),
        })
    }
}

impl ModelSource {
    fn load(&self) -> Result<Model, String> {
        match self {
            ModelSource::Embedded => Model::embedded(),
            ModelSource::Random => Model::random(),
            ModelSource::File(path) => Model::load(path),
        }
    }
}

/// The served model. Requests take an `Arc` of it, so a reload never waits
/// for them nor changes the model under a request that already started.
pub struct ModelSlot {
    source: ModelSource,
    current: RwLock<Arc<Model>>,
}

impl ModelSlot {
    pub fn open(source: ModelSource) -> Result<ModelSlot, String> {
        let model = source.load()?;
        Ok(ModelSlot {
            source,
            current: RwLock::new(Arc::new(model)),
        })
    }

    pub fn get(&self) -> Arc<Model> {
        // A poisoned lock still holds a whole model: the swap cannot panic
        // half-way.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Loads the source again and swaps it in; on failure the running model
    /// stays and the error says why.
    pub fn reload(&self) -> Result<Arc<Model>, String> {
        let model = Arc::new(self.source.load()?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&model);
        Ok(model)
    }
}

#[cfg(test)]
mod tests;
