//! `aragora probe`: the container's `HEALTHCHECK` (and anyone's quick check) without curl in the
//! image. It GETs the given URLs, or else the `/healthz` of every aragora listener that this
//! environment configures here, and succeeds as soon as one answers 2xx: the engine's API port
//! (`serve`, and `up`'s embedded engine), the gateway's admin and HTTPS ports (`gateway`, `up`)
//! and control's listener (`control`). The ports are read as the commands read them (defaults,
//! the `ARAGORA_CONFIG` file, the environment), so one `HEALTHCHECK CMD ["aragora", "probe"]`
//! serves every command the image runs, whichever ports the deployment moved them to.
//!
//! Exit 0 with one line naming what answered; exit 1 with one line naming every URL tried and
//! why each failed. HTTPS on loopback accepts any certificate (`up`'s is self-signed; the
//! question is whether this process serves, not who it is); elsewhere certificates are checked.

use crate::ConfigArgs;
use aragora_config::Settings;
use aragora_engine::EngineConfig;
use aragora_gateway::GatewayConfig;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct ProbeArgs {
    /// URLs to GET. Without any: the --path of every aragora listener this environment
    /// configures on this machine (engine ARAGORA_HOST:ARAGORA_PORT, gateway
    /// ARAGORA_ADMIN_HOST:ARAGORA_ADMIN_PORT and ARAGORA_HTTPS_PORT, control
    /// ARAGORA_CONTROL_LISTEN).
    pub urls: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Path probed on each configured listener when no URL is given.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Seconds each request may take.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

pub async fn run(args: &ProbeArgs) -> ExitCode {
    let urls = if args.urls.is_empty() {
        configured_urls(args)
    } else {
        args.urls.clone()
    };
    if urls.is_empty() {
        eprintln!(
            "aragora probe: no listener is configured on a fixed port (all are 0); give a URL"
        );
        return ExitCode::FAILURE;
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut probes = tokio::task::JoinSet::new();
    for (index, url) in urls.iter().enumerate() {
        let url = url.clone();
        probes.spawn(async move { (index, get(&url, timeout).await) });
    }
    let mut failures = vec![String::new(); urls.len()];
    while let Some(joined) = probes.join_next().await {
        let Ok((index, outcome)) = joined else {
            continue;
        };
        match outcome {
            Ok(status) => {
                println!("aragora probe: ok: GET {} answered {status}", urls[index]);
                return ExitCode::SUCCESS;
            }
            Err(reason) => failures[index] = format!("GET {}: {reason}", urls[index]),
        }
    }
    eprintln!("aragora probe: unhealthy: {}", failures.join("; "));
    ExitCode::FAILURE
}

/// The probe URLs of every listener the configuration puts on a fixed port, in the order
/// engine, gateway admin, gateway HTTPS, control.
fn configured_urls(args: &ProbeArgs) -> Vec<String> {
    let env = aragora_config::process_env();
    let file = args.config.config.as_deref();
    // Read as the commands read them, without judging: a value that does not parse leaves
    // the default, and a file meant for the other component adds problems nobody shows here.
    let (engine, _) = EngineConfig::read(file, &env);
    let (gateway, _) = GatewayConfig::read(file, &env);
    let control = env
        .get("ARAGORA_CONTROL_LISTEN")
        .and_then(|listen| listen.parse::<SocketAddr>().ok())
        .or_else(|| crate::control::DEFAULT_LISTEN.parse().ok());
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let mut urls = Vec::new();
    let mut add = |scheme: &str, host: &str, port: u16| {
        let url = format!("{scheme}://{}:{port}{path}", local(host));
        if port != 0 && !urls.contains(&url) {
            urls.push(url);
        }
    };
    add("http", &engine.host, engine.api_port);
    add("http", &gateway.admin_host, gateway.admin_port);
    add("https", &gateway.host, gateway.https_port);
    if let Some(control) = control {
        add("http", &control.ip().to_string(), control.port());
    }
    urls
}

/// The address to reach a listener bound to `host` from this machine: loopback for a wildcard.
fn local(host: &str) -> String {
    match host {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_string(),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The status of a 2xx answer, or why there was none.
async fn get(url: &str, timeout: Duration) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("not a URL ({err})"))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .danger_accept_invalid_certs(parsed.scheme() == "https" && is_loopback(&parsed))
        .build()
        .map_err(|err| format!("cannot build an HTTP client ({err})"))?;
    match client.get(parsed).send().await {
        Ok(response) if response.status().is_success() => Ok(response.status().to_string()),
        Ok(response) => Err(format!("answered {}", response.status())),
        Err(err) if err.is_timeout() => Err(format!("no answer within {}s", timeout.as_secs())),
        Err(err) => Err(innermost(&err)),
    }
}

/// The deepest cause of an error ("Connection refused (os error 111)"), which says more than
/// reqwest's "error sending request for url".
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(local("0.0.0.0"), "127.0.0.1");
        assert_eq!(local("::"), "[::1]");
        assert_eq!(local("10.0.0.7"), "10.0.0.7");
        assert_eq!(local("fd00::7"), "[fd00::7]");
        assert_eq!(local("localhost"), "localhost");
    }
}
