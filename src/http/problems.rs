//! The one list of problems found in a client's input, and its two answers.
//!
//! A handler collects everything wrong with its input in [`Problems`], then
//! chooses the answer in one call:
//! - [`Problems::into_bad_request`]: `400`, the message joining every
//!   problem (`'type' is required; 'amount' must be a decimal number`). For
//!   the seed routes, whose contracts say `400` with those sentences, and for
//!   problems in the request target (path segments, query parameters),
//!   which are `400` on every route.
//! - [`Problems::into_unprocessable`]: `422`, the message counting them. For
//!   the bodies of wren's own `/api/v1` routes: well-formed JSON whose
//!   content is wrong.
//!
//! Both list the same `details`, one object per problem:
//! `{"instance"?, "field"?, "problem", "reason"?}`.

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;

/// One thing wrong with the input: where it is (a field, an instance of a
/// batch, or the input as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Problem {
    /// A problem with the input as a whole (`"the body must be an object"`).
    pub fn new(problem: impl Into<String>) -> Self {
        Problem {
            instance: None,
            field: None,
            problem: problem.into(),
            reason: None,
        }
    }

    /// A problem with one field; `problem` reads after the field's name
    /// (`"is missing"`).
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Problem {
            field: Some(field.into()),
            ..Problem::new(problem)
        }
    }

    /// The problem is in the batch instance at `index`.
    pub fn in_instance(mut self, index: usize) -> Self {
        self.instance = Some(index);
        self
    }

    /// Why, in another party's words (an object store refusing keys), kept
    /// beside the problem so that the problem's own words stay the contract's.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The problem as a joined message names it: `'field' problem`.
    fn sentence(&self) -> String {
        match &self.field {
            Some(field) => format!("'{field}' {}", self.problem),
            None => self.problem.clone(),
        }
    }
}

/// Problems found in client input, reported together: the first
/// [`Problems::MAX_LISTED`] are built and listed, the rest only counted, so
/// a body of a million bad fields costs no more than a hundred.
#[derive(Debug, Default)]
pub struct Problems {
    listed: Vec<Problem>,
    total: usize,
}

impl Problems {
    pub const MAX_LISTED: usize = 100;

    /// A list of one problem, for a check that stops at its first.
    pub fn one(problem: Problem) -> Self {
        Problems {
            listed: vec![problem],
            total: 1,
        }
    }

    /// Counts a problem; `problem` runs only while there is room to list it.
    pub fn add(&mut self, problem: impl FnOnce() -> Problem) {
        self.total += 1;
        if self.listed.len() < Self::MAX_LISTED {
            self.listed.push(problem());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The `400` with `code`, whose message is every listed problem's
    /// sentence joined with `; ` (and how many more there were).
    pub fn into_bad_request(self, code: &'static str) -> ApiError {
        debug_assert!(!self.is_empty(), "an error without a problem");
        let sentences: Vec<String> = self.listed.iter().map(Problem::sentence).collect();
        let mut message = sentences.join("; ");
        let unlisted = self.total - self.listed.len();
        if unlisted > 0 {
            message.push_str(&format!("; and {unlisted} more problems"));
        }
        ApiError::bad_request(message)
            .with_code(code)
            .with_details(self.into_details())
    }

    /// The `422` with `code`, whose message counts the problems `what` has
    /// (`"the input"`) and sends the reader to the details.
    pub fn into_unprocessable(self, what: &str, code: &'static str) -> ApiError {
        debug_assert!(!self.is_empty(), "an error without a problem");
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
            .with_details(self.into_details())
    }

    fn into_details(self) -> Value {
        // Strings and numbers only: serializing cannot fail.
        serde_json::to_value(self.listed).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(error: ApiError) -> Value {
        serde_json::from_slice(error.into_response().body_bytes().unwrap()).unwrap()
    }

    fn two_problems() -> Problems {
        let mut problems = Problems::default();
        problems.add(|| Problem::field("type", "is required"));
        problems.add(|| Problem::new("the body must be an object"));
        problems
    }

    #[test]
    fn a_million_problems_build_a_hundred() {
        let mut problems = Problems::default();
        let mut built = 0;
        for i in 0..1_000_000 {
            problems.add(|| {
                built += 1;
                Problem::field(format!("k{i}"), "is not a field")
            });
        }
        assert_eq!(built, Problems::MAX_LISTED);
        let error = problems.into_unprocessable("the input", "invalid_input");
        assert_eq!(
            error.message(),
            "the input has 1000000 problems; the first 100 are listed"
        );
        let body = body(error);
        assert_eq!(body["details"].as_array().unwrap().len(), 100);
        assert_eq!(body["details"][99]["field"], "k99");
    }

    #[test]
    fn a_bad_request_joins_the_sentences() {
        let error = two_problems().into_bad_request("invalid_payload");
        assert_eq!(error.status(), 400);
        assert_eq!(error.code(), "invalid_payload");
        assert_eq!(
            error.message(),
            "'type' is required; the body must be an object"
        );
        assert_eq!(
            body(error)["details"],
            json!([
                {"field": "type", "problem": "is required"},
                {"problem": "the body must be an object"},
            ])
        );
    }

    #[test]
    fn a_bad_request_counts_what_it_does_not_list() {
        let mut problems = Problems::default();
        for _ in 0..Problems::MAX_LISTED + 2 {
            problems.add(|| Problem::field("x", "is wrong"));
        }
        let message = problems
            .into_bad_request("invalid_fields")
            .message()
            .to_owned();
        assert_eq!(
            message.matches("'x' is wrong").count(),
            Problems::MAX_LISTED
        );
        assert!(
            message.ends_with("'x' is wrong; and 2 more problems"),
            "{message}"
        );
    }

    #[test]
    fn an_unprocessable_answer_counts_and_lists() {
        let error = two_problems().into_unprocessable("the profile", "invalid_profile");
        assert_eq!(error.status(), 422);
        assert_eq!(error.code(), "invalid_profile");
        assert_eq!(error.message(), "the profile has 2 problems, see details");
        assert_eq!(body(error)["details"][0]["field"], "type");
    }

    #[test]
    fn one_problem_in_both_answers() {
        let problem = Problem::field("seller_available", "is missing")
            .in_instance(3)
            .with_reason("upstream said no");
        let unprocessable =
            Problems::one(problem.clone()).into_unprocessable("the input", "invalid_input");
        assert_eq!(
            unprocessable.message(),
            "the input has a problem, see details"
        );
        let bad_request = Problems::one(problem).into_bad_request("invalid_fields");
        assert_eq!(bad_request.message(), "'seller_available' is missing");
        let expected = json!([{
            "instance": 3,
            "field": "seller_available",
            "problem": "is missing",
            "reason": "upstream said no",
        }]);
        assert_eq!(body(unprocessable)["details"], expected);
        assert_eq!(body(bad_request)["details"], expected);
    }
}
