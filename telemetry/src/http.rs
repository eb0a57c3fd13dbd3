//! What the HTTP surfaces of every component share: the route templates that bound the
//! `route` label, the `method` label, and the one error envelope every non-2xx JSON answer
//! carries (`{"error": {"code", "message"}}`), whether the engine, the gateway's edge and admin
//! listeners or the chaos proxy's API writes it.

use serde_json::{json, Value};

/// The engine's route templates: the `route` label values both the engine (from its router)
/// and the gateway (from [`route_template`]) use.
pub const ROUTES: &[&str] = &[
    "/api/debates",
    "/api/debates/{id}",
    "/api/debates/{id}/messages",
    "/api/debates/{id}/cancel",
    "/api/debates/{id}/receipt",
    "/api/v1/debates",
    "/api/v1/debates/{id}",
    "/api/v1/debates/{id}/messages",
    "/api/v1/debates/{id}/cancel",
    "/api/v1/debates/{id}/receipt",
    "/api/agents",
    "/api/receipts/verify",
    "/api/system/circuit-breakers",
    "/api/system/circuit-breakers/reset",
    "/api/system/circuit-breakers/{agent}/reset",
    "/api/system/faults",
    "/api/system/faults/{id}",
    "/api/drills",
    "/api/auth/me",
    "/api/auth/me/usage",
    "/api/auth/api-key",
    "/api/auth/api-keys",
    "/api/auth/api-key/{id}",
    "/api/auth/token",
    "/api/admin/maintenance",
    "/api/admin/maintenance/enable",
    "/api/admin/maintenance/disable",
    "/api/admin/stats",
    "/api/admin/schedulers/receipt-retention/status",
    "/api/admin/schedulers/receipt-retention/cleanup",
    "/api/system/errors",
    "/api/system/upstreams",
    "/api/system/rate-limits",
    "/api/admin/webhooks",
    "/api/admin/webhooks/dead-letters",
    "/api/admin/webhooks/{id}",
    "/api/admin/webhooks/{id}/pause",
    "/api/admin/webhooks/{id}/resume",
    "/api/admin/webhooks/deliveries/{id}/retry",
    "/api/v1/agents",
    "/api/v1/receipts/verify",
    "/api/v1/system/circuit-breakers",
    "/api/v1/system/circuit-breakers/reset",
    "/api/v1/system/circuit-breakers/{agent}/reset",
    "/api/v1/system/faults",
    "/api/v1/system/faults/{id}",
    "/api/v1/drills",
    "/api/v1/auth/me",
    "/api/v1/auth/me/usage",
    "/api/v1/auth/api-key",
    "/api/v1/auth/api-keys",
    "/api/v1/auth/api-key/{id}",
    "/api/v1/auth/token",
    "/api/v1/admin/maintenance",
    "/api/v1/admin/maintenance/enable",
    "/api/v1/admin/maintenance/disable",
    "/api/v1/admin/stats",
    "/api/v1/admin/schedulers/receipt-retention/status",
    "/api/v1/admin/schedulers/receipt-retention/cleanup",
    "/api/v1/system/errors",
    "/api/v1/system/upstreams",
    "/api/v1/system/rate-limits",
    "/api/v1/admin/webhooks",
    "/api/v1/admin/webhooks/dead-letters",
    "/api/v1/admin/webhooks/{id}",
    "/api/v1/admin/webhooks/{id}/pause",
    "/api/v1/admin/webhooks/{id}/resume",
    "/api/v1/admin/webhooks/deliveries/{id}/retry",
    "/api/openapi.json",
    "/api/v1/openapi.json",
    "/api/health",
    "/api/health/db",
    "/api/health/redis",
    "/api/health/ready",
    "/api/ready",
    "/api/v1/status",
    "/health",
    "/api/slo",
    "/api/slo/history",
    "/api/drills/run",
    "/healthz",
    "/readyz",
    "/metrics",
    "/ws",
    "/admin",
    "/admin/{section}",
    "/developer",
    "/console/assets/{version}/{file}",
];

/// The web pages' templates (the operations console and developer portal of `aragora-console`,
/// merged into the engine's listener by the binary): in [`ROUTES`] for their labels, and
/// answered with [`PAGE_CONTENT_SECURITY_POLICY`], also at the edge.
pub const PAGE_ROUTES: [&str; 4] = [
    "/admin",
    "/admin/{section}",
    "/developer",
    "/console/assets/{version}/{file}",
];

/// The pages' Content-Security-Policy: scripts, styles and connections from their own origin
/// only (no inline script or style, so an injected string cannot run), never framed.
pub const PAGE_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The `route` label of a path that matches no template of [`ROUTES`].
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The route template a raw path belongs to (`/api/debates/abc` → `/api/debates/{id}`), or
/// `unmatched`: label values stay bounded whatever clients send.
pub fn route_template(path: &str) -> &'static str {
    route_name(route_index(path))
}

/// The place in [`ROUTES`] of the template a raw path belongs to, `ROUTES.len()` when none
/// matches (`unmatched`): what a component indexes the series it resolves once by.
pub fn route_index(path: &str) -> usize {
    let path = path.trim_end_matches('/').as_bytes();
    let slashes = path.iter().filter(|&&b| b == b'/').count();
    ROUTES
        .iter()
        .zip(SLASHES)
        .position(|(template, count)| {
            usize::from(count) == slashes && template_matches(template.as_bytes(), path)
        })
        .unwrap_or(ROUTES.len())
}

/// The `/`s of each template of [`ROUTES`]: a path can only match a template with as many
/// (each segment is one, a `{...}` included), so a path is walked against those alone, and an
/// unmatched one (`/`, a typo) usually against none (it was tried against every template).
const SLASHES: [u8; ROUTES.len()] = {
    let mut counts = [0u8; ROUTES.len()];
    let mut i = 0;
    while i < ROUTES.len() {
        let bytes = ROUTES[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] == b'/' {
                counts[i] += 1;
            }
            j += 1;
        }
        i += 1;
    }
    counts
};

/// Whether `path` has the segments of `template`, a `{...}` segment matching any one. On the
/// gateway's hot path, for every template until one matches: a walk over the bytes, without
/// allocating (`str::split` here cost a tenth of the gateway's instructions per request).
fn template_matches(template: &[u8], path: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    loop {
        let segment_end = |text: &[u8], from: usize| {
            memchr_slash(&text[from..]).map_or(text.len(), |at| from + at)
        };
        let (part_end, segment_end) = (segment_end(template, t), segment_end(path, p));
        let part = &template[t..part_end];
        if !(part.first() == Some(&b'{') || part == &path[p..segment_end]) {
            return false;
        }
        match (part_end == template.len(), segment_end == path.len()) {
            (false, false) => (t, p) = (part_end + 1, segment_end + 1),
            (template_done, path_done) => return template_done && path_done,
        }
    }
}

fn memchr_slash(text: &[u8]) -> Option<usize> {
    text.iter().position(|&b| b == b'/')
}

/// The `route` label of a [`route_index`].
pub fn route_name(index: usize) -> &'static str {
    ROUTES.get(index).copied().unwrap_or(UNMATCHED_ROUTE)
}

/// Every `method` label [`method_label`] gives, `other` last.
pub const METHOD_LABELS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];

/// The `method` label: the standard methods, anything else as `other`, so a client inventing
/// methods cannot grow the label set. Takes the method as written (`Method::as_str`, or the
/// gateway's lean engine's parsed head).
pub fn method_label(method: &str) -> &'static str {
    METHOD_LABELS
        .iter()
        .find(|label| **label == method)
        .copied()
        .unwrap_or(METHOD_LABELS[METHOD_LABELS.len() - 1])
}

/// The error envelope: `code` is a stable machine-readable word, `message` says what was wrong
/// and what to do about it.
pub fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// The body of every error answer of every aragora HTTP surface, as the OpenAPI documents
/// (the engine's, the gateway admin API's) describe it; what [`error_body`] renders (a test
/// holds the two equal).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no debate with id \"x\"; list debates with GET /api/debates"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable (`not_found`, `validation_failed`, `unauthorized`, ...).
    pub code: String,
    /// What was wrong and what to do about it, for a person.
    pub message: String,
}

/// The envelope's `code` for a request body refused before any handler read it, by the status
/// the framework refused it with: one vocabulary for every JSON API (engine, fault proxy).
pub fn body_rejection_code(status: ::http::StatusCode) -> &'static str {
    match status {
        ::http::StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        ::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        ::http::StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        _ => "invalid_json",
    }
}

#[cfg(test)]
mod route_tests {
    /// The matcher as it was first written (`str::split`), for comparing odd paths.
    fn by_split(path: &str) -> &'static str {
        let path = path.trim_end_matches('/');
        super::ROUTES
            .iter()
            .find(|template| {
                let mut parts = template.split('/');
                let mut segments = path.split('/');
                loop {
                    match (parts.next(), segments.next()) {
                        (None, None) => return true,
                        (Some(part), Some(segment)) if part.starts_with('{') || part == segment => {
                        }
                        _ => return false,
                    }
                }
            })
            .copied()
            .unwrap_or(super::UNMATCHED_ROUTE)
    }

    #[test]
    fn the_byte_matcher_agrees_with_splitting_on_odd_paths() {
        for path in [
            "",
            "/",
            "//",
            "/api",
            "/api/",
            "/api/debates",
            "/api/debates/",
            "/api/debates//",
            "/api/debates//messages",
            "/api/debates/x/messages/",
            "/api/debates/x/y",
            "api/debates",
            "/API/debates",
            "/ws",
            "/ws/",
            "/wss",
            "/healthz",
            "/api/v1/debates/{id}",
            "/api/system/circuit-breakers/a/reset",
            "/api/system/circuit-breakers//reset",
            "/metrics?x",
            "/api/debates/x/messages/extra",
        ] {
            assert_eq!(super::route_template(path), by_split(path), "{path:?}");
        }
    }

    use super::{
        body_rejection_code, error_body, method_label, route_template, PAGE_ROUTES, ROUTES,
    };

    #[test]
    fn a_body_of_the_wrong_shape_fails_validation_and_broken_json_is_invalid() {
        assert_eq!(
            body_rejection_code(::http::StatusCode::UNPROCESSABLE_ENTITY),
            "validation_failed"
        );
        assert_eq!(
            body_rejection_code(::http::StatusCode::BAD_REQUEST),
            "invalid_json"
        );
    }

    #[test]
    fn raw_paths_map_to_templates() {
        assert_eq!(route_template("/api/debates/3f2a"), "/api/debates/{id}");
        assert_eq!(
            route_template("/api/v1/debates/3f2a/cancel"),
            "/api/v1/debates/{id}/cancel"
        );
        assert_eq!(route_template("/api/debates"), "/api/debates");
        assert_eq!(route_template("/api/debates/"), "/api/debates");
        assert_eq!(route_template("/wp-admin/login.php"), "unmatched");
    }

    #[test]
    fn invented_methods_share_one_label() {
        let invented = ::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(invented.as_str()), "other");
        assert_eq!(method_label("DELETE"), "DELETE");
    }

    #[test]
    fn the_envelope_nests_code_and_message() {
        let body = error_body("not_found", "no debate abc");
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], "no debate abc");
    }

    #[test]
    fn the_pages_are_labelled_by_their_templates() {
        for template in PAGE_ROUTES {
            assert!(ROUTES.contains(&template), "{template} is not in ROUTES");
        }
        assert_eq!(route_template("/admin/slos"), "/admin/{section}");
        assert_eq!(
            route_template("/console/assets/0a1b2c/admin.js"),
            "/console/assets/{version}/{file}"
        );
        assert_eq!(route_template("/developer/"), "/developer");
    }
}
