//! `GET /docs`: Swagger UI for the OpenAPI spec, as FastAPI serves it. The
//! page is a few lines of HTML; Swagger UI itself (about 1.5 MB of script
//! and style) loads from a CDN, or with `--docs-assets DIR` from a local
//! copy of the npm package `swagger-ui-dist`, served under `/docs/assets/`
//! (for offline hosts and `FROM scratch` images). `--no-docs` removes both
//! the page and the spec.

use std::fs::File;
use std::path::Path;

use crate::App;
use crate::http::{ApiError, Request, Response};

/// Where Swagger UI comes from without `--docs-assets`: jsDelivr's copy of
/// the npm package, major version 5, as FastAPI does.
const CDN: &str = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5";

/// Where the local copy is served.
pub const ASSETS_PATH: &str = "/docs/assets";

/// `GET /docs`: the page (it loads `config::REQUIRED_DOCS_ASSETS`); `Vary: Accept` since `GET /` serves it to
/// browsers too.
pub fn page(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let (base, etag) = if app.config.docs.assets.is_some() {
        (
            ASSETS_PATH,
            concat!("\"docs-", env!("CARGO_PKG_VERSION"), "-local\""),
        )
    } else {
        (CDN, concat!("\"docs-", env!("CARGO_PKG_VERSION"), "-cdn\""))
    };
    // The page changes with the build and where Swagger UI comes from.
    if request.if_none_match(etag) {
        return Ok(Response::new(304)
            .with_header("ETag", etag)
            .with_header("Cache-Control", "no-cache"));
    }
    let html = format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wren {version}: API documentation</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"##,
        version = env!("CARGO_PKG_VERSION"),
    );
    Ok(Response::new(200)
        .with_header("Content-Type", "text/html; charset=utf-8")
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache")
        .with_body(html.into_bytes()))
}

/// `GET /docs/assets/{file}`: a file of the `--docs-assets` folder, by its
/// plain name (no folders, no dot files), with a type by extension.
pub fn asset(app: &App, request: &mut Request<'_>) -> Result<Response, ApiError> {
    let Some(folder) = &app.config.docs.assets else {
        return Err(ApiError::not_found(
            "no local Swagger UI: /docs loads it from a CDN (set --docs-assets to serve one)",
        ));
    };
    let name = request.param_str("file")?;
    let plain = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
    if !plain {
        return Err(ApiError::not_found(format!("no asset named '{name}'")));
    }
    let content_type = content_type(name)
        .ok_or_else(|| ApiError::not_found(format!("no asset named '{name}'")))?;
    let file = File::open(Path::new(folder).join(name))
        .map_err(|_| ApiError::not_found(format!("no asset named '{name}'")))?;
    let len = file
        .metadata()
        .map_err(|err| ApiError::new(500, "cannot read a docs asset").with_cause(err.to_string()))?
        .len();
    Ok(Response::stream(200, Box::new(file), Some(len))
        .with_header("Content-Type", content_type)
        .with_header("Cache-Control", "max-age=3600"))
}

/// The types Swagger UI's package holds; anything else is not served.
fn content_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension {
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" | "json" => "application/json",
        "png" => "image/png",
        "html" => "text/html; charset=utf-8",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_swagger_ui_from_the_cdn_by_default() {
        let app = crate::app::test_app();
        let response = page(&app, &mut Request::new("GET", "/docs")).unwrap();
        let html = String::from_utf8(response.body_bytes().unwrap().to_vec()).unwrap();
        assert!(
            html.contains(&format!("{CDN}/swagger-ui-bundle.js")),
            "{html}"
        );
        assert!(html.contains(r#"url: "/openapi.json""#), "{html}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }

    #[test]
    fn only_known_kinds_of_files_are_served() {
        assert_eq!(
            content_type("swagger-ui-bundle.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type("swagger-ui.css"),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(content_type("package"), None);
        assert_eq!(content_type("secret.key"), None);
    }

    #[test]
    fn without_local_assets_they_are_not_found() {
        let app = crate::app::test_app();
        let mut request = Request::new("GET", "/docs/assets/swagger-ui.css");
        request.set_params(vec![(
            "file",
            crate::http::Param::Decoded("swagger-ui.css".into()),
        )]);
        assert_eq!(asset(&app, &mut request).unwrap_err().status(), 404);
    }
}
