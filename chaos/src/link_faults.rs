//! Link faults: what the fault proxy can do to a TCP link, and when. The model shared by the
//! proxy, its HTTP API and the experiments' `proxy_fault` action. (The engine's own faults,
//! `aragora_engine::faults`, act inside one engine: slow or failing agents, a database outage.)
//!
//! The kinds are Toxiproxy's, under names an SRE reads without the manual: `latency` (with
//! jitter), `bandwidth`, `reset` (connections end with a TCP RST), `blackhole` (data vanishes;
//! Toxiproxy's `timeout`), `refuse` (the listener is closed, so connects get ECONNREFUSED) and
//! `down` (refuse and reset together: the link is cut). A fault applies to one direction of the
//! stream like Toxiproxy's (`downstream`, server to client, by default) and is active from
//! `start_after_seconds` for `duration_seconds`, optionally again `every_seconds`: a flapping link
//! is one fault, not a script.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The kinds of fault, for messages that list them.
pub const KINDS: &str = "latency, bandwidth, reset, blackhole, refuse, down";

/// Longest latency or timeout a fault may ask for: past this it is a black hole, say so.
const MAX_DELAY_MS: u64 = 600_000;

/// Highest bandwidth limit (about 10 GiB/s): anything faster is no limit at all.
const MAX_RATE_KIB_PER_SECOND: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkFaultKind {
    Latency,
    Bandwidth,
    Reset,
    Blackhole,
    Refuse,
    Down,
}

impl LinkFaultKind {
    /// Every kind, in the order [`KINDS`] lists them.
    pub const ALL: [LinkFaultKind; 6] = [
        LinkFaultKind::Latency,
        LinkFaultKind::Bandwidth,
        LinkFaultKind::Reset,
        LinkFaultKind::Blackhole,
        LinkFaultKind::Refuse,
        LinkFaultKind::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkFaultKind::Latency => "latency",
            LinkFaultKind::Bandwidth => "bandwidth",
            LinkFaultKind::Reset => "reset",
            LinkFaultKind::Blackhole => "blackhole",
            LinkFaultKind::Refuse => "refuse",
            LinkFaultKind::Down => "down",
        }
    }
}

/// Which way the bytes flow: `upstream` is client to server, `downstream` server to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upstream,
    #[default]
    Downstream,
    Both,
}

impl Direction {
    fn covers(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _)
                | (Direction::Upstream, Flow::Upstream)
                | (Direction::Downstream, Flow::Downstream)
        )
    }
}

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Upstream,
    Downstream,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Upstream => "upstream",
            Flow::Downstream => "downstream",
        }
    }
}

/// A fault as asked for (YAML in an experiment, JSON to the proxy API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkFaultSpec {
    pub kind: LinkFaultKind,
    #[serde(default)]
    pub direction: Direction,
    /// `latency`: added to every chunk of data in the faulted direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `latency`: up to this much more or less, uniformly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// `bandwidth`: bytes per second allowed through, in KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_kib_per_second: Option<u64>,
    /// `blackhole`: close the connection after this long without delivering (0 or absent: hold
    /// it open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Active this long, then gone (absent: until removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Active only after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after_seconds: Option<f64>,
    /// Active for `duration_seconds` out of every `every_seconds`, until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<f64>,
}

impl LinkFaultSpec {
    pub fn new(kind: LinkFaultKind) -> LinkFaultSpec {
        LinkFaultSpec {
            kind,
            direction: Direction::default(),
            latency_ms: None,
            jitter_ms: None,
            rate_kib_per_second: None,
            timeout_ms: None,
            duration_seconds: None,
            start_after_seconds: None,
            every_seconds: None,
        }
    }

    /// Every problem of this spec, each saying what to write instead.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let needs =
            |field: &str, value: Option<u64>, max: u64, problems: &mut Vec<String>| match value {
                None => problems.push(format!("a {} fault needs `{field}`", self.kind.as_str())),
                Some(v) if v == 0 || v > max => {
                    problems.push(format!("`{field}` must be between 1 and {max}, not {v}"))
                }
                Some(_) => {}
            };
        let forbids = |field: &str, value: bool, problems: &mut Vec<String>| {
            if value {
                problems.push(format!(
                    "`{field}` does not apply to a {} fault; remove it",
                    self.kind.as_str()
                ));
            }
        };
        match self.kind {
            LinkFaultKind::Latency => {
                needs("latency_ms", self.latency_ms, MAX_DELAY_MS, &mut problems);
                if let (Some(jitter), Some(latency)) = (self.jitter_ms, self.latency_ms) {
                    if jitter > latency {
                        problems.push(format!(
                            "`jitter_ms` ({jitter}) must not exceed `latency_ms` ({latency})"
                        ));
                    }
                }
            }
            LinkFaultKind::Bandwidth => needs(
                "rate_kib_per_second",
                self.rate_kib_per_second,
                MAX_RATE_KIB_PER_SECOND,
                &mut problems,
            ),
            LinkFaultKind::Blackhole => {
                if let Some(timeout) = self.timeout_ms {
                    if timeout > MAX_DELAY_MS {
                        problems.push(format!("`timeout_ms` must be at most {MAX_DELAY_MS}"));
                    }
                }
            }
            LinkFaultKind::Reset | LinkFaultKind::Refuse | LinkFaultKind::Down => {}
        }
        if self.kind != LinkFaultKind::Latency {
            forbids("latency_ms", self.latency_ms.is_some(), &mut problems);
            forbids("jitter_ms", self.jitter_ms.is_some(), &mut problems);
        }
        if self.kind != LinkFaultKind::Bandwidth {
            forbids(
                "rate_kib_per_second",
                self.rate_kib_per_second.is_some(),
                &mut problems,
            );
        }
        if self.kind != LinkFaultKind::Blackhole {
            forbids("timeout_ms", self.timeout_ms.is_some(), &mut problems);
        }
        for (field, value) in [
            ("duration_seconds", self.duration_seconds),
            ("start_after_seconds", self.start_after_seconds),
            ("every_seconds", self.every_seconds),
        ] {
            if let Some(v) = value {
                if !(0.0..=30.0 * 86_400.0).contains(&v) {
                    problems.push(format!(
                        "`{field}` must be between 0 and 2592000 (30 days), not {v}"
                    ));
                }
            }
        }
        if let Some(every) = self.every_seconds {
            match self.duration_seconds {
                None => problems.push(
                    "`every_seconds` needs `duration_seconds`: how long each window lasts".into(),
                ),
                Some(duration) if duration >= every => problems.push(format!(
                    "`duration_seconds` ({duration}) must be shorter than `every_seconds` ({every}), or the fault never lifts"
                )),
                Some(_) => {}
            }
        }
        problems
    }

    fn window(&self) -> Window {
        let seconds = |v: Option<f64>| v.map(Duration::from_secs_f64);
        Window {
            start_after: seconds(self.start_after_seconds).unwrap_or_default(),
            duration: seconds(self.duration_seconds),
            every: seconds(self.every_seconds),
        }
    }

    /// A one-line description for logs and reports.
    pub fn describe(&self) -> String {
        let mut text = self.kind.as_str().to_string();
        if let Some(latency) = self.latency_ms {
            text.push_str(&format!(" {latency} ms"));
            if let Some(jitter) = self.jitter_ms {
                text.push_str(&format!(" ± {jitter} ms"));
            }
        }
        if let Some(rate) = self.rate_kib_per_second {
            text.push_str(&format!(" {rate} KiB/s"));
        }
        if matches!(
            self.kind,
            LinkFaultKind::Latency | LinkFaultKind::Bandwidth | LinkFaultKind::Blackhole
        ) {
            text.push_str(&format!(" {:?}", self.direction).to_lowercase());
        }
        if let Some(duration) = self.duration_seconds {
            text.push_str(&format!(" for {duration} s"));
        }
        if let Some(every) = self.every_seconds {
            text.push_str(&format!(" every {every} s"));
        }
        text
    }
}

/// When a fault is active, relative to when it was added.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_after: Duration,
    duration: Option<Duration>,
    every: Option<Duration>,
}

impl Window {
    fn active_at(&self, age: Duration) -> bool {
        let Some(since_start) = age.checked_sub(self.start_after) else {
            return false;
        };
        match (self.duration, self.every) {
            (Some(duration), Some(every)) if !every.is_zero() => {
                Duration::from_nanos((since_start.as_nanos() % every.as_nanos()) as u64) < duration
            }
            (Some(duration), _) => since_start < duration,
            (None, _) => true,
        }
    }

    fn expired_at(&self, age: Duration) -> bool {
        match (self.duration, self.every) {
            (Some(duration), None) => age >= self.start_after + duration,
            _ => false,
        }
    }
}

/// A fault added to a proxy: its spec, id and when it was added.
#[derive(Debug, Clone)]
pub struct LinkFault {
    pub id: String,
    pub spec: LinkFaultSpec,
    pub added: Instant,
    window: Window,
}

impl LinkFault {
    pub fn new(id: String, spec: LinkFaultSpec, added: Instant) -> LinkFault {
        let window = spec.window();
        LinkFault {
            id,
            spec,
            added,
            window,
        }
    }

    pub fn active_at(&self, now: Instant) -> bool {
        self.window
            .active_at(now.saturating_duration_since(self.added))
    }

    pub fn expired_at(&self, now: Instant) -> bool {
        self.window
            .expired_at(now.saturating_duration_since(self.added))
    }
}

/// What the active faults add up to at one moment: what a connection consults per chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// `refuse` or `down`: the listener is closed.
    pub refuse: bool,
    /// `reset` or `down`: connections are cut with a RST.
    pub reset: bool,
    upstream: FlowEffects,
    downstream: FlowEffects,
}

/// What happens to the bytes of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowEffects {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second; `None` is unlimited.
    pub rate: Option<u64>,
    /// Data is dropped; `Some(timeout)` closes the connection after it (zero: never).
    pub blackhole: Option<Duration>,
}

impl Effects {
    /// Combines the faults active at `now`: latencies add up, the lowest bandwidth wins.
    pub fn of<'a>(faults: impl IntoIterator<Item = &'a LinkFault>, now: Instant) -> Effects {
        let mut effects = Effects::default();
        for fault in faults.into_iter().filter(|f| f.active_at(now)) {
            let spec = &fault.spec;
            match spec.kind {
                LinkFaultKind::Refuse => effects.refuse = true,
                LinkFaultKind::Reset => effects.reset = true,
                LinkFaultKind::Down => {
                    effects.refuse = true;
                    effects.reset = true;
                }
                _ => {
                    for flow in [Flow::Upstream, Flow::Downstream] {
                        if !spec.direction.covers(flow) {
                            continue;
                        }
                        let target = effects.flow_mut(flow);
                        match spec.kind {
                            LinkFaultKind::Latency => {
                                target.latency +=
                                    Duration::from_millis(spec.latency_ms.unwrap_or_default());
                                target.jitter +=
                                    Duration::from_millis(spec.jitter_ms.unwrap_or_default());
                            }
                            LinkFaultKind::Bandwidth => {
                                let rate = spec.rate_kib_per_second.unwrap_or(1) * 1024;
                                target.rate = Some(target.rate.map_or(rate, |r| r.min(rate)));
                            }
                            _ => {
                                target.blackhole =
                                    Some(Duration::from_millis(spec.timeout_ms.unwrap_or_default()))
                            }
                        }
                    }
                }
            }
        }
        effects
    }

    pub fn flow(&self, flow: Flow) -> FlowEffects {
        match flow {
            Flow::Upstream => self.upstream,
            Flow::Downstream => self.downstream,
        }
    }

    fn flow_mut(&mut self, flow: Flow) -> &mut FlowEffects {
        match flow {
            Flow::Upstream => &mut self.upstream,
            Flow::Downstream => &mut self.downstream,
        }
    }
}

impl FlowEffects {
    /// How long to hold a chunk of `bytes` before passing it on.
    pub fn delay_for(&self, bytes: usize) -> Duration {
        let mut delay = self.latency;
        if !self.jitter.is_zero() {
            let jitter = self.jitter.as_secs_f64() * (rand::random::<f64>() * 2.0 - 1.0);
            delay = Duration::from_secs_f64((delay.as_secs_f64() + jitter).max(0.0));
        }
        if let Some(rate) = self.rate {
            delay += Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> LinkFaultSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_fault_is_active_in_its_window_and_expires_after_it() {
        let fault = LinkFault::new(
            "f".into(),
            spec("{kind: reset, start_after_seconds: 1, duration_seconds: 2}"),
            Instant::now(),
        );
        let at = |s: f64| fault.added + Duration::from_secs_f64(s);
        assert!(!fault.active_at(at(0.5)));
        assert!(fault.active_at(at(1.5)));
        assert!(!fault.active_at(at(3.5)));
        assert!(!fault.expired_at(at(2.9)));
        assert!(fault.expired_at(at(3.0)));
    }

    #[test]
    fn a_flapping_fault_comes_back_every_period_and_never_expires() {
        let fault = LinkFault::new(
            "f".into(),
            spec("{kind: down, duration_seconds: 1, every_seconds: 10}"),
            Instant::now(),
        );
        let at = |s: f64| fault.added + Duration::from_secs_f64(s);
        assert!(fault.active_at(at(0.5)));
        assert!(!fault.active_at(at(5.0)));
        assert!(fault.active_at(at(10.5)));
        assert!(!fault.expired_at(at(1000.0)));
    }

    #[test]
    fn effects_add_latencies_and_keep_the_lowest_bandwidth_per_direction() {
        let now = Instant::now();
        let faults = [
            LinkFault::new("a".into(), spec("{kind: latency, latency_ms: 100}"), now),
            LinkFault::new(
                "b".into(),
                spec("{kind: latency, latency_ms: 50, direction: both}"),
                now,
            ),
            LinkFault::new(
                "c".into(),
                spec("{kind: bandwidth, rate_kib_per_second: 8, direction: upstream}"),
                now,
            ),
            LinkFault::new(
                "d".into(),
                spec("{kind: bandwidth, rate_kib_per_second: 4, direction: upstream}"),
                now,
            ),
        ];
        let effects = Effects::of(&faults, now);
        assert_eq!(
            effects.flow(Flow::Downstream).latency,
            Duration::from_millis(150)
        );
        assert_eq!(
            effects.flow(Flow::Upstream).latency,
            Duration::from_millis(50)
        );
        assert_eq!(effects.flow(Flow::Upstream).rate, Some(4096));
        assert_eq!(effects.flow(Flow::Downstream).rate, None);
        assert!(!effects.reset && !effects.refuse);
        // 4 KiB at 4 KiB/s is one more second on top of the latency.
        assert_eq!(
            effects.flow(Flow::Upstream).delay_for(4096),
            Duration::from_millis(1050)
        );
    }

    #[test]
    fn down_is_refuse_and_reset() {
        let now = Instant::now();
        let effects = Effects::of(
            &[LinkFault::new("d".into(), spec("{kind: down}"), now)],
            now,
        );
        assert!(effects.refuse && effects.reset);
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        let problems = spec("{kind: latency, jitter_ms: 5}").problems();
        assert!(
            problems.iter().any(|p| p.contains("needs `latency_ms`")),
            "{problems:?}"
        );
        let problems = spec("{kind: reset, latency_ms: 5}").problems();
        assert!(
            problems.iter().any(|p| p.contains("does not apply")),
            "{problems:?}"
        );
        let problems = spec("{kind: refuse, every_seconds: 5, duration_seconds: 6}").problems();
        assert!(
            problems.iter().any(|p| p.contains("never lifts")),
            "{problems:?}"
        );
        let problems = spec("{kind: latency, latency_ms: 10, jitter_ms: 20}").problems();
        assert!(
            problems.iter().any(|p| p.contains("must not exceed")),
            "{problems:?}"
        );
        assert!(spec("{kind: latency, latency_ms: 10, jitter_ms: 5}")
            .problems()
            .is_empty());
        let unknown = serde_yaml::from_str::<LinkFaultSpec>("{kind: slow}").unwrap_err();
        assert!(unknown.to_string().contains("latency"), "{unknown}");
    }
}
