//! One child process of a test: spawned with its stderr in a log file and its stdout copied
//! line by line to a file and kept for reading back what it announced (the addresses it
//! bound), signalled by pid, waited for with a deadline, killed when dropped. The `Engine`,
//! `GatewayProcess`, `UpProcess` and proxy handles are this plus what their process serves.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to announce its addresses.
const ANNOUNCE_PATIENCE: Duration = Duration::from_secs(30);

/// The stdout lines seen so far, and a wake-up for whoever waits on the next one.
#[derive(Default)]
struct Lines {
    seen: Mutex<(Vec<String>, bool)>,
    more: Condvar,
}

/// A running child process; killed (and reaped) when dropped.
pub struct Process {
    pub child: Child,
    /// Its stderr, where the binary logs.
    pub log: PathBuf,
    /// A copy of its stdout.
    pub out: PathBuf,
    lines: Arc<Lines>,
}

impl Lines {
    /// Waits until `check` finds what it wants in the lines seen so far (and whether stdout
    /// ended), or `deadline` passes (`None`).
    fn wait_until<T>(
        &self,
        deadline: Instant,
        check: impl Fn(&(Vec<String>, bool)) -> Option<T>,
    ) -> Option<T> {
        let mut seen = self.seen.lock().unwrap();
        loop {
            if let Some(found) = check(&seen) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            seen = self.more.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }
}

impl Process {
    /// Spawns `command` with stdin closed, stderr to `log` and stdout to `out` (and memory).
    pub fn spawn(command: &mut Command, log: &Path, out: &Path) -> Self {
        let stderr = std::fs::File::create(log).expect("log file");
        Self::spawn_with_stderr(command, stderr.into(), log, out)
    }

    /// [`spawn`](Self::spawn) with stderr on a pseudo-terminal (`isatty(2)` is true in the
    /// child), copied to `log` as it comes: for what a process does on a terminal.
    pub fn spawn_on_terminal(command: &mut Command, log: &Path, out: &Path) -> Self {
        let (master, slave) = open_pty();
        let mut copy = std::fs::File::create(log).expect("log file");
        std::thread::spawn(move || {
            // Ends with EIO once every holder of the terminal's other side has closed it.
            let _ = std::io::copy(&mut std::fs::File::from(master), &mut copy);
        });
        let process = Self::spawn_with_stderr(command, slave.into(), log, out);
        // The child holds its own copy now; the command's must go, or the terminal never ends.
        command.stderr(Stdio::null());
        process
    }

    fn spawn_with_stderr(command: &mut Command, stderr: Stdio, log: &Path, out: &Path) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut copy = std::fs::File::create(out).expect("stdout file");
        let lines = Arc::new(Lines::default());
        let feed = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(copy, "{line}");
                feed.seen.lock().unwrap().0.push(line);
                feed.more.notify_all();
            }
            feed.seen.lock().unwrap().1 = true;
            feed.more.notify_all();
        });
        Self {
            child,
            log: log.to_path_buf(),
            out: out.to_path_buf(),
            lines,
        }
    }

    /// The rest of the first stdout line starting with `prefix`, waiting for it if need be;
    /// panics with the log if the process ends or stays silent too long.
    pub fn announcement(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + ANNOUNCE_PATIENCE;
        let found = self.lines.wait_until(deadline, |(lines, ended)| {
            let rest = lines.iter().find_map(|line| line.strip_prefix(prefix));
            (rest.is_some() || *ended).then(|| rest.map(str::to_string))
        });
        if let Some(Some(rest)) = found {
            return rest;
        }
        let _ = self.child.kill();
        panic!(
            "no `{prefix}` line on stdout within {ANNOUNCE_PATIENCE:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until the copy of stdout has reached its end (and so `out` holds all of it), or
    /// until `deadline`: the child's exit and the copying thread's last write race otherwise.
    /// A grandchild still holding the pipe open keeps it from ending; then this gives up.
    fn wait_stdout_copied(&self, deadline: Instant) {
        self.lines
            .wait_until(deadline, |(_, ended)| ended.then_some(()));
    }

    /// Waits for the process to exit, up to `patience`, and for its stdout to be copied to
    /// `out`; kills it and panics with its log after.
    pub async fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.exited() {
                self.wait_stdout_copied(deadline);
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "the process did not exit within {patience:?}; log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A new pseudo-terminal: its master side (what the terminal shows) and its slave side (what a
/// child writes to).
fn open_pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the integers it is given and reads nothing
    // else (null name, termios and window size are allowed).
    let done = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(done, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened for us and are owned by nothing else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// The `name=host:port` pairs of an announcement line such as
/// `api=127.0.0.1:4100 ws=127.0.0.1:4101`; words of another shape are skipped.
pub fn addresses(announcement: &str) -> HashMap<String, SocketAddr> {
    announcement
        .split_whitespace()
        .filter_map(|word| {
            let (name, addr) = word.split_once('=')?;
            let addr = addr.strip_prefix("http://").unwrap_or(addr);
            Some((name.to_string(), addr.parse().ok()?))
        })
        .collect()
}

/// The address named `name` in `announcement`; panics naming what is missing.
pub fn address(announcement: &str, name: &str) -> SocketAddr {
    *addresses(announcement)
        .get(name)
        .unwrap_or_else(|| panic!("no {name}=ADDRESS in the announcement {announcement:?}"))
}
