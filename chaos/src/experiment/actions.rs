//! Actions: what a method does to the system, and the undo each one leaves behind.
//!
//! | action | does | undo (always run) |
//! |---|---|---|
//! | `kill` | signals a process (by `pid`, `pid_file` or the TCP `port` it listens on) | none: a dead process is the point |
//! | `pause` | SIGSTOP now, SIGCONT after `seconds` | SIGCONT |
//! | `proxy_fault` | adds a fault to a running fault proxy (`aragora chaos proxy`) | removes it |
//! | `engine_fault` | `POST /api/system/faults` on an engine (slow or failing agent, database outage) | `DELETE` it |
//! | `http` | any request, e.g. maintenance mode on | none (write a rollback) |
//! | `command` | runs a program (`systemctl stop redis`, `kubectl delete pod ...`) | none (write a rollback) |
//! | `wait` | lets the system react | none |
//! | `probe` | a probe in the middle of the method: a failure is a deviation | none |

use super::client;
use super::probes::Probe;
use crate::link_faults::LinkFaultSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Kill(ProcessAction),
    Pause(ProcessAction),
    ProxyFault(ProxyFaultAction),
    EngineFault(EngineFaultAction),
    Http(HttpAction),
    Command(CommandAction),
    Wait(WaitAction),
    Probe(#[serde(deserialize_with = "super::one_of")] Probe),
}

/// Which process: exactly one of the three.
#[derive(Debug, Clone, Default)]
pub struct ProcessTarget {
    pub pid: Option<u32>,
    pub pid_file: Option<String>,
    /// The process listening on this TCP port of this machine.
    pub port: Option<u16>,
}

/// `kill` and `pause`: a process (by `pid`, `pid_file` or `port`), and for `kill` the signal,
/// for `pause` how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessAction {
    #[serde(default, deserialize_with = "super::optional_number_or_text")]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default, deserialize_with = "super::optional_number_or_text")]
    pub port: Option<u16>,
    /// `kill`: `KILL` (default), `TERM`, `INT` or `HUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// `pause`: resumed after this long (the method goes on meanwhile), or at rollback.
    #[serde(
        default,
        deserialize_with = "super::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub seconds: Option<f64>,
}

impl ProcessAction {
    fn target(&self) -> ProcessTarget {
        ProcessTarget {
            pid: self.pid,
            pid_file: self.pid_file.clone(),
            port: self.port,
        }
    }

    fn signal(&self) -> &str {
        self.signal.as_deref().unwrap_or("KILL")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFaultAction {
    /// The fault proxy's API (`aragora chaos proxy --api`).
    pub api: String,
    pub proxy: String,
    pub fault: LinkFaultSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFaultAction {
    /// The engine (or the gateway in front of it).
    pub url: String,
    /// `ARAGORA_API_TOKEN` of that engine.
    pub token: String,
    /// The fault, as `POST /api/system/faults` takes it (`kind`, `duration_seconds`, ...).
    pub fault: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The status that means it worked; any 2xx without it.
    #[serde(
        default,
        deserialize_with = "super::optional_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub status: Option<u16>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// The program and its arguments (no shell: write `[sh, -c, "..."]` for one).
    pub run: Vec<String>,
    #[serde(default = "sixty", deserialize_with = "super::number_or_text")]
    pub timeout_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitAction {
    #[serde(deserialize_with = "super::number_or_text")]
    pub seconds: f64,
}

fn post() -> String {
    "POST".into()
}
fn sixty() -> f64 {
    60.0
}

/// Longest wait, pause or command an experiment may ask for.
const MAX_SECONDS: f64 = 3600.0;

/// What an action left to undo.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "undo")]
pub enum Undo {
    Resume {
        pid: u32,
    },
    RemoveProxyFault {
        api: String,
        proxy: String,
        id: String,
    },
    RemoveEngineFault {
        url: String,
        token: String,
        id: String,
        insecure: bool,
    },
}

/// A carried-out action: what happened, and what to undo.
#[derive(Debug)]
pub struct Done {
    pub detail: String,
    pub undo: Option<Undo>,
    /// A method probe's verdict (actions always "pass").
    pub probe_passed: bool,
}

impl Done {
    fn action(detail: impl Into<String>, undo: Option<Undo>) -> Done {
        Done {
            detail: detail.into(),
            undo,
            probe_passed: true,
        }
    }
}

fn signal_number(name: &str) -> Option<libc::c_int> {
    match name.trim_start_matches("SIG") {
        "KILL" => Some(libc::SIGKILL),
        "TERM" => Some(libc::SIGTERM),
        "INT" => Some(libc::SIGINT),
        "HUP" => Some(libc::SIGHUP),
        _ => None,
    }
}

fn seconds_problem(field: &str, seconds: f64) -> Option<String> {
    (!(seconds > 0.0 && seconds <= MAX_SECONDS))
        .then(|| format!("{field} must be above 0 and at most {MAX_SECONDS}, not {seconds}"))
}

impl ProcessTarget {
    fn problems(&self) -> Vec<String> {
        let given = [
            self.pid.is_some(),
            self.pid_file.is_some(),
            self.port.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        match given {
            1 => Vec::new(),
            _ => vec!["name the process with exactly one of `pid`, `pid_file` or `port`".into()],
        }
    }

    fn describe(&self) -> String {
        match (self.pid, &self.pid_file, self.port) {
            (Some(pid), _, _) => format!("process {pid}"),
            (_, Some(file), _) => format!("the process in {file}"),
            (_, _, Some(port)) => format!("the process listening on port {port}"),
            _ => "no process".into(),
        }
    }

    /// The pid, checked to exist and not to be this process or init.
    fn resolve(&self) -> Result<u32, String> {
        let pid = match (self.pid, &self.pid_file, self.port) {
            (Some(pid), _, _) => pid,
            (_, Some(file), _) => std::fs::read_to_string(file)
                .map_err(|err| format!("cannot read the pid file {file}: {err}"))?
                .trim()
                .parse()
                .map_err(|_| format!("{file} does not hold a pid"))?,
            (_, _, Some(port)) => listening_process(port)
                .ok_or_else(|| format!("no process of this machine listens on TCP port {port}"))?,
            _ => return Err("no process named".into()),
        };
        if pid <= 1 || pid == std::process::id() {
            return Err(format!(
                "refusing to signal process {pid} (init or this process)"
            ));
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("there is no process {pid}"));
        }
        Ok(pid)
    }
}

/// The process holding a listening TCP socket on `port` (IPv4 or IPv6), from /proc.
pub fn listening_process(port: u16) -> Option<u32> {
    const LISTEN: &str = "0A";
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    (u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN)
                        .then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|link| {
                    inodes
                        .iter()
                        .any(|inode| link.as_os_str() == inode.as_str())
                })
                .then_some(pid)
        })
}

fn send_signal(pid: u32, signal: libc::c_int) -> Result<(), String> {
    // SAFETY: kill(2) takes plain integers; a failure is reported through errno.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// How long an action's own request may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends a request and reads its JSON answer; a non-2xx status is an error with the body.
async fn call(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<(u16, serde_json::Value), String> {
    let response = request
        .send()
        .await
        .map_err(|err| format!("{what}: no answer: {err}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if status.is_success() {
        Ok((status.as_u16(), body))
    } else {
        Err(format!("{what}: answered {status}: {body}"))
    }
}

impl Action {
    pub fn problems(&self) -> Vec<String> {
        let url = |url: &str| {
            (!aragora_config::is_http_url(url)).then(|| format!("{url:?} is not an http(s) URL"))
        };
        match self {
            Action::Kill(kill) => {
                let mut problems = kill.target().problems();
                if signal_number(kill.signal()).is_none() {
                    problems.push(format!(
                        "signal {:?} is not one of KILL, TERM, INT, HUP (use `pause` to stop a process)",
                        kill.signal()
                    ));
                }
                if kill.seconds.is_some() {
                    problems.push("`seconds` is for `pause`; a kill is not undone".into());
                }
                problems
            }
            Action::Pause(pause) => {
                let mut problems = pause.target().problems();
                match pause.seconds {
                    None => problems
                        .push("a pause needs `seconds`: how long the process stays stopped".into()),
                    Some(seconds) => problems.extend(seconds_problem("seconds", seconds)),
                }
                if pause.signal.is_some() {
                    problems
                        .push("`signal` is for `kill`; a pause is SIGSTOP, then SIGCONT".into());
                }
                problems
            }
            Action::ProxyFault(fault) => {
                let mut problems: Vec<String> = url(&fault.api).into_iter().collect();
                problems.extend(fault.fault.problems());
                problems
            }
            Action::EngineFault(fault) => {
                let mut problems: Vec<String> = url(&fault.url).into_iter().collect();
                if !fault.fault.contains_key("kind") {
                    problems.push("the fault needs a `kind` (agent_slow, agent_failing, database_unavailable)".into());
                }
                if fault.token.trim().is_empty() {
                    problems.push("the engine's admin token is empty".into());
                }
                problems
            }
            Action::Http(http) => {
                let mut problems: Vec<String> = url(&http.url).into_iter().collect();
                if reqwest::Method::from_bytes(http.method.as_bytes()).is_err() {
                    problems.push(format!("{:?} is not an HTTP method", http.method));
                }
                problems
            }
            Action::Command(command) => {
                let mut problems: Vec<String> =
                    seconds_problem("timeout_seconds", command.timeout_seconds)
                        .into_iter()
                        .collect();
                if command.run.is_empty() {
                    problems.push("`run` is empty: give the program and its arguments".into());
                }
                problems
            }
            Action::Wait(wait) => seconds_problem("seconds", wait.seconds)
                .into_iter()
                .collect(),
            Action::Probe(probe) => probe.problems(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill(_) => "kill",
            Action::Pause(_) => "pause",
            Action::ProxyFault(_) => "proxy_fault",
            Action::EngineFault(_) => "engine_fault",
            Action::Http(_) => "http",
            Action::Command(_) => "command",
            Action::Wait(_) => "wait",
            Action::Probe(_) => "probe",
        }
    }

    /// How long the action itself takes at least (a wait), for progress.
    pub fn planned_seconds(&self) -> Option<f64> {
        match self {
            Action::Wait(wait) => Some(wait.seconds),
            _ => None,
        }
    }

    pub async fn perform(&self) -> Result<Done, String> {
        match self {
            Action::Kill(kill) => {
                let target = kill.target();
                let pid = target.resolve()?;
                let signal = signal_number(kill.signal()).ok_or("unknown signal")?;
                send_signal(pid, signal)?;
                Ok(Done::action(
                    format!(
                        "sent SIG{} to {} (pid {pid})",
                        kill.signal().trim_start_matches("SIG"),
                        target.describe()
                    ),
                    None,
                ))
            }
            Action::Pause(pause) => {
                let target = pause.target();
                let pid = target.resolve()?;
                send_signal(pid, libc::SIGSTOP)?;
                let seconds = pause.seconds.unwrap_or_default();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                    if send_signal(pid, libc::SIGCONT).is_ok() {
                        tracing::info!(pid, "paused process resumed");
                    }
                });
                Ok(Done::action(
                    format!("stopped {} (pid {pid}) for {seconds} s", target.describe()),
                    Some(Undo::Resume { pid }),
                ))
            }
            Action::ProxyFault(fault) => {
                let endpoint = format!(
                    "{}/proxies/{}/faults",
                    fault.api.trim_end_matches('/'),
                    fault.proxy
                );
                let (_, body) = call(
                    client(false, ACTION_TIMEOUT)?
                        .post(&endpoint)
                        .json(&fault.fault),
                    &format!("the fault proxy at {endpoint}"),
                )
                .await?;
                let id = body["id"].as_str().unwrap_or_default().to_string();
                Ok(Done::action(
                    format!("{} on proxy {} ({id})", fault.fault.describe(), fault.proxy),
                    Some(Undo::RemoveProxyFault {
                        api: fault.api.clone(),
                        proxy: fault.proxy.clone(),
                        id,
                    }),
                ))
            }
            Action::EngineFault(fault) => {
                let endpoint = format!("{}/api/system/faults", fault.url.trim_end_matches('/'));
                let (_, body) = call(
                    client(fault.insecure, ACTION_TIMEOUT)?
                        .post(&endpoint)
                        .bearer_auth(&fault.token)
                        .json(&fault.fault),
                    &format!("the engine at {endpoint}"),
                )
                .await?;
                let id = body["id"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| body["id"].to_string());
                Ok(Done::action(
                    format!(
                        "engine fault {} ({id})",
                        serde_json::Value::Object(fault.fault.clone())
                    ),
                    Some(Undo::RemoveEngineFault {
                        url: fault.url.clone(),
                        token: fault.token.clone(),
                        id,
                        insecure: fault.insecure,
                    }),
                ))
            }
            Action::Http(http) => {
                let method = reqwest::Method::from_bytes(http.method.as_bytes())
                    .map_err(|err| err.to_string())?;
                let mut request = client(http.insecure, ACTION_TIMEOUT)?.request(method, &http.url);
                for (name, value) in &http.headers {
                    request = request.header(name, value);
                }
                if let Some(body) = &http.body {
                    request = request.json(body);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|err| format!("{}: no answer: {err}", http.url))?;
                let status = response.status();
                let fine = http
                    .status
                    .map_or(status.is_success(), |wanted| status.as_u16() == wanted);
                if !fine {
                    let body = response.text().await.unwrap_or_default();
                    return Err(format!(
                        "{} {} answered {status}: {body}",
                        http.method, http.url
                    ));
                }
                Ok(Done::action(
                    format!("{} {} answered {status}", http.method, http.url),
                    None,
                ))
            }
            Action::Command(command) => run_command(command).await.map(|d| Done::action(d, None)),
            Action::Wait(wait) => {
                tokio::time::sleep(Duration::from_secs_f64(wait.seconds)).await;
                Ok(Done::action(format!("waited {} s", wait.seconds), None))
            }
            Action::Probe(probe) => {
                let outcome = probe.check().await;
                Ok(Done {
                    detail: outcome.detail,
                    undo: None,
                    probe_passed: outcome.passed,
                })
            }
        }
    }
}

async fn run_command(command: &CommandAction) -> Result<String, String> {
    let program = &command.run[0];
    let child = tokio::process::Command::new(program)
        .args(&command.run[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs_f64(command.timeout_seconds), child)
        .await
        .map_err(|_| {
            format!(
                "{program} did not finish within {} s; it was killed",
                command.timeout_seconds
            )
        })?
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        text.chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
    };
    if output.status.success() {
        Ok(format!("{program} exited 0 {}", tail(&output.stdout)))
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            output.status,
            tail(&output.stderr)
        ))
    }
}

impl Undo {
    pub fn describe(&self) -> String {
        match self {
            Undo::Resume { pid } => format!("resume process {pid}"),
            Undo::RemoveProxyFault { proxy, id, .. } => {
                format!("remove fault {id} from proxy {proxy}")
            }
            Undo::RemoveEngineFault { id, .. } => format!("remove engine fault {id}"),
        }
    }

    /// Undoes; a fault that is already gone (expired) counts as undone.
    pub async fn perform(&self) -> Result<String, String> {
        match self {
            Undo::Resume { pid } => match send_signal(*pid, libc::SIGCONT) {
                Ok(()) => Ok(format!("process {pid} resumed")),
                Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => {
                    Ok(format!("process {pid} is gone"))
                }
                Err(err) => Err(err),
            },
            Undo::RemoveProxyFault { api, proxy, id } => {
                let endpoint = format!("{}/proxies/{proxy}/faults/{id}", api.trim_end_matches('/'));
                remove(client(false, ACTION_TIMEOUT)?.delete(&endpoint), &endpoint).await
            }
            Undo::RemoveEngineFault {
                url,
                token,
                id,
                insecure,
            } => {
                let endpoint = format!("{}/api/system/faults/{id}", url.trim_end_matches('/'));
                remove(
                    client(*insecure, ACTION_TIMEOUT)?
                        .delete(&endpoint)
                        .bearer_auth(token),
                    &endpoint,
                )
                .await
            }
        }
    }
}

async fn remove(request: reqwest::RequestBuilder, endpoint: &str) -> Result<String, String> {
    let response = request
        .send()
        .await
        .map_err(|err| format!("DELETE {endpoint}: no answer: {err}"))?;
    match response.status().as_u16() {
        200..=299 => Ok("removed".into()),
        404 => Ok("already gone (expired)".into()),
        status => Err(format!(
            "DELETE {endpoint} answered {status}: {}",
            response.text().await.unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_listening_on_a_port_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listening_process(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(listening_process(port), None);
    }

    #[test]
    fn a_process_target_must_be_named_once_and_never_init() {
        let none = ProcessTarget::default();
        assert_eq!(none.problems().len(), 1);
        let target = |pid: Option<u32>, port: Option<u16>| ProcessTarget {
            pid,
            pid_file: None,
            port,
        };
        assert_eq!(target(Some(5), Some(80)).problems().len(), 1);
        let init = target(Some(1), None);
        assert!(init.resolve().unwrap_err().contains("refusing"));
        let me = target(Some(std::process::id()), None);
        assert!(me.resolve().unwrap_err().contains("refusing"));
    }
}
