//! The OpenAPI 3.1 document of the API listener, served at `/api/openapi.json` and committed as
//! `docs/openapi.json` (`aragora openapi --out docs/openapi.json` refreshes it; a test fails
//! when it drifts).
//!
//! Nothing here lists a path: [`document`] walks the router's own list (`super::api_routes`),
//! whose entries are `utoipa_axum::routes!` of the handlers, so a route's methods, its
//! parameters, its bodies and their schemas come from the `#[utoipa::path]` beside each
//! handler and the types it reads and answers with. What is the same for many operations is
//! added here from what the operation declares, so no handler can forget it:
//!
//! | an operation that | gets |
//! |---|---|
//! | needs a credential (`security`) | 401 (with `WWW-Authenticate`), 403, 503 (credentials cannot be checked yet) |
//! | reads a JSON body | 400 (malformed), 413 (over `ARAGORA_MAX_BODY_BYTES`), 415 (not `application/json`), 422 (wrong shape) |
//! | has path or query parameters | 400 (a parameter that does not parse) |
//!
//! `/api/v1/...` serves exactly `/api/...` (one handler each), and the health aliases
//! (`/api/v1/status`, `/api/ready`, ...) serve the operation of their first path: the document
//! lists each operation once, under its first path, with the others in its path item's
//! `x-aliases`, so a generated client has one method per operation, not two.

use super::AppState;
use crate::error::ErrorBody;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::{OpenApi as _, ToSchema as _};
use utoipa_axum::router::UtoipaMethodRouter;

/// The security scheme of every credential a header carries: the admin token
/// (`ARAGORA_API_TOKEN`), an API key (`ara_<id>_<secret>`) or a JWT.
pub const BEARER: &str = "bearer";
/// A credential in the `token` query parameter: share links and browsers.
pub const QUERY_TOKEN: &str = "query_token";

/// One route of the router's list: where it is served, and its handlers with what they
/// document. An alias serves the handlers of its `canonical` path and is listed under it.
pub struct Endpoint {
    pub path: String,
    pub canonical: Option<String>,
    pub handlers: UtoipaMethodRouter<AppState>,
}

impl Endpoint {
    /// Served at its `#[utoipa::path]`'s own path under `prefix`.
    pub fn at(prefix: &str, handlers: UtoipaMethodRouter<AppState>) -> Self {
        let path = format!("{prefix}{}", own_path(&handlers));
        Self {
            path,
            canonical: None,
            handlers,
        }
    }

    /// Also served at `path`, an alias of the `#[utoipa::path]`'s path under `prefix`.
    pub fn alias(path: &str, prefix: &str, handlers: UtoipaMethodRouter<AppState>) -> Self {
        Self {
            canonical: Some(format!("{prefix}{}", own_path(&handlers))),
            path: path.into(),
            handlers,
        }
    }
}

impl Endpoint {
    /// Served under `alias_prefix` as an alias of the same path under `prefix`.
    pub fn alias_under(
        alias_prefix: &str,
        prefix: &str,
        handlers: UtoipaMethodRouter<AppState>,
    ) -> Self {
        let own = own_path(&handlers);
        Self::alias(&format!("{alias_prefix}{own}"), prefix, handlers)
    }
}

fn own_path(handlers: &UtoipaMethodRouter<AppState>) -> String {
    let mut paths = handlers.1.paths.keys();
    let path = paths
        .next()
        .expect("routes! of at least one handler")
        .clone();
    assert!(
        paths.next().is_none(),
        "one routes! per path: {path} shares a routes! with another path"
    );
    path
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "aragora",
        description = "The REST API of the aragora debate engine (and, through the gateway, of \
            aragora). Every error is `{\"error\": {\"code\", \"message\"}}`. Every path under \
            `/api/` is also served under `/api/v1/` (listed in `x-aliases`). Credentials: \
            `Authorization: Bearer` with the admin token `ARAGORA_API_TOKEN`, an API key \
            (`POST /api/auth/api-key`) or a JWT (`POST /api/auth/token`); roles reader < \
            operator < admin. A path not listed answers 404, and a method a path does not \
            list 405 with `Allow`, both in the same envelope.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The document of the engine's own routes, built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| build(super::api_routes(), None))
}

/// The document of the engine's own routes and those a caller adds (`Extras::routes`, whose
/// `OpenApiRouter` carries what its handlers' `#[utoipa::path]`s document): what an engine
/// run with those extras serves. The extras' operations get the same common refusals.
pub fn document_with(extra: OpenApi) -> OpenApi {
    build(super::api_routes(), Some(extra))
}

/// The document as JSON.
pub fn json() -> serde_json::Value {
    to_json(document())
}

fn to_json(document: &OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(document).expect("the document serialises");
    camel_case_links(&mut value);
    value
}

/// utoipa 5 writes a response link's fields in snake case (`operation_id`); OpenAPI spells
/// them `operationId`, `operationRef`, `requestBody`, and tools ignore a link without them.
fn camel_case_links(document: &mut serde_json::Value) {
    let operations = document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flatten();
        for (_, response) in responses {
            let links = response.get_mut("links").and_then(|l| l.as_object_mut());
            for link in links.into_iter().flat_map(|links| links.values_mut()) {
                let Some(link) = link.as_object_mut() else {
                    continue;
                };
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.into(), value);
                    }
                }
            }
        }
    }
}

/// The engine's own document as committed: pretty JSON and a final newline.
pub fn render() -> String {
    render_document(document())
}

/// `document` as committed: pretty JSON and a final newline.
pub fn render_document(document: &OpenApi) -> String {
    let mut text =
        serde_json::to_string_pretty(&to_json(document)).expect("the document serialises");
    text.push('\n');
    text
}

/// `GET /api/openapi.json`: this document.
///
/// This engine's, extras included, rendered once at start (`Shared::openapi`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = Object)),
)]
pub async fn serve(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
}

fn build(routes: Vec<Endpoint>, extra: Option<OpenApi>) -> OpenApi {
    let mut doc = Base::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "ARAGORA_API_TOKEN (admin), an API key `ara_<id>_<secret>` or a JWT",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        QUERY_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "token",
            "the same credentials in `?token=`: share links (one debate, read-only) and browsers",
        ))),
    );
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let add = |doc: &mut OpenApi, path: String, mut item: PathItem| {
        for operation in operations(&mut item) {
            for requirement in operation.security.iter().flatten() {
                let named = serde_json::to_value(requirement).unwrap_or_default();
                for scheme in named.as_object().into_iter().flat_map(|o| o.keys()) {
                    assert!(
                        [BEARER, QUERY_TOKEN].contains(&scheme.as_str()),
                        "{path} names the security scheme {scheme:?}; use {BEARER:?} or {QUERY_TOKEN:?}",
                    );
                }
            }
            add_common_responses(operation);
        }
        assert!(
            !doc.paths.paths.contains_key(&path),
            "{path} is documented twice (an extra route over one of the engine's?)"
        );
        doc.paths.paths.insert(path, item);
    };
    for endpoint in routes {
        let (schemas, paths, _) = endpoint.handlers;
        if let Some(canonical) = endpoint.canonical {
            aliases.entry(canonical).or_default().push(endpoint.path);
            continue;
        }
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in schemas {
            components.schemas.insert(name, schema);
        }
        for (_, item) in paths.paths {
            add(&mut doc, endpoint.path.clone(), item);
        }
    }
    if let Some(extra) = extra {
        let schemas = extra.components.map(|c| c.schemas).unwrap_or_default();
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in schemas {
            components.schemas.insert(name, schema);
        }
        for (path, item) in extra.paths.paths {
            add(&mut doc, path, item);
        }
    }
    for (canonical, paths) in aliases {
        let item = doc
            .paths
            .paths
            .get_mut(&canonical)
            .unwrap_or_else(|| panic!("{paths:?} alias {canonical}, which is not documented"));
        let extensions = ExtensionsBuilder::new()
            .add("x-aliases", serde_json::json!(paths))
            .build();
        match &mut item.extensions {
            Some(existing) => existing.merge(extensions),
            None => item.extensions = Some(extensions),
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn error(status: &str, description: &str) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    match status {
        "401" => {
            response = response.header(
                "WWW-Authenticate",
                header("RFC 6750's challenge, `Bearer error=\"invalid_token\"`."),
            )
        }
        "503" => response = response.header("Retry-After", header("Seconds to wait.")),
        _ => {}
    }
    RefOr::T(response.build())
}

/// The refusals an operation can answer by what it declares (the module's table); a status the
/// handler documents itself keeps its own description.
fn add_common_responses(operation: &mut Operation) {
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error(status, description));
    };
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let body = operation.request_body.is_some();
    let parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    if secured {
        add(
            "401",
            "No credential, or one that is not valid (see `WWW-Authenticate`).",
        );
        add("403", "The credential's role or scope does not allow this.");
        add(
            "503",
            "Not ready: the engine is starting or draining, or credentials cannot be checked yet; retry after `Retry-After` seconds.",
        );
    }
    if body {
        add("400", "The body is not valid JSON.");
        add("413", "The body is larger than ARAGORA_MAX_BODY_BYTES.");
        add(
            "415",
            "The body is not sent as `Content-Type: application/json`.",
        );
        add(
            "422",
            "The body is JSON of the wrong shape or with values out of range.",
        );
    }
    if parameters {
        add("400", "A path or query parameter does not parse.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document, where client authors find it (the README says so).
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    /// The committed document is the binary's (the engine's routes and what `aragora serve`
    /// adds; its drift test is in `src/openapi.rs`): every operation of the engine's own is in
    /// it as generated here.
    #[test]
    fn the_committed_document_holds_the_engines_own_operations() {
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap()).unwrap();
        let own = json();
        for (path, item) in own["paths"].as_object().unwrap() {
            assert_eq!(
                &committed["paths"][path], item,
                "{path} differs in docs/openapi.json; refresh it with \
                 `cargo run -- openapi --out docs/openapi.json` and commit it"
            );
        }
        assert_eq!(committed["info"], own["info"]);
    }

    #[test]
    fn an_extra_route_is_documented_with_the_common_refusals() {
        #[utoipa::path(get, path = "/api/extra", operation_id = "extra", tag = "meta",
            security(("bearer" = [])),
            responses((status = 200, description = "An extra.", body = ErrorBody)))]
        async fn extra() {}
        let router: utoipa_axum::router::OpenApiRouter =
            utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(extra));
        let doc = to_json(&document_with(router.into_openapi()));
        let responses = &doc["paths"]["/api/extra"]["get"]["responses"];
        for status in ["200", "401", "403", "503"] {
            assert!(responses[status].is_object(), "{status}: {responses}");
        }
        assert!(
            doc["paths"]["/api/debates"].is_object(),
            "the engine's own too"
        );
    }

    #[test]
    fn every_served_path_is_documented_once_or_as_an_alias() {
        let doc = json();
        let paths = doc["paths"].as_object().unwrap();
        let aliases: Vec<&str> = paths
            .values()
            .flat_map(|item| item["x-aliases"].as_array().into_iter().flatten())
            .filter_map(|alias| alias.as_str())
            .collect();
        for path in super::super::route_table() {
            let documented = paths.contains_key(&path);
            let aliased = aliases.contains(&path.as_str());
            assert!(
                documented ^ aliased,
                "{path}: documented {documented}, alias {aliased}"
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn the_status_filter_pattern_names_every_debate_state() {
        let doc = json();
        let parameters = doc["paths"]["/api/debates"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let status = parameters.iter().find(|p| p["name"] == "status").unwrap();
        let pattern = status["schema"]["pattern"].as_str().unwrap();
        for state in crate::model::DebateStatus::ALL {
            assert!(
                pattern.contains(state.as_str()),
                "{pattern} lacks {}",
                state.as_str()
            );
        }
    }

    #[test]
    fn operation_ids_are_unique_and_every_operation_answers_errors_in_the_envelope() {
        let doc = json();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if method.starts_with("x-") {
                    continue;
                }
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(
                    ids.insert(id.to_string()),
                    "{method} {path}: operationId {id:?} twice"
                );
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4')
                        || (status.starts_with('5')
                            && !path.contains("health")
                            && path != "/readyz")
                    {
                        assert_eq!(
                            response["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
