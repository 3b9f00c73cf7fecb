//! What a web page needs besides the write routes to track with Segment's browser library
//! (analytics.js, `@segment/analytics-next`) against Baton, with no third-party host:
//!
//! - `GET /v1/projects/{key}/settings`: the settings the library fetches at load from its
//!   CDN, pointing its `Segment.io` destination at this collector (`apiHost`), with remote
//!   metrics off. Answered for browser keys (keys with origins), with CORS for their origins.
//! - `GET /analytics.js/v1/{key}/analytics.min.js` and `GET /analytics-next/bundles/{file}`:
//!   the library's own files, from the directory `browser_library` names (the npm package's
//!   `dist/umd`), the key written into the script as Segment's CDN does. Baton does not ship
//!   the library; without the directory these answer 404 saying how to set it.

use crate::collector::CollectorState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::path::{Path as FsPath, PathBuf};

/// The routes, on the collector's state.
pub(crate) fn routes() -> Router<CollectorState> {
    Router::new()
        .route("/v1/projects/{key}/settings", get(settings))
        .route("/analytics.js/v1/{key}/analytics.min.js", get(library))
        .route("/analytics-next/bundles/{file}", get(bundle))
}

fn not_found(message: impl Into<String>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": message.into() })),
    )
        .into_response()
}

/// The library's settings for a browser key: where to send (this host, `/v1`), how (the
/// scheme the page reached this host by), and nothing else to load.
async fn settings(
    State(state): State<CollectorState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(write_key) = state.browser_key(&key) else {
        return not_found("no browser write key by that name (a key with origins; docs/ingest.md)");
    };
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    if let Some(origin) = origin
        && !write_key.allows_origin(origin)
    {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": format!("pages from {origin} may not use this write key")
            })),
        )
            .into_response();
    }
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "a settings request needs a Host header" })),
        )
            .into_response();
    };
    let https = state.trusts_forwarded_for()
        && headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": format!("{host}/v1"),
                "protocol": if https { "https" } else { "http" },
                "unbundledIntegrations": [],
                "addBundledMetadata": false,
            }
        },
        "plan": { "track": { "__default": { "enabled": true } } },
        "metrics": { "sampleRate": 0 },
        "remotePlugins": [],
        "enabledMiddleware": {},
        "middlewareSettings": {},
        "analyticsNextEnabled": true,
        "legacyVideoPluginsEnabled": false,
    });
    let mut response = Json(body).into_response();
    let out = response.headers_mut();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(origin) = origin
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// A file of the library's directory, by a plain name (no directories).
fn library_file(dir: &FsPath, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && name.ends_with(".js");
    plain.then(|| dir.join(name))
}

fn javascript(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn read_library(state: &CollectorState, name: &str) -> Result<Vec<u8>, Response> {
    let Some(dir) = state.browser_library() else {
        return Err(not_found(
            "this collector does not serve analytics.js: set browser_library to the \
             dist/umd directory of @segment/analytics-next (docs/ingest.md, browsers)",
        ));
    };
    let Some(path) = library_file(&dir, name) else {
        return Err(not_found(format!("no library file {name:?}")));
    };
    tokio::fs::read(&path).await.map_err(|error| {
        tracing::warn!(path = %path.display(), %error, "cannot read a browser library file");
        not_found(format!("no library file {name:?}"))
    })
}

/// The library's main script, with the key written in (so a page needs only the script tag).
async fn library(State(state): State<CollectorState>, Path(key): Path<String>) -> Response {
    if state.browser_key(&key).is_none() {
        return not_found("no browser write key by that name (a key with origins; docs/ingest.md)");
    }
    let script = match read_library(&state, "standalone.js").await {
        Ok(script) => script,
        Err(response) => return response,
    };
    // The placeholder Segment's CDN fills; keys here are plain (checked by `browser_key`).
    let placeholder = b"\"__WRITE_KEY__\"";
    let filled = match script
        .windows(placeholder.len())
        .position(|window| window == placeholder)
    {
        Some(at) => {
            let mut filled = Vec::with_capacity(script.len() + key.len());
            filled.extend_from_slice(&script[..at]);
            filled.extend_from_slice(format!("\"{key}\"").as_bytes());
            filled.extend_from_slice(&script[at + placeholder.len()..]);
            filled
        }
        None => script,
    };
    javascript(filled)
}

async fn bundle(State(state): State<CollectorState>, Path(file): Path<String>) -> Response {
    match read_library(&state, &file).await {
        Ok(body) => javascript(body),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_script_names_are_served() {
        let dir = FsPath::new("/lib");
        assert_eq!(
            library_file(dir, "407.bundle.61efa1ac.js"),
            Some(PathBuf::from("/lib/407.bundle.61efa1ac.js"))
        );
        assert_eq!(library_file(dir, "../secret.js"), None);
        assert_eq!(library_file(dir, ".hidden.js"), None);
        assert_eq!(library_file(dir, "index.js.map"), None);
        assert_eq!(library_file(dir, "a/b.js"), None);
    }
}
