//! The security headers the edge puts on every answer, proxied or its own: its `Server`
//! (`ARAGORA_SERVER_HEADER`; none by default), whatever a replica said there replaced, and the
//! usual browser protections (`ARAGORA_SECURITY_HEADERS`: `nosniff`, `Referrer-Policy`, framing
//! refused by both `X-Frame-Options` and CSP `frame-ancestors`), which a route may change or
//! drop (`ARAGORA_SECURITY_HEADER_ROUTES`). The edge's value replaces a replica's: one policy
//! in force, set where the operator configures it.
//!
//! Parsed once when the configuration is read ([`SecurityHeader`], [`RouteHeader`] entries of
//! a [`ParsedList`](crate::parsed::ParsedList)) and resolved per route template into a
//! [`HeaderPolicy`] when it is set, so a request only indexes its route's list.

use crate::parsed::Entry;
use aragora_telemetry::{PAGE_CONTENT_SECURITY_POLICY, PAGE_ROUTES, ROUTES};
use http::{HeaderName, HeaderValue};

/// What a route's answers get by default (`ARAGORA_SECURITY_HEADERS`). Framing is refused both
/// ways: `X-Frame-Options` for older browsers, CSP `frame-ancestors` for the rest.
pub const DEFAULT_SECURITY_HEADERS: [&str; 4] = [
    "X-Content-Type-Options: nosniff",
    "Referrer-Policy: no-referrer",
    "X-Frame-Options: DENY",
    "Content-Security-Policy: frame-ancestors 'none'",
];

/// Headers another part of the gateway owns, or that frame the message: configuring them here
/// would break responses or fight the setting that owns them.
const OWNED: [(&str, &str); 12] = [
    ("server", "ARAGORA_SERVER_HEADER"),
    ("strict-transport-security", "ARAGORA_HSTS_MAX_AGE"),
    ("x-request-id", "the request id"),
    ("ratelimit-limit", "the rate limiter"),
    ("ratelimit-remaining", "the rate limiter"),
    ("ratelimit-reset", "the rate limiter"),
    ("retry-after", "the refusals"),
    ("set-cookie", "the replica pin"),
    ("content-length", "message framing"),
    ("transfer-encoding", "message framing"),
    ("connection", "message framing"),
    ("content-type", "the answer itself"),
];

/// One `Name: value` of `ARAGORA_SECURITY_HEADERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
}

/// One `/route/template Name: value` of `ARAGORA_SECURITY_HEADER_ROUTES`; no value drops the
/// header on that route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHeader {
    pub route: &'static str,
    pub name: HeaderName,
    pub value: Option<HeaderValue>,
}

/// `Name: value` read into a header, the name checked against those the gateway owns.
fn name_and_value(entry: &str, hint: &dyn Fn() -> String) -> Result<(HeaderName, String), String> {
    let (name, value) = entry.split_once(':').ok_or_else(hint)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| hint())?;
    if let Some((_, owner)) = OWNED.iter().find(|(owned, _)| *owned == name.as_str()) {
        return Err(format!(
            "{entry:?}: {name} is set by {owner}, not here; remove the entry"
        ));
    }
    Ok((name, value.trim().to_string()))
}

fn header_value(entry: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .ok()
        .filter(|_| value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
        .ok_or_else(|| format!("{entry:?}: the value must be printable ASCII"))
}

impl Entry for SecurityHeader {
    fn parse(entry: &str) -> Result<Self, String> {
        let hint = || {
            format!("{entry:?} is not Name: value (for example \"Referrer-Policy: no-referrer\")")
        };
        let (name, value) = name_and_value(entry, &hint)?;
        if value.is_empty() {
            return Err(format!(
                "{entry:?} has no value; leave the header out of the list instead"
            ));
        }
        Ok(Self {
            value: header_value(entry, &value)?,
            name,
        })
    }
}

impl Entry for RouteHeader {
    fn parse(entry: &str) -> Result<Self, String> {
        let hint = || {
            format!(
                "{entry:?} is not /route Name: value (for example \"/api/debates/{{id}}/receipt X-Frame-Options: SAMEORIGIN\"; no value drops the header there)"
            )
        };
        let (route, header) = entry.trim().split_once(' ').ok_or_else(hint)?;
        let route = crate::parsed::known_route(route, &[aragora_telemetry::http::UNMATCHED_ROUTE])?;
        let (name, value) = name_and_value(header.trim(), &hint)?;
        let value = match value.as_str() {
            "" => None,
            value => Some(header_value(entry, value)?),
        };
        Ok(Self { route, name, value })
    }
}

/// What one answer's headers become: set to the value, or removed.
pub type EdgeHeader = (HeaderName, Option<HeaderValue>);

/// The edge's headers resolved for each route template (by its place in [`ROUTES`]; the last
/// slot is `unmatched`).
#[derive(Debug, Default)]
pub struct HeaderPolicy {
    by_route: Vec<Vec<EdgeHeader>>,
}

impl HeaderPolicy {
    /// `server` empty sends no `Server` header (a replica's is removed either way).
    pub fn new(server: &str, defaults: &[SecurityHeader], routes: &[RouteHeader]) -> Self {
        let server = HeaderValue::from_str(server)
            .ok()
            .filter(|_| !server.is_empty());
        let by_route = (0..=ROUTES.len())
            .map(|slot| {
                let template = aragora_telemetry::route_name(slot);
                let mut headers: Vec<EdgeHeader> = vec![(http::header::SERVER, server.clone())];
                for default in defaults {
                    headers.push((default.name.clone(), Some(default.value.clone())));
                }
                // The pages keep their own stricter policy (it forbids framing too): the
                // default `frame-ancestors 'none'` in its place would let any script run.
                if PAGE_ROUTES.contains(&template) {
                    let csp = http::header::CONTENT_SECURITY_POLICY;
                    if let Some(header) = headers.iter_mut().find(|(name, _)| *name == csp) {
                        header.1 = Some(HeaderValue::from_static(PAGE_CONTENT_SECURITY_POLICY));
                    }
                }
                for entry in routes.iter().filter(|entry| entry.route == template) {
                    match headers.iter_mut().find(|(name, _)| *name == entry.name) {
                        Some(header) => header.1 = entry.value.clone(),
                        None => headers.push((entry.name.clone(), entry.value.clone())),
                    }
                }
                headers
            })
            .collect();
        Self { by_route }
    }

    /// The headers of a route's answers (`route_slot` as [`aragora_telemetry::route_index`]
    /// gives it; anything past the templates is `unmatched`).
    pub fn for_route(&self, route_slot: usize) -> &[EdgeHeader] {
        let last = self.by_route.len().saturating_sub(1);
        self.by_route
            .get(route_slot.min(last))
            .map_or(&[], Vec::as_slice)
    }
}

/// `ARAGORA_SERVER_HEADER`'s problem, if any.
pub fn server_problem(server: &str) -> Option<String> {
    header_value(server, server)
        .err()
        .filter(|_| !server.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsed::ParsedList;

    fn defaults() -> Vec<SecurityHeader> {
        ParsedList::<SecurityHeader>::new(DEFAULT_SECURITY_HEADERS.map(String::from).to_vec())
            .entries()
            .to_vec()
    }

    fn shown(headers: &[EdgeHeader]) -> Vec<String> {
        headers
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}: {}", value.to_str().unwrap()),
                None => format!("{name} removed"),
            })
            .collect()
    }

    #[test]
    fn every_route_gets_the_defaults_and_a_route_entry_changes_or_drops_one() {
        let routes = ParsedList::<RouteHeader>::new(vec![
            "/api/debates/{id}/receipt X-Frame-Options: SAMEORIGIN".into(),
            "/api/debates/{id}/receipt Content-Security-Policy:".into(),
            "unmatched Cache-Control: no-store".into(),
        ]);
        assert_eq!(routes.problem(), None);
        let policy = HeaderPolicy::new("", &defaults(), routes.entries());
        let debates = aragora_telemetry::route_index("/api/debates");
        assert_eq!(
            shown(policy.for_route(debates)),
            [
                "server removed",
                "x-content-type-options: nosniff",
                "referrer-policy: no-referrer",
                "x-frame-options: DENY",
                "content-security-policy: frame-ancestors 'none'",
            ]
        );
        let receipt = aragora_telemetry::route_index("/api/debates/d1/receipt");
        assert_eq!(
            shown(&policy.for_route(receipt)[3..]),
            [
                "x-frame-options: SAMEORIGIN",
                "content-security-policy removed"
            ]
        );
        let unmatched = policy.for_route(usize::MAX);
        assert_eq!(shown(&unmatched[5..]), ["cache-control: no-store"]);
        let page = policy.for_route(aragora_telemetry::route_index("/admin"));
        assert_eq!(
            shown(&page[4..]),
            [format!(
                "content-security-policy: {}",
                aragora_telemetry::PAGE_CONTENT_SECURITY_POLICY
            )]
        );
        let named = HeaderPolicy::new("aragora", &[], &[]);
        assert_eq!(shown(named.for_route(0)), ["server: aragora"]);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let problem = |entry: &str| SecurityHeader::parse(entry).unwrap_err();
        assert_eq!(
            problem("nosniff"),
            "\"nosniff\" is not Name: value (for example \"Referrer-Policy: no-referrer\")"
        );
        assert_eq!(
            problem("Content-Length: 5"),
            "\"Content-Length: 5\": content-length is set by message framing, not here; remove the entry"
        );
        assert_eq!(
            problem("Server: nginx"),
            "\"Server: nginx\": server is set by ARAGORA_SERVER_HEADER, not here; remove the entry"
        );
        assert!(problem("X-A:").contains("has no value"));
        assert!(problem("X-A: caf\u{e9}").contains("printable ASCII"));
        let route = RouteHeader::parse("/nope X-A: b").unwrap_err();
        assert!(
            route.starts_with("\"/nope\" is not a route template"),
            "{route}"
        );
        assert_eq!(server_problem(""), None);
        assert_eq!(server_problem("aragora"), None);
        assert!(server_problem("a\u{7f}").is_some());
    }
}
