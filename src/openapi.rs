//! `aragora openapi`: the OpenAPI documents this binary's processes serve, as committed.
//!
//! The REST API's is the engine's own routes ([`aragora_engine::http::openapi`]) and those the
//! binary adds to every engine it runs ([`crate::slo::api`]: `GET /api/slo`;
//! [`crate::slo::engine_routes`]: `GET /api/slo/history`, `POST`/`GET /api/drills/run`), so
//! `docs/openapi.json` describes what `aragora serve` and `aragora up` answer, and is what their
//! `GET /api/openapi.json` serves. The gateway admin API's is [`aragora_gateway::admin_api`]'s
//! (`--gateway-admin`).

use std::process::ExitCode;

/// The REST API's document as `aragora serve` serves it.
pub fn api_document() -> String {
    let mut extra = crate::slo::api().into_openapi();
    extra.merge(crate::slo::engine_routes(None, Default::default()).into_openapi());
    aragora_engine::http::openapi::render_document(&aragora_engine::http::openapi::document_with(
        extra,
    ))
}

/// `aragora openapi [--gateway-admin] [--out FILE]`.
pub fn command(out: Option<&std::path::Path>, gateway_admin: bool) -> ExitCode {
    let document = if gateway_admin {
        aragora_gateway::admin_api::render()
    } else {
        api_document()
    };
    match out {
        None => {
            print!("{document}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(path, document) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("aragora: cannot write {}: {err}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == api_document(),
            "docs/openapi.json is not the document this code generates; refresh it with \
             `cargo run -- openapi --out docs/openapi.json` and commit it"
        );
    }

    #[test]
    fn the_binarys_routes_are_documented_with_their_schemas() {
        let doc: serde_json::Value = serde_json::from_str(&api_document()).unwrap();
        let slo = &doc["paths"]["/api/slo"]["get"];
        assert_eq!(slo["operationId"], "slo_status");
        assert_eq!(
            slo["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        for schema in ["SloReport", "SloStatus", "WindowStatus", "AlertStatus"] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{schema} is not in the document"
            );
        }
        // Every route the telemetry catalogue names is documented (as a path or an alias), but
        // the console's pages: HTML for people, not API.
        let aliases: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item["x-aliases"].as_array().into_iter().flatten())
            .filter_map(|alias| alias.as_str())
            .collect();
        let api_routes = aragora_telemetry::ROUTES
            .iter()
            .filter(|route| !aragora_telemetry::PAGE_ROUTES.contains(route));
        for route in api_routes {
            assert!(
                doc["paths"][route].is_object() || aliases.contains(route),
                "{route} is served but not documented"
            );
        }
    }
}
