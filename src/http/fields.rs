//! Named text fields from wherever the seed clients put them: a JSON
//! object, an `application/x-www-form-urlencoded` or `multipart/form-data`
//! body, or the query string
//! (the cloud service's clients send credentials there). The one place
//! where handlers' small inputs are parsed; the body is read within the
//! route's limit.

use std::io::Read;

use serde_json::Value;

use super::body::{Body, parse_json};
use super::error::ApiError;
use super::multipart::{self, Multipart};
use super::percent::percent_decode;
use super::problems::{Problem, Problems};
use super::request::{Request, media_type};
use crate::text::excerpt;

/// Fields in the order they were found; body fields first, then the query.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    values: Vec<(String, String)>,
}

const MULTIPART: &str = "multipart/form-data";

/// The request's `multipart/form-data` body, to read part by part (for a
/// part too large to hold as a field, such as an uploaded image).
pub fn multipart_body<'r, 'a>(
    request: &'r mut Request<'a>,
) -> Result<Multipart<&'r mut Body<'a>>, ApiError> {
    let content_type = request.header("content-type").unwrap_or("");
    let media_type = media_type(content_type);
    if media_type != MULTIPART {
        return Err(ApiError::new(
            415,
            format!(
                "send a multipart/form-data body, not '{}'",
                excerpt(&media_type, 100)
            ),
        ));
    }
    let boundary = multipart::boundary(content_type).ok_or_else(|| {
        ApiError::bad_request("a multipart/form-data body needs a valid boundary parameter")
    })?;
    Ok(Multipart::new(request.body(), &boundary))
}

impl Fields {
    /// Reads the body according to its `Content-Type` (none, or an empty
    /// body, means only the query string counts) and adds the query.
    pub fn from_request(request: &mut Request<'_>) -> Result<Fields, ApiError> {
        let mut fields = Fields::default();
        let media_type = request.media_type();
        if media_type == MULTIPART {
            // What follows the closing boundary is not read: the engine
            // drains or closes.
            fields.add_multipart(multipart_body(request)?)?;
        } else {
            let body = request.body().read_to_vec()?;
            if !body.is_empty() {
                fields.add_body(&media_type, &body)?;
            }
        }
        if let Some(query) = request.query() {
            fields.add_urlencoded(query)?;
        }
        Ok(fields)
    }

    /// Only the query string's fields (for GET routes).
    pub fn from_query(request: &Request<'_>) -> Result<Fields, ApiError> {
        let mut fields = Fields::default();
        if let Some(query) = request.query() {
            fields.add_urlencoded(query)?;
        }
        Ok(fields)
    }

    /// A JSON or urlencoded body; without a media type, JSON is recognised
    /// by its opening brace.
    fn add_body(&mut self, media_type: &str, body: &[u8]) -> Result<(), ApiError> {
        match media_type {
            "application/json" => self.add_json(body),
            "" if looks_like_json(body) => self.add_json(body),
            "application/x-www-form-urlencoded" | "" => {
                let text = std::str::from_utf8(body)
                    .map_err(|_| ApiError::bad_request("the form body is not valid UTF-8"))?;
                self.add_urlencoded(text)
            }
            other => Err(ApiError::new(
                415,
                format!(
                    "expected a JSON or form body, got Content-Type '{}'",
                    excerpt(other, 64)
                ),
            )),
        }
    }

    /// The page size in `limit`: `default` when absent, else a whole number
    /// from 1 to `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(text) => text
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    let problem = format!("must be a whole number from 1 to {max}");
                    Problems::one(Problem::field("limit", problem))
                        .into_bad_request("invalid_query")
                }),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value found under any of `names` (a field and its aliases).
    pub fn first_of(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    fn push(&mut self, name: String, value: String) {
        self.values.push((name, value));
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), ApiError> {
        let Value::Object(object) = parse_json(body)? else {
            return Err(ApiError::bad_request("the JSON body must be an object"));
        };
        for (name, value) in object {
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => continue,
                Value::Array(_) | Value::Object(_) => {
                    return Err(ApiError::bad_request(format!(
                        "field '{}' must be a string",
                        excerpt(&name, 64)
                    )));
                }
            };
            self.push(name, text);
        }
        Ok(())
    }

    /// Text parts become fields; file parts (those with a filename) are not
    /// fields, as in an HTML form's `request.form`.
    fn add_multipart(&mut self, mut multipart: Multipart<impl Read>) -> Result<(), ApiError> {
        while let Some(mut part) = multipart.next_part().map_err(ApiError::from_body_read)? {
            if part.head.filename.is_some() {
                continue;
            }
            let mut value = Vec::new();
            part.read_to_end(&mut value)
                .map_err(ApiError::from_body_read)?;
            let value = String::from_utf8(value).map_err(|_| {
                ApiError::bad_request(format!(
                    "form field '{}' is not valid UTF-8",
                    excerpt(&part.head.name, 64)
                ))
            })?;
            let name = part.head.name.clone();
            self.push(name, value);
        }
        Ok(())
    }

    fn add_urlencoded(&mut self, text: &str) -> Result<(), ApiError> {
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            self.push(decode_component(name)?, decode_component(value)?);
        }
        Ok(())
    }
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

fn decode_component(text: &str) -> Result<String, ApiError> {
    let bytes = percent_decode(text, true)
        .ok_or_else(|| ApiError::bad_request("malformed percent-encoding in form data"))?;
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("form data is not valid UTF-8 after decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;

    fn parse(content_type: Option<&str>, body: &str, target: &str) -> Result<Fields, ApiError> {
        let mut request = Request::new("POST", target);
        if let Some(content_type) = content_type {
            request = request.with_header("Content-Type", content_type);
        }
        let mut request = request.with_body(Body::from_bytes(body.as_bytes().to_vec()));
        Fields::from_request(&mut request)
    }

    #[test]
    fn json_objects() {
        let fields = parse(
            Some("application/json; charset=utf-8"),
            r#"{"username": "ann", "password": "p w", "n": 3, "none": null}"#,
            "/login",
        )
        .unwrap();
        assert_eq!(fields.get("username"), Some("ann"));
        assert_eq!(fields.get("password"), Some("p w"));
        assert_eq!(fields.get("n"), Some("3"));
        assert_eq!(fields.get("none"), None);
    }

    #[test]
    fn bad_json_is_400() {
        assert_eq!(
            parse(Some("application/json"), "{nope", "/")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse(Some("application/json"), "[1]", "/")
                .unwrap_err()
                .status(),
            400
        );
        let nested = parse(Some("application/json"), r#"{"a": {"b": 1}}"#, "/").unwrap_err();
        assert!(nested.message().contains("'a'"));
    }

    #[test]
    fn forms_and_query_strings() {
        let fields = parse(
            Some("application/x-www-form-urlencoded"),
            "user=orhan&pass=12+34%21&empty=",
            "/login?login=q&user=later",
        )
        .unwrap();
        assert_eq!(fields.get("pass"), Some("12 34!"));
        assert_eq!(fields.get("empty"), Some(""));
        assert_eq!(fields.get("login"), Some("q"));
        // The body comes first.
        assert_eq!(fields.get("user"), Some("orhan"));
        assert_eq!(fields.first_of(&["username", "user"]), Some("orhan"));
    }

    #[test]
    fn a_body_without_content_type_is_sniffed() {
        assert_eq!(
            parse(None, r#"{"a":"1"}"#, "/").unwrap().get("a"),
            Some("1")
        );
        assert_eq!(parse(None, "a=2", "/").unwrap().get("a"), Some("2"));
        assert_eq!(parse(None, "", "/?a=3").unwrap().get("a"), Some("3"));
    }

    #[test]
    fn multipart_forms() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\norhan\r\n\
                    --b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\n\
                    not a field\r\n\
                    --b\r\nContent-Disposition: form-data; name=\"pass\"\r\n\r\n12345\r\n--b--\r\n";
        let fields = parse(Some("multipart/form-data; boundary=b"), body, "/login?x=1").unwrap();
        assert_eq!(fields.get("user"), Some("orhan"));
        assert_eq!(fields.get("pass"), Some("12345"));
        assert_eq!(fields.get("file"), None);
        assert_eq!(fields.get("x"), Some("1"));

        let truncated = parse(
            Some("multipart/form-data; boundary=b"),
            "--b\r\nContent-Dis",
            "/",
        );
        assert_eq!(truncated.unwrap_err().status(), 400);
        let no_boundary = parse(Some("multipart/form-data"), body, "/").unwrap_err();
        assert!(no_boundary.message().contains("boundary"));
        let mut bad_utf8 = Request::new("POST", "/")
            .with_header("Content-Type", "multipart/form-data; boundary=b")
            .with_body(Body::from_bytes(
                b"--b\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n\xff\r\n--b--".to_vec(),
            ));
        let err = Fields::from_request(&mut bad_utf8).unwrap_err();
        assert!(err.message().contains("'p' is not valid UTF-8"));
    }

    #[test]
    fn other_media_types_are_415() {
        assert_eq!(
            parse(Some("text/csv"), "a,b", "/").unwrap_err().status(),
            415
        );
        assert_eq!(
            parse(Some("application/x-www-form-urlencoded"), "a=%zz", "/")
                .unwrap_err()
                .status(),
            400
        );
    }
}
