//! The gateway as `aragora gateway` runs it, configured from the environment alone
//! (`ARAGORA_*`, the same settings and validation), without the rest of the aragora binary:
//! what `scripts/bench-lean-h1.sh` measures in its two HTTP/1.1 engines
//! (`ARAGORA_GATEWAY_H1_ENGINE=pingora|lean`), so a release build of the benchmark needs the
//! gateway's crates only.
//!
//! `cargo build --release --locked -p aragora-gateway --example gateway_env`

use aragora_config::Settings;
use aragora_gateway::GatewayConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let env = aragora_config::process_env();
    let config = match GatewayConfig::load(None, &env) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                eprintln!("gateway_env: {}: {}", problem.setting, problem.message);
            }
            return std::process::ExitCode::from(2);
        }
    };
    let level = env.get("ARAGORA_LOG_LEVEL").map_or("info", String::as_str);
    aragora_telemetry::init_logging(level, aragora_telemetry::LogFormat::Json);
    let running = match aragora_gateway::start(config) {
        Ok(running) => running,
        Err(error) => {
            eprintln!("gateway_env: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addrs = running.addrs();
    println!(
        "gateway listening https={} http={} admin={}",
        addrs.https, addrs.http, addrs.admin
    );
    // Runs until killed (the benchmark's processes are).
    running.wait();
    std::process::ExitCode::SUCCESS
}
