//! Loading `wren-model/1` files: the JSON layout (serde, unknown fields
//! refused) and the checks that make the evaluators safe to run. Every
//! problem names where it is, like `features[1].values[3]`.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::eval::{Aggregate, LEAF, Linear, Linked, Node, TreeEnsemble};
use super::features::{Encoding, Feature, FeatureKind};
use super::{Model, ModelKind, Output};

pub const FORMAT: &str = "wren-model/1";

/// The largest model file read, in bytes.
pub const MAX_MODEL_FILE_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_FEATURES: usize = 256;
pub const MAX_CATEGORY_VALUES: usize = 1000;
pub const MAX_TREES: usize = 10_000;
pub const MAX_TREE_NODES: usize = 1_000_000;
pub const MAX_TOTAL_NODES: usize = 10_000_000;
/// Integer feature bounds must be exact in a 64-bit float.
const MAX_EXACT_INTEGER: i64 = 1 << 53;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    name: String,
    version: String,
    features: Vec<FileFeature>,
    model: FileModel,
    #[serde(default)]
    output: Option<FileOutput>,
    #[serde(default)]
    training: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum FileFeature {
    Integer {
        name: String,
        min: i64,
        max: i64,
    },
    Number {
        name: String,
        #[serde(default)]
        min: Option<f64>,
        #[serde(default)]
        max: Option<f64>,
    },
    Category {
        name: String,
        encoding: Encoding,
        values: Vec<String>,
        #[serde(default)]
        aliases: Map<String, Value>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum FileModel {
    Linear {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    TreeEnsemble {
        aggregate: FileAggregate,
        #[serde(default)]
        base_score: f64,
        #[serde(default = "one")]
        learning_rate: f64,
        #[serde(default)]
        feature_precision: Precision,
        trees: Vec<FileTree>,
    },
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FileAggregate {
    Sum,
    Mean,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Precision {
    Float32,
    #[default]
    Float64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTree {
    feature: Vec<i64>,
    threshold: Vec<f64>,
    left: Vec<i64>,
    right: Vec<i64>,
    value: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutput {
    #[serde(default)]
    round: bool,
    #[serde(default)]
    clamp: Option<Clamp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clamp {
    min: f64,
    max: f64,
}

/// Parses and checks a model file; the error names the first problem.
pub fn parse(bytes: &[u8]) -> Result<Model, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|err| err.to_string())?;
    if file.format != FORMAT {
        return Err(format!(
            "format: expected \"{FORMAT}\", found \"{}\"",
            file.format
        ));
    }
    check_name("name", &file.name)?;
    if file.version.is_empty()
        || file.version.len() > 64
        || !file
            .version
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"')
    {
        return Err("version: must be 1 to 64 printable ASCII characters without '\"'".to_owned());
    }
    let features = features(file.features)?;
    let width = features.iter().map(Feature::width).sum();
    let kind = match file.model {
        FileModel::Linear {
            intercept,
            coefficients,
        } => {
            if coefficients.len() != width {
                return Err(format!(
                    "model.coefficients: the features encode to {width} positions, found {} coefficients",
                    coefficients.len()
                ));
            }
            ModelKind::Linear(Linear {
                intercept,
                coefficients,
            })
        }
        FileModel::TreeEnsemble {
            aggregate,
            base_score,
            learning_rate,
            feature_precision,
            trees,
        } => ModelKind::Trees(trees_of(
            trees,
            width,
            match aggregate {
                FileAggregate::Sum => Aggregate::Sum,
                FileAggregate::Mean => Aggregate::Mean,
            },
            base_score,
            learning_rate,
            feature_precision == Precision::Float32,
        )?),
    };
    let output = match file.output {
        None => Output::default(),
        Some(FileOutput { round, clamp }) => {
            if let Some(Clamp { min, max }) = &clamp
                && min > max
            {
                return Err(format!("output.clamp: min {min} is above max {max}"));
            }
            Output {
                round,
                clamp: clamp.map(|c| (c.min, c.max)),
            }
        }
    };
    Ok(Model {
        name: file.name,
        version: file.version,
        features,
        width,
        kind,
        output,
        training: file.training,
        digest: fnv1a(bytes),
    })
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: must be 1 to 64 letters, digits, '.', '_' or '-', found \"{}\"",
            crate::text::excerpt(name, 64)
        ))
    }
}

fn features(file: Vec<FileFeature>) -> Result<Vec<Feature>, String> {
    if file.is_empty() || file.len() > MAX_FEATURES {
        return Err(format!(
            "features: a model has 1 to {MAX_FEATURES} features, found {}",
            file.len()
        ));
    }
    let mut names = HashSet::new();
    let mut features = Vec::with_capacity(file.len());
    let mut offset = 0;
    for (i, feature) in file.into_iter().enumerate() {
        let at = format!("features[{i}]");
        let (name, kind) = match feature {
            FileFeature::Integer { name, min, max } => {
                if min > max {
                    return Err(format!("{at}: min {min} is above max {max}"));
                }
                if min < -MAX_EXACT_INTEGER || max > MAX_EXACT_INTEGER {
                    return Err(format!("{at}: integer bounds must be within ±2^53"));
                }
                (name, FeatureKind::Integer { min, max })
            }
            FileFeature::Number { name, min, max } => {
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    return Err(format!("{at}: min {min} is above max {max}"));
                }
                (name, FeatureKind::Number { min, max })
            }
            FileFeature::Category {
                name,
                encoding,
                values,
                aliases,
            } => (name, category(&at, encoding, values, aliases)?),
        };
        check_name(&format!("{at}.name"), &name)?;
        if !names.insert(name.clone()) {
            return Err(format!("{at}.name: \"{name}\" is used twice"));
        }
        let mut feature = Feature::new(name, kind);
        feature.offset = offset;
        offset += feature.width();
        features.push(feature);
    }
    Ok(features)
}

fn category(
    at: &str,
    encoding: Encoding,
    values: Vec<String>,
    aliases: Map<String, Value>,
) -> Result<FeatureKind, String> {
    if values.is_empty() || values.len() > MAX_CATEGORY_VALUES {
        return Err(format!(
            "{at}.values: a category has 1 to {MAX_CATEGORY_VALUES} values, found {}",
            values.len()
        ));
    }
    // Matching ignores ASCII case, so keys must differ ignoring it too; an
    // alias may repeat the value it names (`may` for `may`).
    let mut keys = HashMap::new();
    for (j, value) in values.iter().enumerate() {
        if keys.insert(value.to_ascii_lowercase(), j).is_some() {
            return Err(format!(
                "{at}.values[{j}]: \"{value}\" repeats an earlier value (case is ignored)"
            ));
        }
    }
    let mut alias_indices = Vec::with_capacity(aliases.len());
    for (alias, target) in aliases {
        let Value::String(target) = target else {
            return Err(format!(
                "{at}.aliases.{alias}: must name a value (a string)"
            ));
        };
        let Some(index) = values.iter().position(|v| *v == target) else {
            return Err(format!(
                "{at}.aliases.{alias}: \"{target}\" is not one of the values"
            ));
        };
        match keys.insert(alias.to_ascii_lowercase(), index) {
            Some(same) if same == index && values[index].eq_ignore_ascii_case(&alias) => continue,
            Some(_) => {
                return Err(format!(
                    "{at}.aliases.{alias}: clashes with another value or alias (case is ignored)"
                ));
            }
            None => alias_indices.push((alias, index)),
        }
    }
    Ok(FeatureKind::category(encoding, values, alias_indices, keys))
}

fn trees_of(
    trees: Vec<FileTree>,
    width: usize,
    aggregate: Aggregate,
    base_score: f64,
    learning_rate: f64,
    float32: bool,
) -> Result<TreeEnsemble, String> {
    if trees.is_empty() || trees.len() > MAX_TREES {
        return Err(format!(
            "model.trees: an ensemble has 1 to {MAX_TREES} trees, found {}",
            trees.len()
        ));
    }
    let total: usize = trees.iter().map(|t| t.value.len()).sum();
    if total > MAX_TOTAL_NODES {
        return Err(format!(
            "model.trees: at most {MAX_TOTAL_NODES} nodes in all, found {total}"
        ));
    }
    let mut nodes = Vec::with_capacity(total);
    let mut roots = Vec::with_capacity(trees.len());
    for (t, tree) in trees.iter().enumerate() {
        let at = format!("model.trees[{t}]");
        let n = tree.value.len();
        if n == 0 || n > MAX_TREE_NODES {
            return Err(format!(
                "{at}: a tree has 1 to {MAX_TREE_NODES} nodes, found {n}"
            ));
        }
        if [
            tree.feature.len(),
            tree.threshold.len(),
            tree.left.len(),
            tree.right.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return Err(format!(
                "{at}: feature, threshold, left, right and value must have one length"
            ));
        }
        let root = nodes.len();
        let mut is_child = vec![false; n];
        for i in 0..n {
            let (left, right) = (tree.left[i], tree.right[i]);
            if left == -1 && right == -1 {
                nodes.push(Node {
                    feature: 0,
                    left: LEAF,
                    right: LEAF,
                    threshold_or_value: tree.value[i],
                });
                continue;
            }
            if left == -1 || right == -1 {
                return Err(format!(
                    "{at}: node {i} has one child; a node is a leaf (both -1) or a split (neither)"
                ));
            }
            for child in [left, right] {
                if child <= i as i64 || child >= n as i64 {
                    return Err(format!(
                        "{at}: node {i} points at node {child}; children must come after their parent, within the tree's {n} nodes"
                    ));
                }
                let child = child as usize;
                if std::mem::replace(&mut is_child[child], true) {
                    return Err(format!("{at}: node {child} is the child of two splits"));
                }
            }
            let feature = tree.feature[i];
            if feature < 0 || feature >= width as i64 {
                return Err(format!(
                    "{at}: node {i} splits on position {feature}; the features encode to {width} positions"
                ));
            }
            nodes.push(Node {
                feature: feature as u32,
                left: (root + left as usize) as u32,
                right: (root + right as usize) as u32,
                threshold_or_value: tree.threshold[i],
            });
        }
        roots.push(root as u32);
    }
    Ok(TreeEnsemble::new(
        Linked { nodes, roots },
        aggregate,
        base_score,
        learning_rate,
        float32,
    ))
}

/// FNV-1a, 64 bits: a stable digest of the file for ETags, the same in
/// every build and on every instance.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

pub(super) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a digest over more bytes.
pub(super) fn fnv1a_extend(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
