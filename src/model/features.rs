//! A model's named inputs: what each accepts, and how a value becomes
//! positions of the encoded input row (see `docs/MODEL_FORMAT.md`).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

/// One named input of a prediction request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
    /// Where this feature's positions start in the encoded row.
    #[serde(skip)]
    pub(super) offset: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    Integer {
        min: i64,
        max: i64,
    },
    Number {
        #[serde(skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Category {
        encoding: Encoding,
        values: Vec<String>,
        /// Alias -> value, as the file has them.
        #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "aliases_map")]
        aliases: Vec<(String, String)>,
        /// `values` and aliases in ASCII lower case, for matching.
        #[serde(skip)]
        lookup: HashMap<String, usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    OneHot,
    Ordinal,
}

/// A parsed input value: a number, or a category's index in its `values`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    Number(f64),
    Category(usize),
}

impl Feature {
    pub(super) fn new(name: String, kind: FeatureKind) -> Self {
        Feature {
            name,
            kind,
            offset: 0,
        }
    }

    /// How many positions of the encoded row this feature takes.
    pub fn width(&self) -> usize {
        match &self.kind {
            FeatureKind::Category {
                encoding: Encoding::OneHot,
                values,
                ..
            } => values.len(),
            _ => 1,
        }
    }

    /// Parses a value given as text: a path segment or a form field.
    pub fn parse_text(&self, text: &str) -> Result<Input, String> {
        match &self.kind {
            FeatureKind::Integer { min, max } => {
                // `3.0` is a whole number too, as in JSON instances (a JSON
                // form reaches here as the text of its number).
                let n = text
                    .parse::<i64>()
                    .ok()
                    .or_else(|| text.parse::<f64>().ok().and_then(whole_number));
                match n {
                    Some(n) => self.check_integer(n, *min, *max),
                    None => Err(self.integer_rule(*min, *max)),
                }
            }
            FeatureKind::Number { min, max } => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => self.check_number(x, *min, *max),
                _ => Err("must be a finite number".to_owned()),
            },
            FeatureKind::Category { .. } => self.parse_category(text),
        }
    }

    /// Parses a value from a JSON instance, where types are strict: a
    /// number where a number is expected, a string for a category.
    pub fn parse_json(&self, value: &Value) -> Result<Input, String> {
        match (&self.kind, value) {
            (FeatureKind::Integer { min, max }, Value::Number(number)) => {
                let n = number
                    .as_i64()
                    .or_else(|| number.as_f64().and_then(whole_number));
                match n {
                    Some(n) => self.check_integer(n, *min, *max),
                    None => Err(self.integer_rule(*min, *max)),
                }
            }
            (FeatureKind::Number { min, max }, Value::Number(number)) => match number.as_f64() {
                Some(x) if x.is_finite() => self.check_number(x, *min, *max),
                _ => Err("must be a finite number".to_owned()),
            },
            (FeatureKind::Category { .. }, Value::String(text)) => self.parse_category(text),
            (kind, other) => Err(format!(
                "must be {}, not {}",
                match kind {
                    FeatureKind::Integer { .. } => "an integer",
                    FeatureKind::Number { .. } => "a number",
                    FeatureKind::Category { .. } => "a string",
                },
                json_type(other)
            )),
        }
    }

    /// Writes `input` into this feature's positions of `row`.
    pub(super) fn encode(&self, input: Input, row: &mut [f64]) {
        let slots = &mut row[self.offset..self.offset + self.width()];
        match (&self.kind, input) {
            (
                FeatureKind::Category {
                    encoding: Encoding::OneHot,
                    ..
                },
                Input::Category(index),
            ) => {
                slots.fill(0.0);
                slots[index] = 1.0;
            }
            (FeatureKind::Category { .. }, Input::Category(index)) => slots[0] = index as f64,
            (_, Input::Number(x)) => slots[0] = x,
            // Inputs come from this feature's own parse methods.
            (_, Input::Category(_)) => unreachable!("a category input for a numeric feature"),
        }
    }

    fn check_integer(&self, n: i64, min: i64, max: i64) -> Result<Input, String> {
        if (min..=max).contains(&n) {
            Ok(Input::Number(n as f64))
        } else {
            Err(self.integer_rule(min, max))
        }
    }

    fn integer_rule(&self, min: i64, max: i64) -> String {
        format!("must be a whole number from {min} to {max}")
    }

    fn check_number(&self, x: f64, min: Option<f64>, max: Option<f64>) -> Result<Input, String> {
        let too_low = min.is_some_and(|min| x < min);
        let too_high = max.is_some_and(|max| x > max);
        if too_low || too_high {
            let bound = |b: Option<f64>| b.map_or("any".to_owned(), |b| b.to_string());
            return Err(format!(
                "must be a number from {} to {}",
                bound(min),
                bound(max)
            ));
        }
        Ok(Input::Number(x))
    }

    fn parse_category(&self, text: &str) -> Result<Input, String> {
        let FeatureKind::Category { values, lookup, .. } = &self.kind else {
            unreachable!("parse_category on a numeric feature")
        };
        // Lower-cased on the stack: this runs for every legacy request.
        let mut buf = [0u8; 64];
        let lowered = if text.len() <= buf.len() {
            let key = &mut buf[..text.len()];
            key.copy_from_slice(text.as_bytes());
            key.make_ascii_lowercase();
            Cow::Borrowed(std::str::from_utf8(key).unwrap_or_default())
        } else {
            Cow::Owned(text.to_ascii_lowercase())
        };
        match lookup.get(lowered.as_ref()) {
            Some(&index) => Ok(Input::Category(index)),
            None => {
                let shown = crate::text::excerpt(text, 64);
                let allowed = if values.len() <= 24 {
                    values.join(", ")
                } else {
                    format!("{} values, see GET /api/v1/model", values.len())
                };
                Err(format!(
                    "unknown {} '{shown}' (allowed: {allowed})",
                    self.name
                ))
            }
        }
    }
}

impl FeatureKind {
    /// A category over `values`; each alias comes with the index of the
    /// value it stands for, and `lookup` maps every value and alias, in
    /// ASCII lower case, to its index (all checked by the loader).
    pub(super) fn category(
        encoding: Encoding,
        values: Vec<String>,
        aliases: Vec<(String, usize)>,
        lookup: HashMap<String, usize>,
    ) -> Self {
        let aliases = aliases
            .into_iter()
            .map(|(alias, i)| (alias, values[i].clone()))
            .collect();
        FeatureKind::Category {
            encoding,
            values,
            aliases,
            lookup,
        }
    }
}

/// `x` as an integer when it is whole and exact in a 64-bit float.
fn whole_number(x: f64) -> Option<i64> {
    (x.fract() == 0.0 && x.abs() <= 2f64.powi(53)).then_some(x as i64)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn aliases_map<S: serde::Serializer>(
    aliases: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(aliases.iter().map(|(alias, value)| (alias, value)))
}
