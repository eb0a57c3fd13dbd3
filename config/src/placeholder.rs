//! The example files' placeholders (`deploy/.env.example`, `deploy/systemd/*.env`, the
//! Kubernetes secret example): every secret there is `change-me-...`, so a copied file that was
//! not filled in is recognisable, and production refuses to start on one instead of signing
//! JWTs with a secret printed in this repository.

use crate::{ConfigProblem, Env};

/// What every secret of the shipped example files starts with.
pub const PLACEHOLDER: &str = "change-me";

/// A problem for each variable aragora reads whose value still holds the example placeholder
/// (anywhere in it: a `DATABASE_URL` carries its password inside). Names only, never values.
/// For production; development may run on the examples as they are.
pub fn placeholder_problems(env: &Env) -> Vec<ConfigProblem> {
    let mut names: Vec<&String> = env
        .iter()
        .filter(|(name, value)| read_by_aragora(name) && value.contains(PLACEHOLDER))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            ConfigProblem::new(
                name.as_str(),
                format!(
                    "still holds the example files' `{PLACEHOLDER}` placeholder, and ARAGORA_ENV is production: set a value of your own (a secret: `openssl rand -base64 32`)"
                ),
            )
        })
        .collect()
}

/// The variables aragora reads: its own prefix, the SLO targets, OpenTelemetry's, the
/// database URL and the providers' keys.
fn read_by_aragora(name: &str) -> bool {
    name.starts_with("ARAGORA_")
        || name.starts_with("SLO_")
        || name.starts_with("OTEL_")
        || name == "DATABASE_URL"
        || name == "REDIS_URL"
        || name.ends_with("_API_KEY")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_map;

    #[test]
    fn each_placeholder_aragora_reads_is_named_without_its_value() {
        let env = env_map(&[
            (
                "ARAGORA_JWT_SECRET",
                "change-me-jwt-secret-at-least-32-characters",
            ),
            ("DATABASE_URL", "postgres://aragora:change-me-db@db/aragora"),
            (
                "ARAGORA_API_TOKEN",
                "a-real-token-of-forty-characters-or-so",
            ),
            ("POSTGRES_PASSWORD", "change-me-postgres-password"),
        ]);
        let problems = placeholder_problems(&env);
        let names: Vec<&str> = problems.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(names, ["ARAGORA_JWT_SECRET", "DATABASE_URL"]);
        for problem in &problems {
            assert!(!problem.message.contains("change-me-"), "{problem}");
        }
    }
}
