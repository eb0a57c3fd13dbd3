//! Process targeting for the `kill` and `pause` actions: naming a process (by pid, pid file or
//! the TCP port it listens on, found through /proc), refusing the ones no experiment may touch
//! (init, this process), and sending it signals.

use std::path::Path;

/// Which process: exactly one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessTarget {
    pub pid: Option<u32>,
    pub pid_file: Option<String>,
    /// The process listening on this TCP port of this machine.
    pub port: Option<u16>,
}

/// Why a target names no process that may be signalled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing answers to the name: no such pid, an unreadable pid file, nobody on the port.
    #[error("{0}")]
    NotFound(String),
    /// The process exists but no experiment may signal it.
    #[error("refusing to signal process {0} (init or this process)")]
    Refused(u32),
}

/// The signals an action sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Kill,
    Term,
    Int,
    Hup,
    Stop,
    Cont,
}

impl Signal {
    /// The signals `kill` may send, by name with or without `SIG` (`KILL`, `SIGTERM`).
    pub fn for_kill(name: &str) -> Option<Signal> {
        match name.trim_start_matches("SIG") {
            "KILL" => Some(Signal::Kill),
            "TERM" => Some(Signal::Term),
            "INT" => Some(Signal::Int),
            "HUP" => Some(Signal::Hup),
            _ => None,
        }
    }

    fn number(self) -> libc::c_int {
        match self {
            Signal::Kill => libc::SIGKILL,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

/// Sends `signal` to `pid`; the error says why it could not be sent.
pub fn send(pid: u32, signal: Signal) -> Result<(), String> {
    // SAFETY: kill(2) takes plain integers; a failure is reported through errno.
    if unsafe { libc::kill(pid as libc::pid_t, signal.number()) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Whether a process `pid` exists on this machine.
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` has ended: gone, or a zombie its parent has not reaped yet (its
/// sockets and files are closed by then).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.trim().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
    }
}

impl ProcessTarget {
    pub fn problems(&self) -> Vec<String> {
        let given = [
            self.pid.is_some(),
            self.pid_file.is_some(),
            self.port.is_some(),
        ]
        .iter()
        .filter(|given| **given)
        .count();
        match given {
            1 => Vec::new(),
            _ => vec!["name the process with exactly one of `pid`, `pid_file` or `port`".into()],
        }
    }

    pub fn describe(&self) -> String {
        match (self.pid, &self.pid_file, self.port) {
            (Some(pid), _, _) => format!("process {pid}"),
            (_, Some(file), _) => format!("the process in {file}"),
            (_, _, Some(port)) => format!("the process listening on port {port}"),
            _ => "no process".into(),
        }
    }

    /// The pid, checked to exist and not to be this process or init.
    pub fn resolve(&self) -> Result<u32, TargetError> {
        let pid = match (self.pid, &self.pid_file, self.port) {
            (Some(pid), _, _) => pid,
            (_, Some(file), _) => std::fs::read_to_string(file)
                .map_err(|err| {
                    TargetError::NotFound(format!("cannot read the pid file {file}: {err}"))
                })?
                .trim()
                .parse()
                .map_err(|_| TargetError::NotFound(format!("{file} does not hold a pid")))?,
            (_, _, Some(port)) => listening_process(port).ok_or_else(|| {
                TargetError::NotFound(format!(
                    "no process of this machine listens on TCP port {port}"
                ))
            })?,
            _ => return Err(TargetError::NotFound("no process named".into())),
        };
        if pid <= 1 || pid == std::process::id() {
            return Err(TargetError::Refused(pid));
        }
        if !exists(pid) {
            return Err(TargetError::NotFound(format!("there is no process {pid}")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    /// Set in the environment of the child process that [`listening_child`] starts.
    const CHILD: &str = "ARAGORA_TEST_LISTENING_CHILD";

    /// Not a test of its own: the body of the child process [`listening_child`] starts (this
    /// test binary again). It listens on a free port, says which, and waits to be signalled.
    #[test]
    #[ignore = "run only as the child of the process-targeting tests"]
    fn listening_child_body() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        println!("port={}", listener.local_addr().unwrap().port());
        // Blocks until the parent kills it: nobody connects.
        let _ = listener.accept();
    }

    /// A child process, killed when the test ends however it ends.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A child process listening on a TCP port, and that port.
    fn listening_child() -> (Child, u16) {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "experiment::process::tests::listening_child_body",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let port = stdout
            .lines()
            .map_while(Result::ok)
            // libtest may print the test's name on the same line first.
            .find_map(|line| {
                line.split_once("port=")
                    .map(|(_, port)| port.trim().parse().unwrap())
            })
            .expect("the child says its port");
        (Child(child), port)
    }

    /// The state letter of /proc/PID/stat: `T` stopped, `S` sleeping, `Z` a zombie.
    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.trim().chars().next())
            .unwrap_or('?')
    }

    fn becomes(pid: u32, wanted: impl Fn(char) -> bool) -> char {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = state(pid);
            if wanted(now) || Instant::now() > deadline {
                return now;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_child_is_found_by_its_port_and_its_pid_file_stopped_resumed_and_killed() {
        let (mut child, port) = listening_child();
        let pid = child.0.id();
        assert_eq!(listening_process(port), Some(pid));
        let by_port = ProcessTarget {
            port: Some(port),
            ..ProcessTarget::default()
        };
        assert_eq!(by_port.resolve(), Ok(pid));
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        let by_file = ProcessTarget {
            pid_file: Some(pid_file.display().to_string()),
            ..ProcessTarget::default()
        };
        assert_eq!(by_file.resolve(), Ok(pid));

        send(pid, Signal::Stop).unwrap();
        assert_eq!(becomes(pid, |s| s == 'T'), 'T', "stopped");
        send(pid, Signal::Cont).unwrap();
        assert_ne!(becomes(pid, |s| s != 'T'), 'T', "resumed");
        send(pid, Signal::Kill).unwrap();
        let status = child.0.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!exists(pid));
        assert_eq!(listening_process(port), None);
        assert!(matches!(by_port.resolve(), Err(TargetError::NotFound(_))));
        assert_eq!(
            by_file.resolve(),
            Err(TargetError::NotFound(format!("there is no process {pid}")))
        );
    }

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
        assert!(target(Some(5), None).problems().is_empty());
        assert_eq!(
            target(Some(1), None).resolve(),
            Err(TargetError::Refused(1))
        );
        let me = std::process::id();
        assert_eq!(
            target(Some(me), None).resolve(),
            Err(TargetError::Refused(me))
        );
    }

    #[test]
    fn a_pid_file_without_a_pid_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("engine.pid");
        std::fs::write(&file, "not a pid").unwrap();
        let target = ProcessTarget {
            pid_file: Some(file.display().to_string()),
            ..ProcessTarget::default()
        };
        let err = target.resolve().unwrap_err().to_string();
        assert!(err.contains("does not hold a pid"), "{err}");
        assert_eq!(Signal::for_kill("SIGTERM"), Some(Signal::Term));
        assert_eq!(Signal::for_kill("STOP"), None);
    }
}
