//! The operations console (`/admin`) and the developer portal (`/developer`): their HTML
//! shells and the CSS and JavaScript modules under `assets/`, embedded in the binary, served
//! by one axum [`router`] that the binary merges into the engine's listener (so the gateway
//! serves them like the API, same origin, no CDN).
//!
//! The pages carry no data and no secret: each is a shell whose scripts ask for an API key,
//! keep it in `sessionStorage` and call the public API with it (`Authorization: Bearer`).
//! Every answer here has the strict [`PAGE_CONTENT_SECURITY_POLICY`] (no inline script or
//! style anywhere in the assets), `nosniff` and no framing. Assets live under a version that is
//! the hash of all of them (`/console/assets/<version>/<file>`), cached for a year; the shells,
//! which name that version, are revalidated on every load.

use aragora_telemetry::{error_body, PAGE_CONTENT_SECURITY_POLICY};
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// What `/console/assets/<version>/` serves.
const ASSETS: [Asset; 6] = [
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("api.js", JS),
    asset!("charts.js", JS),
    asset!("admin.js", JS),
    asset!("developer.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The shells, `{{assets}}` standing for `/console/assets/<version>`.
const ADMIN_HTML: &str = include_str!("../assets/admin.html");
const DEVELOPER_HTML: &str = include_str!("../assets/developer.html");

/// The sections of `/admin`, each also at `/admin/<section>` (a link to it survives a reload).
pub const ADMIN_SECTIONS: [&str; 8] = [
    "overview", "slos", "breakers", "limits", "errors", "dr", "debates", "webhooks",
];

/// The hash of every asset: a new build with any file changed has a new version, so a browser
/// never mixes a cached old module with a new one.
pub fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for asset in &ASSETS {
            hash.update(asset.name.as_bytes());
            hash.update([0]);
            hash.update(asset.body);
        }
        hex::encode(&hash.finalize()[..6])
    })
}

fn render(shell: &'static str) -> String {
    shell.replace(
        "{{assets}}",
        &format!("/console/assets/{}", asset_version()),
    )
}

/// The routes of [`aragora_telemetry::PAGE_ROUTES`].
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(admin))
        .route("/admin/{section}", get(admin_section))
        .route("/developer", get(developer))
        .route("/console/assets/{version}/{file}", get(asset))
        .layer(axum::middleware::map_response(page_headers))
}

/// The headers of every answer here, errors included.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            PAGE_CONTENT_SECURITY_POLICY,
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}

fn html(shell: &'static str, cached: &'static OnceLock<String>) -> Response {
    let page = cached.get_or_init(|| render(shell)).clone();
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn admin() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    html(ADMIN_HTML, &PAGE)
}

async fn admin_section(Path(section): Path<String>) -> Response {
    if !ADMIN_SECTIONS.contains(&section.as_str()) {
        return not_found(format!(
            "/admin has no section {section:?}; the sections are {}",
            ADMIN_SECTIONS.join(", ")
        ));
    }
    admin().await
}

async fn developer() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    html(DEVELOPER_HTML, &PAGE)
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == file) else {
        return not_found(format!("the console has no asset {file:?}"));
    };
    if version != asset_version() {
        // An old page asking for its old build's files: reloading gets the current ones.
        return not_found(format!(
            "asset version {version:?} is not this build's ({}); reload the page",
            asset_version()
        ));
    }
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response()
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(error_body("not_found", &message)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into(),
        )
    }

    #[tokio::test]
    async fn the_shells_name_their_versioned_assets_and_forbid_inline_code() {
        for path in ["/admin", "/admin/slos", "/developer"] {
            let (status, headers, body) = get(path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(
                headers["content-security-policy"],
                PAGE_CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["cache-control"], "no-cache");
            let version = format!("/console/assets/{}/", asset_version());
            assert!(body.contains(&version), "{path}: {body}");
            // Under this policy an inline script or style would not run: none is written.
            assert!(
                !body.contains("<script>") && !body.contains("style="),
                "{path}"
            );
        }
        for asset in &ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            assert!(
                !text.contains("innerHTML"),
                "{}: build nodes, not markup",
                asset.name
            );
        }
    }

    #[tokio::test]
    async fn assets_are_cached_under_their_version_and_others_are_404_with_a_reason() {
        let path = format!("/console/assets/{}/admin.js", asset_version());
        let (status, headers, body) = get(&path).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], JS);
        assert!(headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(body.contains("import"), "{body}");

        let (status, headers, body) = get("/console/assets/000000000000/admin.js").await;
        assert_eq!(status, 404);
        assert!(body.contains("reload the page"), "{body}");
        assert_eq!(
            headers["content-security-policy"],
            PAGE_CONTENT_SECURITY_POLICY
        );
        let (status, _, body) = get(&format!("/console/assets/{}/x.js", asset_version())).await;
        assert_eq!(
            (status.as_u16(), body.contains("no asset \\\"x.js\\\"")),
            (404, true)
        );
        let (status, _, body) = get("/admin/nope").await;
        assert_eq!(status, 404);
        assert!(body.contains("overview, slos"), "{body}");
    }
}
