//! The admin API of the admin listener (`--admin-port`, 9091): its operations, the types they
//! answer with, and its OpenAPI 3.1 document, committed as `docs/gateway-admin-openapi.json`
//! (`aragora openapi --gateway-admin --out docs/gateway-admin-openapi.json` refreshes it; a
//! test fails when it drifts) and served at `GET /openapi.json`.
//!
//! The document is also the routing table: the admin listener is pingora's, not axum's, so
//! there is no router to derive it from; instead [`route`] looks a request up in the document
//! ([`document`], built from each handler's `#[utoipa::path]`), and the operation found names
//! its handler ([`handler`]) and whether it needs the admin credential (its `security`). An
//! operation cannot be served without being documented, nor documented open and served
//! secured. What every operation shares is added from what it declares, as the engine's
//! document does: a secured operation answers 401 (with `WWW-Authenticate`), 403 and 503 (the
//! credential cannot be checked).
//!
//! A path not in the document answers 404, a method a path does not list 405 with `Allow`,
//! both in the error envelope, and both only to an admin unless every operation of the path is
//! open (a caller without the credential learns nothing about the admin paths).

use crate::state::Shared;
use aragora_telemetry::ErrorBody;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::{OpenApi as _, ToSchema};

/// An admin API answer.
pub type Answer = http::Response<Vec<u8>>;

/// What an operation runs: everything it reads is in the gateway's state.
pub type Handler = fn(&Shared) -> Answer;

/// The security scheme of the admin credential.
pub const BEARER: &str = "bearer";

/// An answer of `status` with `content_type`, `body` and `extra` headers.
pub fn respond(status: u16, content_type: &str, body: Vec<u8>, extra: &[(&str, String)]) -> Answer {
    let mut builder = http::Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len());
    for (name, value) in extra {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(body).unwrap_or_default()
}

/// `body` as JSON with `status`.
pub fn json_response(status: u16, body: &impl Serialize) -> Answer {
    let text = serde_json::to_vec(body).unwrap_or_default();
    respond(status, "application/json", text, &[])
}

/// `GET /healthz`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /readyz`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `not_ready` (503).
    #[schema(example = "ready")]
    status: &'static str,
    /// Why not ready (draining, no ready engine replica); absent when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /api/system/upstreams`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Upstreams {
    upstreams: Vec<crate::upstream::ReplicaView>,
    /// Replicas ready for traffic.
    ready: usize,
    total: usize,
    /// The gateway is shutting down.
    draining: bool,
}

/// A rate limit: `per_minute` on average, `burst` at once.
#[derive(Serialize, ToSchema)]
pub struct LimitView {
    per_minute: u64,
    burst: u64,
}

/// A route's own limit (`ARAGORA_RATE_LIMIT_ROUTES`); `limit` null where limiting is off.
#[derive(Serialize, ToSchema)]
pub struct RouteLimitView {
    method: String,
    route: String,
    limit: Option<LimitView>,
}

/// A client the rate limit refused, and how often.
#[derive(Serialize, ToSchema)]
pub struct RefusedClient {
    client: String,
    refused: u64,
}

/// Whether Redis (the limit shared across gateways) answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Up,
    Down,
}

/// `GET /api/system/rate-limits`'s answer.
#[derive(Serialize, ToSchema)]
pub struct RateLimits {
    /// `ARAGORA_RATE_LIMIT` and `_BURST`; null when off.
    default: Option<LimitView>,
    routes: Vec<RouteLimitView>,
    /// `ARAGORA_RATE_LIMIT_ALLOW`, as written.
    allow: Vec<String>,
    /// `ARAGORA_TRUSTED_PROXIES`, as written.
    trusted_proxies: Vec<String>,
    /// The limit is shared through Redis.
    shared: bool,
    /// Redis' state; null when not shared.
    backend: Option<Backend>,
    /// The ten clients refused most, most first.
    top_limited_clients: Vec<RefusedClient>,
}

/// Maintenance mode of this gateway.
#[derive(Serialize, ToSchema)]
pub struct Maintenance {
    enabled: bool,
}

/// The scrape of the gateway's metrics (open).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "probes",
    responses((status = 200, description = "The Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String)))]
pub fn metrics(shared: &Shared) -> Answer {
    shared.refresh_ready_gauge();
    let text = aragora_telemetry::render(&shared.metrics.registry);
    respond(
        200,
        aragora_telemetry::TEXT_CONTENT_TYPE,
        text.into_bytes(),
        &[],
    )
}

/// Liveness (open): the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "probes",
    responses((status = 200, description = "Alive.", body = Health)))]
pub fn healthz(_: &Shared) -> Answer {
    json_response(200, &Health { status: "ok" })
}

/// Readiness (open): whether the gateway should get traffic.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready: draining, or no engine replica is ready.", body = Readiness),
    ))]
pub fn readyz(shared: &Shared) -> Answer {
    match shared.not_ready_reason() {
        None => json_response(
            200,
            &Readiness {
                status: "ready",
                reason: None,
            },
        ),
        Some(reason) => json_response(
            503,
            &Readiness {
                status: "not_ready",
                reason: Some(reason),
            },
        ),
    }
}

/// The engine replicas behind the gateway and their health (admins).
#[utoipa::path(get, path = "/api/system/upstreams", operation_id = "upstreams", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "Every replica.", body = Upstreams)))]
pub fn upstreams(shared: &Shared) -> Answer {
    let views = shared.pool.views();
    let ready = views.iter().filter(|v| v.ready).count();
    let total = views.len();
    json_response(
        200,
        &Upstreams {
            upstreams: views,
            ready,
            total,
            draining: shared.is_draining(),
        },
    )
}

/// The rate limits in force and the clients refused most (admins).
#[utoipa::path(get, path = "/api/system/rate-limits", operation_id = "rate_limits", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "The limits.", body = RateLimits)))]
pub fn rate_limits(shared: &Shared) -> Answer {
    let limits = shared.limits();
    let config = shared.config();
    let describe = |limiter: Option<&crate::limit::RateLimiter>| {
        limiter.map(|l| LimitView {
            per_minute: l.per_minute(),
            burst: l.burst(),
        })
    };
    let routes = limits
        .routes
        .iter()
        .map(|(route, limiter)| RouteLimitView {
            method: route.method.clone(),
            route: route.route.to_string(),
            limit: describe(limiter.as_ref()),
        })
        .collect();
    let top_limited_clients = limits
        .top_refused(10)
        .into_iter()
        .map(|(client, refused)| RefusedClient {
            client: client.to_string(),
            refused,
        })
        .collect();
    json_response(
        200,
        &RateLimits {
            default: describe(limits.limiter.as_ref()),
            routes,
            allow: config.rate_limit_allow.written().to_vec(),
            trusted_proxies: config.trusted_proxies.written().to_vec(),
            shared: shared.shared_limiter.is_some(),
            backend: shared.shared_limiter.as_ref().map(|redis| {
                if redis.is_up() {
                    Backend::Up
                } else {
                    Backend::Down
                }
            }),
            top_limited_clients,
        },
    )
}

/// Whether this gateway is in maintenance mode (admins).
#[utoipa::path(get, path = "/api/system/maintenance", operation_id = "maintenance", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "Maintenance mode.", body = Maintenance)))]
pub fn maintenance(shared: &Shared) -> Answer {
    json_response(
        200,
        &Maintenance {
            enabled: shared.in_maintenance(),
        },
    )
}

fn set_maintenance(shared: &Shared, enabled: bool) -> Answer {
    shared.set_maintenance(enabled);
    json_response(200, &Maintenance { enabled })
}

/// Turns this gateway's maintenance mode on (admins): everything but health is answered 503.
/// Idempotent; no body.
#[utoipa::path(post, path = "/api/system/maintenance/enable", operation_id = "maintenance_enable",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance is on.", body = Maintenance)))]
pub fn maintenance_enable(shared: &Shared) -> Answer {
    set_maintenance(shared, true)
}

/// Turns this gateway's maintenance mode off (admins). Idempotent; no body.
#[utoipa::path(post, path = "/api/system/maintenance/disable", operation_id = "maintenance_disable",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance is off.", body = Maintenance)))]
pub fn maintenance_disable(shared: &Shared) -> Answer {
    set_maintenance(shared, false)
}

/// `POST /api/system/maintenance/enable` under the engine's path, so the guide's command works
/// against either (admins).
#[utoipa::path(post, path = "/api/admin/maintenance/enable", operation_id = "admin_maintenance_enable",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance is on.", body = Maintenance)))]
pub fn admin_maintenance_enable(shared: &Shared) -> Answer {
    set_maintenance(shared, true)
}

/// `POST /api/system/maintenance/disable` under the engine's path (admins).
#[utoipa::path(post, path = "/api/admin/maintenance/disable", operation_id = "admin_maintenance_disable",
    tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Maintenance is off.", body = Maintenance)))]
pub fn admin_maintenance_disable(shared: &Shared) -> Answer {
    set_maintenance(shared, false)
}

/// This document (admins).
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "meta",
    security(("bearer" = [])),
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)))]
pub fn openapi(_: &Shared) -> Answer {
    respond(200, "application/json", render().into_bytes(), &[])
}

/// The handler of each documented operation, by its `operationId`.
pub fn handler(operation_id: &str) -> Option<Handler> {
    Some(match operation_id {
        "metrics" => metrics,
        "healthz" => healthz,
        "readyz" => readyz,
        "upstreams" => upstreams,
        "rate_limits" => rate_limits,
        "maintenance" => maintenance,
        "maintenance_enable" => maintenance_enable,
        "maintenance_disable" => maintenance_disable,
        "admin_maintenance_enable" => admin_maintenance_enable,
        "admin_maintenance_disable" => admin_maintenance_disable,
        "openapi" => openapi,
        _ => return None,
    })
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "aragora gateway admin API",
        description = "The admin listener of the aragora gateway (`--admin-port`, 9091; keep it \
            on loopback or a private network): probes and the metrics scrape open to anyone who \
            reaches it, everything else for admins only (`Authorization: Bearer` with \
            ARAGORA_API_TOKEN, a loop token of loop `admin` or an admin JWT). Every error is `{\"error\": {\"code\", \
            \"message\"}}`. A path not listed answers 404 and a method a path does not list 405 \
            with `Allow`, both refused first (401) without the credential unless the path is \
            open.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        metrics,
        healthz,
        readyz,
        upstreams,
        rate_limits,
        maintenance,
        maintenance_enable,
        maintenance_disable,
        admin_maintenance_enable,
        admin_maintenance_disable,
        openapi
    ),
    components(schemas(ErrorBody))
)]
struct AdminDoc;

/// The document, built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The document as committed: pretty JSON and a final newline.
pub fn render() -> String {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = serde_json::to_string_pretty(document()).expect("the document serialises");
        text.push('\n');
        text
    })
    .clone()
}

fn build() -> OpenApi {
    let mut doc = AdminDoc::openapi();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "ARAGORA_API_TOKEN, a loop token of loop `admin`, or a JWT with the admin role",
                ))
                .build(),
        ),
    );
    for item in doc.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            if secured(operation) {
                for (status, description) in [
                    (
                        "401",
                        "No credential, or one that is not valid (see `WWW-Authenticate`).",
                    ),
                    ("403", "The credential is valid but not an admin's."),
                    ("503", "The credential cannot be checked now; retry."),
                ] {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(status, description));
                }
            }
        }
    }
    doc
}

fn error_response(status: &str, description: &str) -> RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::ContentBuilder;
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    if status == "401" {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("RFC 6750's challenge."))
                .build(),
        );
    }
    RefOr::T(response.build())
}

fn secured(operation: &Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty())
}

/// The operations of a path item with their methods.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PUT", &mut item.put),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
        ("HEAD", &mut item.head),
        ("OPTIONS", &mut item.options),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|op| (method, op)))
}

/// Where the document routes a request.
#[derive(Debug)]
pub enum Route {
    /// A documented operation: its handler, and whether it needs the admin credential.
    Operation {
        handler: Handler,
        secured: bool,
    },
    /// The path is documented, not with this method; `allow` lists its methods. `open` when
    /// every operation of the path is.
    MethodNotAllowed {
        allow: String,
        open: bool,
    },
    NotFound,
}

/// What the document says about `method path`.
pub fn route(method: &str, path: &str) -> Route {
    let Some(item) = document().paths.paths.get(path) else {
        return Route::NotFound;
    };
    if let Some((_, operation)) = operations(item).find(|(m, _)| *m == method) {
        let id = operation.operation_id.as_deref().unwrap_or_default();
        return match handler(id) {
            Some(handler) => Route::Operation {
                handler,
                secured: secured(operation),
            },
            // A documented operation without a handler: a test keeps this from happening.
            None => Route::NotFound,
        };
    }
    let methods: Vec<&str> = operations(item).map(|(m, _)| m).collect();
    Route::MethodNotAllowed {
        allow: methods.join(", "),
        open: operations(item).all(|(_, op)| !secured(op)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/gateway-admin-openapi.json"
    );

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == render(),
            "docs/gateway-admin-openapi.json is not the document this code generates; refresh \
             it with `cargo run -- openapi --gateway-admin --out docs/gateway-admin-openapi.json`"
        );
    }

    #[test]
    fn every_operation_has_its_handler_and_ids_are_unique() {
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in &document().paths.paths {
            for (method, operation) in operations(item) {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(
                    handler(&id).is_some(),
                    "{method} {path}: no handler for {id:?}"
                );
                assert!(ids.insert(id.clone()), "{id} twice");
                assert!(
                    matches!(route(method, path), Route::Operation { .. }),
                    "{method} {path}"
                );
            }
        }
        assert_eq!(ids.len(), 11);
    }

    #[test]
    fn only_the_probes_and_the_scrape_are_open() {
        for (method, path, open) in [
            ("GET", "/metrics", true),
            ("GET", "/healthz", true),
            ("GET", "/readyz", true),
            ("GET", "/api/system/upstreams", false),
            ("GET", "/api/system/rate-limits", false),
            ("POST", "/api/system/maintenance/enable", false),
            ("POST", "/api/admin/maintenance/disable", false),
            ("GET", "/openapi.json", false),
        ] {
            match route(method, path) {
                Route::Operation { secured, .. } => assert_eq!(secured, !open, "{method} {path}"),
                other => panic!("{method} {path}: {other:?}"),
            }
        }
        assert!(matches!(
            route("DELETE", "/healthz"),
            Route::MethodNotAllowed { allow, open: true } if allow == "GET"
        ));
        assert!(matches!(
            route("GET", "/api/system/maintenance/enable"),
            Route::MethodNotAllowed { allow, open: false } if allow == "POST"
        ));
        assert!(matches!(route("GET", "/api/system/nope"), Route::NotFound));
        let doc = serde_json::to_value(document()).unwrap();
        let upstreams = &doc["paths"]["/api/system/upstreams"]["get"]["responses"];
        for status in ["401", "403", "503"] {
            assert_eq!(
                upstreams[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}"
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
