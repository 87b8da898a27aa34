//! CORS, the Fetch standard's protocol by which a browser lets a page from
//! another origin call wren: `--cors-origin` names the origins. An origin
//! named exactly may call every route, with credentials (the session
//! cookie, a bearer token, an API key); `*` lets any origin call the open
//! routes only, without credentials, since the standard forbids `*` with
//! credentials. Nothing is answered by default: a browser then keeps pages
//! of other origins out, as it should.
//!
//! It sits in front of the router, asking it only which routes a path has
//! (`Router::routes_at`): a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here, `204` when the origin
//! may make that call and `403` naming why not; other requests go through
//! and get the headers their route allows.

use std::borrow::Cow;

use crate::App;
use crate::handlers::session::Access;
use crate::http::{ApiError, Request, Response};
use crate::router::Router;
use crate::routes::Rule;

/// Request headers a cross-origin page may send.
const ALLOWED_HEADERS: &str =
    "Authorization, Content-Type, X-API-Key, X-Request-Id, If-None-Match, If-Match, Range";

/// Response headers a cross-origin page may read (beyond the safelisted).
const EXPOSED_HEADERS: &str =
    "ETag, Location, Retry-After, X-Request-Id, Content-Range, RateLimit, RateLimit-Policy";

/// How long a browser may keep a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins allowed, from `--cors-origin`.
#[derive(Debug)]
pub struct Cors {
    /// Origins named exactly (`https://app.example`), lower case.
    exact: Vec<String>,
    /// `*`: any origin, for the open routes.
    any: bool,
}

/// What an origin may do on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// Named exactly: anything, credentials included.
    Credentials,
    /// By `*`, on an open route.
    Anonymous,
    None,
}

impl Cors {
    /// `None` when no origin is allowed (the default).
    pub fn new(origins: &[String]) -> Option<Cors> {
        if origins.is_empty() {
            return None;
        }
        Some(Cors {
            exact: origins
                .iter()
                .filter(|origin| *origin != "*")
                .map(|origin| origin.to_ascii_lowercase())
                .collect(),
            any: origins.iter().any(|origin| origin == "*"),
        })
    }

    fn grant(&self, origin: &str, access: Access) -> Grant {
        if self
            .exact
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        {
            Grant::Credentials
        } else if self.any && access == Access::Open {
            Grant::Anonymous
        } else {
            Grant::None
        }
    }

    /// Answers a preflight, or runs `next` and adds what the route allows.
    pub fn handle(
        &self,
        router: &Router<App, Rule>,
        request: &mut Request<'_>,
        next: impl FnOnce(&mut Request<'_>) -> Response,
    ) -> Response {
        let Some(origin) = request.header("origin").map(str::to_owned) else {
            return next(request);
        };
        let routes = router.routes_at(request.path());
        if request.method() == "OPTIONS"
            && let Some(wanted) = request.header("access-control-request-method")
            && !routes.is_empty()
        {
            return self
                .preflight(&origin, wanted, &routes, request)
                .unwrap_or_else(ApiError::into_response);
        }
        let method = match request.method() {
            "HEAD" => "GET",
            other => other,
        };
        let access = routes
            .iter()
            .find(|(route_method, _)| *route_method == method)
            .map(|(_, rule)| rule.access);
        let response = next(request);
        match access.map(|access| self.grant(&origin, access)) {
            Some(Grant::Credentials) => with_origin(response, origin, true)
                .with_header("Access-Control-Expose-Headers", EXPOSED_HEADERS),
            Some(Grant::Anonymous) => with_origin(response, "*".to_owned(), false)
                .with_header("Access-Control-Expose-Headers", EXPOSED_HEADERS),
            Some(Grant::None) | None => self.varying(response),
        }
    }

    fn preflight(
        &self,
        origin: &str,
        wanted: &str,
        routes: &[(&'static str, &Rule)],
        request: &Request<'_>,
    ) -> Result<Response, ApiError> {
        let method = match wanted {
            "HEAD" => "GET",
            other => other,
        };
        let Some((_, rule)) = routes
            .iter()
            .find(|(route_method, _)| *route_method == method)
        else {
            return Err(refused(format!(
                "{wanted} is not a method of {}",
                crate::text::excerpt(request.path(), 200)
            )));
        };
        let grant = self.grant(origin, rule.access);
        if grant == Grant::None {
            return Err(refused(format!(
                "origin {} may not call {wanted} {}",
                crate::text::excerpt(origin, 100),
                crate::text::excerpt(request.path(), 200)
            )));
        }
        let mut methods: Vec<&str> = routes.iter().map(|(method, _)| *method).collect();
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        let (allowed_origin, credentials) = match grant {
            Grant::Credentials => (origin.to_owned(), true),
            _ => ("*".to_owned(), false),
        };
        Ok(with_origin(Response::new(204), allowed_origin, credentials)
            .with_header("Access-Control-Allow-Methods", methods.join(", "))
            .with_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            .with_header("Access-Control-Max-Age", PREFLIGHT_MAX_AGE)
            .with_header(
                "Vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ))
    }

    /// An answer that would differ for another origin says so to caches.
    fn varying(&self, response: Response) -> Response {
        if self.exact.is_empty() {
            response
        } else {
            response.with_header("Vary", "Origin")
        }
    }
}

fn with_origin(response: Response, origin: String, credentials: bool) -> Response {
    let response = response.with_header("Access-Control-Allow-Origin", Cow::Owned(origin));
    if credentials {
        response
            .with_header("Access-Control-Allow-Credentials", "true")
            .with_header("Vary", "Origin")
    } else {
        response
    }
}

fn refused(message: String) -> ApiError {
    ApiError::new(403, format!("CORS: {message}")).with_code("cors_refused")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_app;
    use crate::routes;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&origins.iter().map(|o| o.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn call(cors: &Cors, request: Request<'static>) -> Response {
        let app = test_app();
        let router = routes::table(&app);
        let mut request = request;
        cors.handle(&router, &mut request, |r| router.dispatch(&app, r))
    }

    fn preflight(path: &str, origin: &str, method: &str) -> Request<'static> {
        Request::new("OPTIONS", path)
            .with_header("Origin", origin)
            .with_header("Access-Control-Request-Method", method)
            .with_header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(Cors::new(&[]).is_none());
    }

    #[test]
    fn a_named_origin_may_call_with_credentials() {
        let cors = cors(&["https://App.example"]);
        let answer = call(
            &cors,
            preflight("/api/v1/keys", "https://app.example", "POST"),
        );
        assert_eq!(answer.status(), 204);
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            answer.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(
            answer.header("access-control-allow-methods"),
            Some("GET, HEAD, POST")
        );
        let status = Request::new("GET", "/status").with_header("Origin", "https://app.example");
        let answer = call(&cors, status);
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some("https://app.example")
        );
    }

    #[test]
    fn a_star_opens_the_open_routes_only_and_never_with_credentials() {
        let cors = cors(&["*"]);
        let open = call(
            &cors,
            preflight("/api/v1/predict", "https://any.example", "POST"),
        );
        assert_eq!(open.status(), 204);
        assert_eq!(open.header("access-control-allow-origin"), Some("*"));
        assert_eq!(open.header("access-control-allow-credentials"), None);
        let closed = call(
            &cors,
            preflight("/api/v1/keys", "https://any.example", "GET"),
        );
        assert_eq!(closed.status(), 403);
        let account =
            Request::new("GET", "/api/v1/account").with_header("Origin", "https://x.example");
        assert_eq!(
            call(&cors, account).header("access-control-allow-origin"),
            None
        );
    }

    #[test]
    fn other_origins_and_methods_are_refused_by_name() {
        let cors = cors(&["https://app.example"]);
        let stranger = call(&cors, preflight("/status", "https://evil.example", "GET"));
        assert_eq!(stranger.status(), 403);
        let wrong_method = call(&cors, preflight("/status", "https://app.example", "DELETE"));
        assert_eq!(wrong_method.status(), 403);
        let unrouted = call(&cors, preflight("/nowhere", "https://app.example", "GET"));
        assert_eq!(unrouted.status(), 404);
        let plain = Request::new("GET", "/status").with_header("Origin", "https://evil.example");
        let answer = call(&cors, plain);
        assert_eq!(answer.header("access-control-allow-origin"), None);
        assert_eq!(answer.header("vary"), Some("Accept"));
    }
}
