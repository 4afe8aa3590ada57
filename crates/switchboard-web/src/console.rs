//! The browser console, served from assets embedded in the binary at build time (nothing
//! is fetched from elsewhere, and building the server needs no JavaScript tooling).
//!
//! `/` is the page, `/console/<file>` its styles and scripts, and `/js/<file>` the
//! JavaScript client's modules, which the console imports as they are: a browser loads
//! them straight from here, so what runs in the page is the published client itself.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// One embedded file: its name under its route and its text.
struct Asset {
    name: &'static str,
    text: &'static str,
}

macro_rules! assets {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(Asset { name: $name, text: include_str!(concat!($dir, $name)) }),*]
    };
}

/// The console's own files, under `/console/`.
const CONSOLE: &[Asset] = assets!("../console/":
    "admin.js",
    "app.js",
    "channels.js",
    "direct.js",
    "groups.js",
    "style.css",
    "ui.js",
);

/// Every file of the JavaScript client's sources, under `/js/` (a test checks that none
/// is missing).
const CLIENT: &[Asset] = assets!("../../../clients/js/src/":
    "bytes.js",
    "client.js",
    "crc32c.js",
    "errors.js",
    "fields.js",
    "frame.js",
    "hmac.js",
    "inbound.js",
    "index.d.ts",
    "index.js",
    "message.js",
    "packets.js",
    "queue.js",
    "sha256.js",
    "subject.js",
    "subscription.js",
);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(console_file))
        .route("/js/{file}", get(client_file))
}

async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../console/index.html"),
    )
}

async fn console_file(Path(file): Path<String>) -> Response {
    serve(CONSOLE, &file)
}

async fn client_file(Path(file): Path<String>) -> Response {
    serve(CLIENT, &file)
}

fn serve(assets: &[Asset], file: &str) -> Response {
    match assets.iter().find(|asset| asset.name == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, content_type(asset.name)),
                // Revalidated on each load: a server upgraded in place serves its own
                // console, never a stale mix of two versions' modules.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".ts") {
        "text/plain; charset=utf-8"
    } else if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_in(dir: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
            .map(|entry| entry.expect("a directory entry"))
            .filter(|entry| entry.path().is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn missing(assets: &[Asset], files: &[String], skip: &[&str]) -> Vec<String> {
        files
            .iter()
            .filter(|file| !skip.contains(&file.as_str()))
            .filter(|file| !assets.iter().any(|asset| asset.name == file.as_str()))
            .cloned()
            .collect()
    }

    #[test]
    fn every_file_of_the_javascript_client_is_served() {
        let files = files_in("../../clients/js/src");
        assert!(!files.is_empty());
        let missing = missing(CLIENT, &files, &[]);
        assert!(
            missing.is_empty(),
            "clients/js/src files not served under /js/ (add them to CLIENT in console.rs): {missing:?}"
        );
    }

    #[test]
    fn every_file_of_the_console_is_served() {
        let files = files_in("console");
        let missing = missing(CONSOLE, &files, &["index.html"]);
        assert!(
            missing.is_empty(),
            "console files not served under /console/ (add them to CONSOLE in console.rs): {missing:?}"
        );
    }

    #[test]
    fn an_unknown_file_is_not_found() {
        assert_eq!(
            serve(CLIENT, "../Cargo.toml").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(serve(CONSOLE, "nope.js").status(), StatusCode::NOT_FOUND);
    }
}
