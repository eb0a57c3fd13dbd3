//! What the benchmarks share: settings from the environment, percentiles, and starting the
//! release `aragora serve` they measure.

/// `key` parsed from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile (nearest rank) of sorted samples; NaN without samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `aragora serve` on ephemeral ports in `data_dir`, logging warnings only, printing its ports
/// on standard output (read them with [`engine_api`]).
pub fn serve_command(data_dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aragora"));
    command
        .arg("serve")
        .env("ARAGORA_HOST", "127.0.0.1")
        .env("ARAGORA_PORT", "0")
        .env("ARAGORA_WS_PORT", "0")
        .env("ARAGORA_DATA_DIR", data_dir)
        .env("ARAGORA_LOG_LEVEL", "warning")
        // The benches call the API and watch without credentials, as a demo does.
        .env("ARAGORA_AUTH_ANONYMOUS", "operator")
        .stdout(std::process::Stdio::piped());
    command
}

/// The API and WebSocket addresses a started [`serve_command`] announces
/// (`aragora engine listening api=… ws=…`).
pub fn engine_api(child: &mut std::process::Child) -> (String, String) {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("the engine's stdout is piped");
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("the engine printed its ports").unwrap();
        if let Some(rest) = line.strip_prefix("aragora engine listening ") {
            let addr = |key: &str| {
                rest.split_whitespace()
                    .find_map(|field| field.strip_prefix(key))
                    .expect("the engine printed both addresses")
                    .to_string()
            };
            return (addr("api="), addr("ws="));
        }
    }
}
