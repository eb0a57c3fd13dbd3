//! Readers: a spec file in any of the three formats becomes one [`SloSpec`].
//!
//! | first key | format | reader |
//! |---|---|---|
//! | `version: aragora/v1` | the project's own: Sloth's shape plus `period` and the `requests` and `latency` SLI kinds | [`sloth`] |
//! | `version: prometheus/v1` | Sloth | [`sloth`] |
//! | `apiVersion: openslo/v1` | OpenSLO `SLO` and `SLI` documents, `---` separated | [`openslo`] |

mod openslo;
mod sloth;

use crate::model::SloSpec;
use crate::SloError;
use serde::Deserialize;

pub use sloth::render_own;

pub const OWN_VERSION: &str = "aragora/v1";
pub const SLOTH_VERSION: &str = "prometheus/v1";
pub const OPENSLO_VERSION: &str = "openslo/v1";

/// Reads a spec in whichever format it is written.
pub fn parse(text: &str) -> Result<SloSpec, SloError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        version: Option<String>,
        api_version: Option<String>,
    }
    let first = serde_yaml::Deserializer::from_str(text)
        .next()
        .ok_or_else(|| SloError::Format("the spec is empty".into()))?;
    let header = Header::deserialize(first).map_err(|err| yaml_error("the spec", err))?;
    match (header.version.as_deref(), header.api_version.as_deref()) {
        (Some(OWN_VERSION), _) => sloth::parse(text, sloth::Dialect::Own),
        (Some(SLOTH_VERSION), _) => sloth::parse(text, sloth::Dialect::Sloth),
        (_, Some(OPENSLO_VERSION)) => openslo::parse(text),
        (version, api_version) => Err(SloError::Format(format!(
            "unknown spec format (version {version:?}, apiVersion {api_version:?}); start the file \
             with `version: {OWN_VERSION}` (this project's format), `version: {SLOTH_VERSION}` \
             (Sloth) or `apiVersion: {OPENSLO_VERSION}` (OpenSLO)"
        ))),
    }
}

fn yaml_error(what: &str, err: serde_yaml::Error) -> SloError {
    SloError::Format(format!("{what} is not valid: {err}"))
}
