//! List settings whose entries have a syntax of their own (CIDRs, route limits): parsed once,
//! when the configuration is read, and kept both as written (what the file, the environment and
//! the admin view say, and what a reload compares) and as parsed (what the request path uses),
//! so nothing is parsed per request.
//!
//! Reading never fails on a bad entry: the list keeps what is wrong with the first one, and
//! `GatewayConfig::validate` reports it under the setting's name, like every other problem. A
//! validated configuration therefore holds only lists that parsed whole.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::IpAddr;

/// One entry of a list setting, read from its text; the error says what is wrong and what an
/// entry looks like.
pub trait Entry: Sized {
    fn parse(entry: &str) -> Result<Self, String>;
}

/// `route` as one of the route templates the gateway labels requests with
/// (`aragora_telemetry::ROUTES`), or one of `also`; the error lists what would do.
pub fn known_route(route: &str, also: &[&'static str]) -> Result<&'static str, String> {
    use aragora_telemetry::ROUTES;
    ROUTES
        .iter()
        .chain(also)
        .copied()
        .find(|known| *known == route)
        .ok_or_else(|| {
            let others: String = also.iter().map(|name| format!(", or {name}")).collect();
            format!(
                "{route:?} is not a route template; use one of {}{others}",
                ROUTES.join(", ")
            )
        })
}

/// A list setting as written and as parsed. Equal when written the same.
#[derive(Debug, Clone)]
pub struct ParsedList<T> {
    written: Vec<String>,
    parsed: Result<Vec<T>, String>,
}

/// CIDRs or single addresses (`ARAGORA_TRUSTED_PROXIES`, `ARAGORA_RATE_LIMIT_ALLOW`).
pub type Networks = ParsedList<IpNet>;

impl<T: Entry> ParsedList<T> {
    pub fn new(written: Vec<String>) -> Self {
        let parsed = written.iter().map(|entry| T::parse(entry)).collect();
        Self { written, parsed }
    }
}

impl<T> ParsedList<T> {
    /// The parsed entries; none while an entry does not parse (which validation reports).
    pub fn entries(&self) -> &[T] {
        self.parsed.as_deref().unwrap_or(&[])
    }

    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// What is wrong with the first entry that does not parse.
    pub fn problem(&self) -> Option<&str> {
        self.parsed.as_ref().err().map(String::as_str)
    }
}

impl<T> Default for ParsedList<T> {
    fn default() -> Self {
        Self {
            written: Vec::new(),
            parsed: Ok(Vec::new()),
        }
    }
}

impl<T> PartialEq for ParsedList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}

impl<T> Serialize for ParsedList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(serializer)
    }
}

impl<'de, T: Entry> Deserialize<'de> for ParsedList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(Self::new)
    }
}

/// Comma-separated in the environment, as every list setting.
impl<T: Entry> aragora_config::FromEnv for ParsedList<T> {
    fn from_env(raw: &str) -> Result<Self, String> {
        Vec::<String>::from_env(raw).map(Self::new)
    }
}

impl Entry for IpNet {
    fn parse(entry: &str) -> Result<Self, String> {
        entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{entry:?} is not a CIDR (10.0.0.0/8) or an address"))
    }
}

/// Whether any of `networks` holds `ip`.
pub fn contains(networks: &[IpNet], ip: &IpAddr) -> bool {
    networks.iter().any(|net| net.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aragora_config::FromEnv;

    #[test]
    fn lists_keep_what_was_written_and_what_it_means() {
        let networks = Networks::from_env("10.0.0.0/8, 192.168.1.1").unwrap();
        assert_eq!(networks.written(), ["10.0.0.0/8", "192.168.1.1"]);
        assert_eq!(
            networks.entries(),
            [
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.168.1.1/32".parse().unwrap()
            ]
        );
        assert_eq!(networks.problem(), None);
        assert_eq!(
            serde_json::to_value(&networks).unwrap(),
            serde_json::json!(["10.0.0.0/8", "192.168.1.1"]),
            "shown as written"
        );
    }

    #[test]
    fn a_bad_entry_is_kept_for_validation_to_report() {
        let networks = Networks::new(vec!["10.0.0.0/8".into(), "not-a-net".into()]);
        assert_eq!(
            networks.problem(),
            Some("\"not-a-net\" is not a CIDR (10.0.0.0/8) or an address")
        );
        assert!(networks.entries().is_empty());
        let from_toml: Networks = toml::from_str::<toml::Table>("n = [\"nope\"]")
            .unwrap()
            .remove("n")
            .unwrap()
            .try_into()
            .unwrap();
        assert!(
            from_toml.problem().is_some(),
            "a file's bad entry is not a parse error"
        );
    }
}
