//! The list of problems found in a client's input, reported together.

use serde_json::Value;

use super::error::ApiError;

/// Problems found in client input, for a `422` listing them: the first
/// [`Problems::MAX_LISTED`] are built and listed, the rest only counted, so
/// a body of a million bad fields costs no more than a hundred.
#[derive(Debug, Default)]
pub struct Problems {
    listed: Vec<Value>,
    total: usize,
}

impl Problems {
    pub const MAX_LISTED: usize = 100;

    pub fn add(&mut self, problem: impl FnOnce() -> Value) {
        self.total += 1;
        if self.listed.len() < Self::MAX_LISTED {
            self.listed.push(problem());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// A `422` with one problem; `subject` as for [`Problems::into_error`].
    pub fn one(subject: (&str, &'static str), problem: Value) -> ApiError {
        let mut problems = Problems::default();
        problems.add(|| problem);
        problems.into_error(subject)
    }

    /// The `422`; `subject` is what has the problems (`"the input"`) and the
    /// error code.
    pub fn into_error(self, (what, code): (&str, &'static str)) -> ApiError {
        let total = self.total;
        let message = if total == 1 {
            format!("{what} has a problem, see details")
        } else if total > Self::MAX_LISTED {
            format!(
                "{what} has {total} problems; the first {} are listed",
                Self::MAX_LISTED
            )
        } else {
            format!("{what} has {total} problems, see details")
        };
        ApiError::new(422, message)
            .with_code(code)
            .with_details(Value::Array(self.listed))
    }
}
