//! The 15 alerts of the Production Operations Runbook's table, 5 DR alerts (backups and
//! drills), a security alert (credential stuffing), a resource-exhaustion one (a client
//! hammering its per-client limit) and 2 webhook alerts, over metrics aragora exports,
//! each with the series that must fire it and those that must not (its promtool tests);
//! [`alerts`] adds the infrastructure alerts of [`infrastructure`] (their own rule group).
//!
//! Where the runbook is loose, the choice is written next to the alert: how "Database SLO
//! compliance" and "debate running > 10m" are measured, and that "no agent calls" only counts
//! while debates run (an idle system makes no calls and must not page anyone).

use super::sloth::RUNBOOK_URL;
use super::{infrastructure, merge, Rule, RuleFile, RuleGroup};
use crate::duration::PromDuration;
use crate::model::Labels;
use crate::settings::{engine_selector, gateway_selector, SloSettings};

/// One operational alert and its promtool scenarios.
#[derive(Debug, Clone)]
pub struct OperationalAlert {
    pub name: &'static str,
    /// The rule group it is rendered into ([`GROUP`], or [`infrastructure::GROUP`]).
    pub group: &'static str,
    pub severity: &'static str,
    pub expr: String,
    pub for_: PromDuration,
    pub summary: String,
    pub description: String,
    /// Must fire: the series, when to look, and the labels of each alert then firing.
    pub fires: Scenario,
    /// Must not fire: zero traffic, a short blip, or just under the threshold.
    pub quiet: Vec<Scenario>,
}

/// Input series (one sample a minute, promtool's expanding notation) and what to expect.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub series: Vec<(String, String)>,
    pub eval_at: Vec<PromDuration>,
    /// Labels of each alert expected firing (besides `alertname` and `severity`).
    pub firing: Vec<Labels>,
}

pub(crate) fn scenario(name: &'static str, series: &[(&str, String)], eval_at: &[u64]) -> Scenario {
    Scenario {
        name,
        series: series
            .iter()
            .map(|(series, values)| (series.to_string(), values.clone()))
            .collect(),
        eval_at: eval_at.iter().map(|m| PromDuration::minutes(*m)).collect(),
        firing: Vec::new(),
    }
}

impl Scenario {
    pub(crate) fn firing(mut self, labels: &[&[(&str, &str)]]) -> Self {
        self.firing = labels
            .iter()
            .map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect();
        self
    }
}

/// A counter rising by `per_minute` for `minutes` minutes.
pub fn steady(per_minute: f64, minutes: u64) -> String {
    format!("0+{per_minute}x{minutes}")
}

/// A counter rising by `per_minute`, that jumps by `jump` more during minute `at` only.
pub fn with_jump(per_minute: f64, jump: f64, at: u64, minutes: u64) -> String {
    let before = per_minute * (at - 1) as f64;
    format!(
        "0+{per_minute}x{} {}+{per_minute}x{}",
        at - 1,
        before + per_minute + jump,
        minutes - at
    )
}

/// A gauge at `value` for `minutes` minutes.
pub fn flat(value: f64, minutes: u64) -> String {
    format!("{value}x{minutes}")
}

/// A gauge at `base`, at `spike` during minute `at` only.
pub fn spike(base: f64, spike: f64, at: u64, minutes: u64) -> String {
    format!("{base}x{} {spike} {base}x{}", at - 1, minutes - at)
}

/// The ratio under which 99.9 and the like print as written (`0.001`, not `0.0009999…`).
fn ratio_of_percent(percent: f64) -> f64 {
    ((100.0 - percent) / 100.0 * 1e12).round() / 1e12
}

/// The rule group of the runbook's alerts table, the DR and the security alerts.
pub const GROUP: &str = "aragora-operational";

/// Every operational alert, thresholds from the SLO settings where the runbook ties them,
/// then the infrastructure alerts (their own group).
pub fn alerts(settings: &SloSettings) -> Vec<OperationalAlert> {
    let mut alerts = runbook_alerts(settings);
    alerts.extend(infrastructure::alerts());
    alerts
}

fn runbook_alerts(settings: &SloSettings) -> Vec<OperationalAlert> {
    let (gw, engine) = (gateway_selector(), engine_selector());
    let requests = |extra: &str| format!("aragora_http_requests_total{{{gw}{extra}}}");
    let error_ratio = |window: &str| {
        format!(
            "sum(rate({}[{window}]))\n/\nsum(rate({}[{window}]))",
            requests(",status=~\"5..\""),
            requests("")
        )
    };
    let availability_budget = ratio_of_percent(settings.availability_target);
    let latency = settings.latency_p99_target_ms as f64 / 1000.0;
    let latency_warning = latency * 0.8;
    let p99 = format!(
        "histogram_quantile(0.99, sum by (le) (rate(aragora_request_latency_seconds_bucket{{{gw}}}[5m])))"
    );
    let debate_budget = ratio_of_percent(settings.debate_success_target);

    // The test series carry the seeds' scrape jobs (one job, `aragora` or `aragora-backend`):
    // the rules select the component label, so any job name matches.
    let ok = "aragora_http_requests_total{component=\"gateway\",job=\"aragora\",method=\"GET\",route=\"/api/debates\",status=\"200\"}";
    let err = "aragora_http_requests_total{component=\"gateway\",job=\"aragora\",method=\"GET\",route=\"/api/debates\",status=\"500\"}";
    let bucket = |le: &str| {
        format!("aragora_request_latency_seconds_bucket{{component=\"gateway\",job=\"aragora\",method=\"GET\",route=\"/api/debates\",le=\"{le}\"}}")
    };
    // A latency histogram where `fast` of each 1000 requests a minute answer within 100 ms
    // and the rest within twice the threshold (a lowest bucket keeps the quiet p99 low).
    let latency_series = |fast: String, all: String| {
        vec![
            (bucket("0.1"), fast.clone()),
            (bucket(&format!("{latency}")), fast),
            (bucket(&format!("{}", latency * 2.0)), all.clone()),
            (bucket("+Inf"), all),
        ]
    };
    let debates = |outcome: &str| {
        format!("aragora_debates_total{{component=\"engine\",job=\"aragora-backend\",outcome=\"{outcome}\"}}")
    };
    let breaker = |agent: &str| {
        format!("aragora_circuit_breaker_state{{component=\"engine\",job=\"aragora-backend\",instance=\"engine-1:8080\",agent=\"{agent}\"}}")
    };
    let webhook_breaker = |endpoint: &str| {
        format!("aragora_webhook_circuit_breaker_state{{component=\"engine\",job=\"aragora-backend\",instance=\"engine-1:8080\",endpoint=\"{endpoint}\"}}")
    };
    let engine_gauge = |name: &str| {
        format!("{name}{{component=\"engine\",job=\"aragora-backend\",instance=\"engine-1:8080\"}}")
    };
    let agent_bucket = |le: &str| {
        format!("aragora_agent_latency_seconds_bucket{{component=\"engine\",job=\"aragora-backend\",agent=\"claude\",provider=\"anthropic\",le=\"{le}\"}}")
    };
    let calls = |status: &str| {
        format!("aragora_agent_calls_total{{component=\"engine\",job=\"aragora-backend\",agent=\"claude\",provider=\"anthropic\",status=\"{status}\"}}")
    };
    let instance: &[(&str, &str)] = &[
        ("component", "engine"),
        ("instance", "engine-1:8080"),
        ("job", "aragora-backend"),
    ];
    let auth_failures = |reason: &str| {
        format!("aragora_auth_failures_total{{component=\"engine\",job=\"aragora-backend\",instance=\"engine-1:8080\",reason=\"{reason}\"}}")
    };
    let client_limit = |limit: &str| {
        format!("aragora_client_limit_refusals_total{{component=\"engine\",job=\"aragora-backend\",instance=\"engine-1:8080\",limit=\"{limit}\"}}")
    };

    vec![
        OperationalAlert {
            name: "AragoraAvailabilitySLOBreach",
            group: GROUP,
            severity: "critical",
            expr: format!("(\n{}\n) > {availability_budget}", error_ratio("5m")),
            for_: PromDuration::minutes(5),
            summary: "More than the availability budget of requests fail with a 5xx".into(),
            description: format!("Over the last 5 minutes more than {}% of requests through the gateway answered 5xx (SLO {}%).", availability_budget * 100.0, settings.availability_target),
            fires: scenario("one request in a hundred fails", &[(ok, steady(1000.0, 30)), (err, steady(10.0, 30))], &[15]).firing(&[&[]]),
            quiet: vec![
                scenario("zero traffic", &[(ok, flat(0.0, 30)), (err, flat(0.0, 30))], &[15]),
                scenario("one bad minute", &[(ok, steady(1000.0, 30)), (err, with_jump(0.0, 10.0, 11, 30))], &[13, 20]),
            ],
        },
        OperationalAlert {
            name: "AragoraAvailabilitySLOWarning",
            group: GROUP,
            severity: "warning",
            expr: format!("(\n{}\n) > {}", error_ratio("15m"), availability_budget / 2.0),
            for_: PromDuration::minutes(10),
            summary: "Requests failing with a 5xx approach the availability budget".into(),
            description: format!("Over the last 15 minutes more than {}% of requests through the gateway answered 5xx, half the budget of the {}% SLO.", availability_budget * 50.0, settings.availability_target),
            fires: scenario("one request in a thousand fails", &[(ok, steady(1000.0, 40)), (err, steady(1.0, 40))], &[25]).firing(&[&[]]),
            quiet: vec![
                scenario("zero traffic", &[(ok, flat(0.0, 40)), (err, flat(0.0, 40))], &[25]),
                scenario("one bad minute", &[(ok, steady(1000.0, 40)), (err, with_jump(0.0, 5.0, 11, 40))], &[15, 30]),
            ],
        },
        OperationalAlert {
            name: "AragoraLatencySLOBreach",
            group: GROUP,
            severity: "critical",
            expr: format!("{p99} > {latency}"),
            for_: PromDuration::minutes(5),
            summary: "p99 latency through the gateway is over its target".into(),
            description: format!("The 99th percentile of request latency at the gateway has been over {} ms for 5 minutes.", settings.latency_p99_target_ms),
            fires: Scenario { name: "one request in ten is slow", series: (latency_series(steady(900.0, 30), steady(1000.0, 30))), eval_at: vec![PromDuration::minutes(15)], firing: vec![Labels::new()] },
            quiet: vec![
                Scenario { name: "zero traffic", series: (latency_series(flat(0.0, 30), flat(0.0, 30))), eval_at: vec![PromDuration::minutes(15)], firing: vec![] },
                Scenario { name: "one slow minute", series: (latency_series(with_jump(1000.0, -900.0, 11, 30), steady(1000.0, 30))), eval_at: vec![PromDuration::minutes(13), PromDuration::minutes(20)], firing: vec![] },
            ],
        },
        OperationalAlert {
            name: "AragoraLatencySLOWarning",
            group: GROUP,
            severity: "warning",
            expr: format!("{p99} > {latency_warning}"),
            for_: PromDuration::minutes(10),
            summary: "p99 latency through the gateway approaches its target".into(),
            description: format!("The 99th percentile of request latency at the gateway has been over {} ms (80% of the target) for 10 minutes.", (latency_warning * 1000.0).round()),
            fires: Scenario { name: "one request in ten is slow", series: (latency_series(steady(900.0, 30), steady(1000.0, 30))), eval_at: vec![PromDuration::minutes(20)], firing: vec![Labels::new()] },
            quiet: vec![
                Scenario { name: "zero traffic", series: (latency_series(flat(0.0, 30), flat(0.0, 30))), eval_at: vec![PromDuration::minutes(20)], firing: vec![] },
                Scenario { name: "one slow minute", series: (latency_series(with_jump(1000.0, -900.0, 11, 30), steady(1000.0, 30))), eval_at: vec![PromDuration::minutes(15), PromDuration::minutes(25)], firing: vec![] },
            ],
        },
        OperationalAlert {
            name: "AragoraDebateSuccessSLOBreach",
            group: GROUP,
            severity: "critical",
            expr: format!(
                "(\nsum(rate(aragora_debates_total{{{engine},outcome=~\"failed|timed_out\"}}[1h]))\n/\nsum(rate(aragora_debates_total{{{engine},outcome!=\"cancelled\"}}[1h]))\n) > {debate_budget}"
            ),
            for_: PromDuration::minutes(30),
            summary: "Too many debates fail or time out".into(),
            description: format!("Over the last hour more than {}% of debates (cancelled ones aside) ended failed or timed_out (SLO {}%).", debate_budget * 100.0, settings.debate_success_target),
            fires: scenario("one debate in ten fails", &[(&debates("consensus"), steady(9.0, 90)), (&debates("failed"), steady(1.0, 90))], &[45]).firing(&[&[]]),
            quiet: vec![
                scenario("zero traffic (no debates)", &[(&debates("consensus"), flat(0.0, 90)), (&debates("failed"), flat(0.0, 90))], &[45]),
                scenario("one bad minute", &[(&debates("consensus"), steady(9.0, 90)), (&debates("failed"), with_jump(0.0, 10.0, 11, 90))], &[15, 45]),
                scenario("only cancellations", &[(&debates("consensus"), steady(9.0, 90)), (&debates("cancelled"), steady(9.0, 90))], &[45]),
            ],
        },
        OperationalAlert {
            // "Database SLO compliance = 0": the engine probes its database at each scrape.
            name: "AragoraDatabaseDown",
            group: GROUP,
            severity: "critical",
            expr: format!("aragora_database_up{{{engine}}} == 0"),
            for_: PromDuration::minutes(1),
            summary: "The engine cannot reach its database".into(),
            description: "Engine {{ $labels.instance }} has not reached its database for a minute; debates cannot start or record.".into(),
            fires: scenario("database down", &[(&engine_gauge("aragora_database_up"), flat(0.0, 10))], &[5]).firing(&[instance]),
            quiet: vec![
                scenario("database up", &[(&engine_gauge("aragora_database_up"), flat(1.0, 10))], &[5]),
                scenario("one failed probe", &[(&engine_gauge("aragora_database_up"), spike(1.0, 0.0, 5, 10))], &[5, 6, 8]),
            ],
        },
        OperationalAlert {
            // Open or half-open: a breaker cycling open → half-open → open never stays at 1.
            name: "AragoraAgentCircuitOpen",
            group: GROUP,
            severity: "warning",
            expr: format!("max by (agent) (aragora_circuit_breaker_state{{{engine}}}) > 0"),
            for_: PromDuration::minutes(5),
            summary: "Circuit breaker of agent {{ $labels.agent }} is open".into(),
            description: "The circuit breaker of agent {{ $labels.agent }} has not been closed for 5 minutes; its provider keeps failing.".into(),
            fires: scenario("breaker open", &[(&breaker("claude"), flat(1.0, 20)), (&breaker("gpt"), flat(0.0, 20))], &[10]).firing(&[&[("agent", "claude")]]),
            quiet: vec![
                scenario("breakers closed", &[(&breaker("claude"), flat(0.0, 20))], &[10]),
                scenario("open for a minute", &[(&breaker("claude"), spike(0.0, 1.0, 5, 20))], &[5, 10]),
            ],
        },
        OperationalAlert {
            name: "AragoraManyCircuitsOpen",
            group: GROUP,
            severity: "critical",
            expr: format!("count(max by (agent) (aragora_circuit_breaker_state{{{engine}}}) > 0) >= 3"),
            for_: PromDuration::minutes(2),
            summary: "Three or more agent circuit breakers are open".into(),
            description: "Three or more agents have open or half-open circuit breakers; debates are likely failing. Treat as P1.".into(),
            fires: scenario("three open", &[(&breaker("a"), flat(1.0, 10)), (&breaker("b"), flat(1.0, 10)), (&breaker("c"), flat(2.0, 10))], &[5]).firing(&[&[]]),
            quiet: vec![
                scenario("two open", &[(&breaker("a"), flat(1.0, 10)), (&breaker("b"), flat(1.0, 10)), (&breaker("c"), flat(0.0, 10))], &[5]),
                scenario("three open for a minute", &[(&breaker("a"), flat(1.0, 10)), (&breaker("b"), flat(1.0, 10)), (&breaker("c"), spike(0.0, 1.0, 5, 10))], &[5, 8]),
            ],
        },
        OperationalAlert {
            name: "AragoraWebSocketConnectionsDrop",
            group: GROUP,
            severity: "warning",
            expr: format!(
                "sum(max_over_time(aragora_websocket_connections{{{engine}}}[5m]))\n- sum(aragora_websocket_connections{{{engine}}})\n> 10"
            ),
            for_: PromDuration::minutes(2),
            summary: "WebSocket connections dropped by more than 10 in 5 minutes".into(),
            description: "Open WebSocket connections fell by more than 10 within 5 minutes: a proxy timeout, a restart or a network cut.".into(),
            fires: scenario("50 fall to 20", &[(&engine_gauge("aragora_websocket_connections"), format!("{} {}", flat(50.0, 10), flat(20.0, 19)))], &[13]).firing(&[&[]]),
            quiet: vec![
                scenario("no connections", &[(&engine_gauge("aragora_websocket_connections"), flat(0.0, 30))], &[13]),
                scenario("a drop of 5", &[(&engine_gauge("aragora_websocket_connections"), format!("{} {}", flat(50.0, 10), flat(45.0, 19)))], &[13]),
                scenario("reconnected within a minute", &[(&engine_gauge("aragora_websocket_connections"), spike(50.0, 20.0, 11, 30))], &[11, 13]),
            ],
        },
        OperationalAlert {
            name: "AragoraHighMemoryUsage",
            group: GROUP,
            severity: "warning",
            expr: format!("process_resident_memory_bytes{{{engine}}} > 2147483648"),
            for_: PromDuration::minutes(10),
            summary: "Engine {{ $labels.instance }} uses more than 2 GiB".into(),
            description: "Resident memory of {{ $labels.instance }} has been over 2 GiB for 10 minutes; reduce ARAGORA_MAX_CONCURRENT_DEBATES or look for a leak.".into(),
            fires: scenario("3 GB", &[(&engine_gauge("process_resident_memory_bytes"), flat(3e9, 30))], &[15]).firing(&[instance]),
            quiet: vec![
                scenario("500 MB", &[(&engine_gauge("process_resident_memory_bytes"), flat(5e8, 30))], &[15]),
                scenario("3 GB for a minute", &[(&engine_gauge("process_resident_memory_bytes"), spike(5e8, 3e9, 5, 30))], &[5, 15]),
            ],
        },
        OperationalAlert {
            name: "AragoraHighRateLimitRate",
            group: GROUP,
            severity: "warning",
            expr: format!("sum(rate(aragora_rate_limited_total{{{gw}}}[5m])) > 10"),
            for_: PromDuration::minutes(5),
            summary: "The gateway refuses more than 10 requests a second with 429".into(),
            description: "The rate limit has refused over 10 requests/s for 5 minutes: raise ARAGORA_RATE_LIMIT for legitimate traffic, or look at the top clients in /api/system/rate-limits.".into(),
            fires: scenario("20 a second", &[("aragora_rate_limited_total{component=\"gateway\",job=\"aragora\",route=\"/api/debates\"}", steady(1200.0, 30))], &[15]).firing(&[&[]]),
            quiet: vec![
                scenario("no refusals", &[("aragora_rate_limited_total{component=\"gateway\",job=\"aragora\",route=\"/api/debates\"}", flat(0.0, 30))], &[15]),
                scenario("one busy minute", &[("aragora_rate_limited_total{component=\"gateway\",job=\"aragora\",route=\"/api/debates\"}", with_jump(0.0, 3000.0, 11, 30))], &[13, 20]),
            ],
        },
        OperationalAlert {
            name: "AragoraAgentLatencyHigh",
            group: GROUP,
            severity: "warning",
            expr: format!(
                "histogram_quantile(0.95, sum by (agent, le) (rate(aragora_agent_latency_seconds_bucket{{{engine}}}[5m]))) > 30"
            ),
            for_: PromDuration::minutes(10),
            summary: "Agent {{ $labels.agent }} answers slowly (p95 over 30 s)".into(),
            description: "The 95th percentile of calls to agent {{ $labels.agent }} has been over 30 s for 10 minutes; check the provider's status.".into(),
            fires: scenario("half the calls over 30 s", &[(&agent_bucket("30"), steady(5.0, 30)), (&agent_bucket("60"), steady(10.0, 30)), (&agent_bucket("+Inf"), steady(10.0, 30))], &[20]).firing(&[&[("agent", "claude")]]),
            quiet: vec![
                scenario("no calls", &[(&agent_bucket("30"), flat(0.0, 30)), (&agent_bucket("60"), flat(0.0, 30)), (&agent_bucket("+Inf"), flat(0.0, 30))], &[20]),
                scenario("one slow minute", &[(&agent_bucket("30"), with_jump(10.0, -10.0, 11, 30)), (&agent_bucket("60"), steady(10.0, 30)), (&agent_bucket("+Inf"), steady(10.0, 30))], &[13, 20]),
            ],
        },
        OperationalAlert {
            name: "AragoraAgentErrorRateHigh",
            group: GROUP,
            severity: "warning",
            expr: format!(
                "(\nsum by (agent) (rate(aragora_agent_calls_total{{{engine},status!=\"success\"}}[5m]))\n/\nsum by (agent) (rate(aragora_agent_calls_total{{{engine}}}[5m]))\n) > 0.1"
            ),
            for_: PromDuration::minutes(5),
            summary: "More than 10% of calls to agent {{ $labels.agent }} fail".into(),
            description: "Over 10% of calls to agent {{ $labels.agent }} have failed or timed out for 5 minutes.".into(),
            fires: scenario("one call in five fails", &[(&calls("success"), steady(8.0, 30)), (&calls("error"), steady(2.0, 30))], &[15]).firing(&[&[("agent", "claude")]]),
            quiet: vec![
                scenario("no calls", &[(&calls("success"), flat(0.0, 30)), (&calls("error"), flat(0.0, 30))], &[15]),
                scenario("one bad minute", &[(&calls("success"), steady(8.0, 30)), (&calls("error"), with_jump(0.0, 8.0, 11, 30))], &[13, 20]),
            ],
        },
        OperationalAlert {
            // Only while debates run: an idle system makes no calls and must not alert.
            name: "AragoraNoAgentCalls",
            group: GROUP,
            severity: "warning",
            expr: format!(
                "(sum(increase(aragora_agent_calls_total{{{engine}}}[15m])) or on() vector(0)) == 0\nand on()\nsum(max_over_time(aragora_active_debates{{{engine}}}[15m])) > 0"
            ),
            for_: PromDuration::minutes(15),
            summary: "Debates run but no agent has been called for 15 minutes".into(),
            description: "Debates are running and no agent call has been made in 15 minutes: API keys invalid or exhausted, or every provider down.".into(),
            fires: scenario("debates run, no agent ever called (no call series at all)", &[(&engine_gauge("aragora_active_debates"), flat(2.0, 40))], &[35]).firing(&[&[]]),
            quiet: vec![
                scenario("idle: no debates, no calls", &[(&engine_gauge("aragora_active_debates"), flat(0.0, 40))], &[35]),
                scenario("calls that stopped still count for 15 minutes", &[(&engine_gauge("aragora_active_debates"), flat(2.0, 40)), (&calls("success"), format!("{} {}", steady(10.0, 20), flat(200.0, 20)))], &[30]),
                scenario("calls pause for a minute", &[(&engine_gauge("aragora_active_debates"), flat(2.0, 40)), (&calls("success"), with_jump(10.0, -10.0, 11, 40))], &[20, 35]),
            ],
        },
        OperationalAlert {
            name: "AragoraDebateRunningTooLong",
            group: GROUP,
            severity: "warning",
            expr: format!("aragora_oldest_running_debate_seconds{{{engine}}} > 600"),
            for_: PromDuration::minutes(1),
            summary: "A debate on {{ $labels.instance }} has run for over 10 minutes".into(),
            description: "The oldest running debate on {{ $labels.instance }} has run for over 10 minutes; an agent may hang or its breaker be open. The watchdog ends it at ARAGORA_DEBATE_TIMEOUT.".into(),
            fires: scenario("a debate runs on", &[(&engine_gauge("aragora_oldest_running_debate_seconds"), steady(60.0, 20))], &[15]).firing(&[instance]),
            quiet: vec![
                scenario("no debates", &[(&engine_gauge("aragora_oldest_running_debate_seconds"), flat(0.0, 20))], &[15]),
                scenario("an 11-minute debate ends", &[(&engine_gauge("aragora_oldest_running_debate_seconds"), format!("{} 0x9", steady(60.0, 11)))], &[11, 15]),
            ],
        },
        // The DR alerts (issue 8): backups keep the 5-minute RPO, drills run weekly and meet
        // the seeds' RTO (1 h) and RPO (5 min). A gauge at 0 means "never": for backups that
        // is stale (nothing to restore), for a drill's RTO/RPO it is "not measured yet".
        OperationalAlert {
            name: "AragoraBackupStale",
            group: GROUP,
            severity: "warning",
            expr: format!("time() - aragora_backup_last_success_timestamp_seconds{{{engine}}} > 900"),
            for_: PromDuration::minutes(5),
            summary: "No successful backup in 15 minutes".into(),
            description: "The newest successful backup is over 15 minutes old (or there is none), so a restore would lose more than the 5-minute RPO. Check `aragora backup list` and the backup schedule (ARAGORA_BACKUP_SCHEDULE).".into(),
            fires: scenario("backups stopped", &[(&engine_gauge("aragora_backup_last_success_timestamp_seconds"), flat(0.0, 40))], &[30]).firing(&[instance]),
            quiet: vec![
                scenario("a backup every minute", &[(&engine_gauge("aragora_backup_last_success_timestamp_seconds"), steady(60.0, 40))], &[30]),
                scenario("the last backup 10 minutes ago", &[(&engine_gauge("aragora_backup_last_success_timestamp_seconds"), "-600+60x40".to_string())], &[30]),
            ],
        },
        OperationalAlert {
            name: "AragoraDrillStale",
            group: GROUP,
            severity: "warning",
            expr: format!("time() - aragora_dr_drill_last_success_timestamp_seconds{{{engine}}} > 691200"),
            for_: PromDuration::hours(1),
            summary: "No successful DR drill in 8 days".into(),
            description: "The weekly DR drill has not passed in 8 days: it failed or did not run. `aragora drill history` says which and why; `aragora drill run` runs one now.".into(),
            fires: scenario("the last drill passed 9 days ago", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), flat(-777_600.0, 90))], &[75]).firing(&[instance]),
            quiet: vec![
                scenario("a drill passed 6 days ago", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), flat(-518_400.0, 90))], &[75]),
                scenario("a drill passes during the hour", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), format!("{} 1800x60", flat(-777_600.0, 30)))], &[75]),
            ],
        },
        OperationalAlert {
            name: "AragoraDrillFailed",
            group: GROUP,
            severity: "warning",
            expr: format!("aragora_dr_drill_last_failure_timestamp_seconds{{{engine}}} > aragora_dr_drill_last_success_timestamp_seconds{{{engine}}}"),
            // A failed drill is a fact, not a noisy signal: no need to wait for it to persist.
            for_: PromDuration::minutes(0),
            summary: "The latest DR drill failed".into(),
            description: "The newest DR drill failed: the latest backup could not be restored, verified or served. `aragora drill history` says which check failed and why; fix it and run `aragora drill run`.".into(),
            fires: scenario("the drill after a passing one failed", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), flat(1000.0, 20)), (&engine_gauge("aragora_dr_drill_last_failure_timestamp_seconds"), flat(2000.0, 20))], &[10]).firing(&[instance]),
            quiet: vec![
                scenario("a failed drill, then a passing one", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), flat(2000.0, 20)), (&engine_gauge("aragora_dr_drill_last_failure_timestamp_seconds"), flat(1000.0, 20))], &[10]),
                scenario("no drill yet", &[(&engine_gauge("aragora_dr_drill_last_success_timestamp_seconds"), flat(0.0, 20)), (&engine_gauge("aragora_dr_drill_last_failure_timestamp_seconds"), flat(0.0, 20))], &[10]),
            ],
        },
        OperationalAlert {
            name: "AragoraDrillRtoMissed",
            group: GROUP,
            severity: "warning",
            expr: format!("aragora_dr_drill_rto_seconds{{{engine}}} > 3600"),
            for_: PromDuration::minutes(1),
            summary: "The last DR drill took over an hour to be ready (RTO target 1 h)".into(),
            description: "Restoring the latest backup, verifying it and starting an engine on it took longer than the 1-hour RTO. See `aragora drill history` for the timings and BENCHMARKS.md for what a restore of this size should take.".into(),
            fires: scenario("a 67-minute restore", &[(&engine_gauge("aragora_dr_drill_rto_seconds"), flat(4000.0, 20))], &[15]).firing(&[instance]),
            quiet: vec![
                scenario("a 2-minute restore", &[(&engine_gauge("aragora_dr_drill_rto_seconds"), flat(120.0, 20))], &[15]),
                scenario("no drill yet", &[(&engine_gauge("aragora_dr_drill_rto_seconds"), flat(0.0, 20))], &[15]),
            ],
        },
        OperationalAlert {
            name: "AragoraDrillRpoMissed",
            group: GROUP,
            severity: "warning",
            expr: format!("aragora_dr_drill_rpo_seconds{{{engine}}} > 300"),
            for_: PromDuration::minutes(1),
            summary: "The last DR drill restored data over 5 minutes old (RPO target 5 min)".into(),
            description: "The latest backup was missing more than 5 minutes of the primary's writes when the drill ran. Back up more often (ARAGORA_BACKUP_SCHEDULE) or check why backups fail.".into(),
            fires: scenario("15 minutes of writes lost", &[(&engine_gauge("aragora_dr_drill_rpo_seconds"), flat(900.0, 20))], &[15]).firing(&[instance]),
            quiet: vec![
                scenario("one minute behind", &[(&engine_gauge("aragora_dr_drill_rpo_seconds"), flat(60.0, 20))], &[15]),
                scenario("no drill yet", &[(&engine_gauge("aragora_dr_drill_rpo_seconds"), flat(0.0, 20))], &[15]),
            ],
        },
        // Security (issue 14). Refused credentials summed over replicas (an attack spreads over
        // them) and reasons, 403s aside: a valid token lacking a role is a client bug, not a
        // guess. Over 1/s for 5 minutes is far beyond people mistyping a key, far below a
        // stuffing run.
        OperationalAlert {
            name: "AragoraAuthFailureBurst",
            group: GROUP,
            severity: "warning",
            expr: format!("sum(rate(aragora_auth_failures_total{{{engine},reason!=\"forbidden\"}}[5m])) > 1"),
            for_: PromDuration::minutes(5),
            summary: "More than one request a second refused for bad credentials (credential stuffing?)".into(),
            description: "For 5 minutes the engines have refused over one request a second for missing, malformed, expired, wrongly signed, revoked or unknown credentials or a foreign origin (aragora_auth_failures_total by reason says which). Find the client addresses in the gateway's access log (status 401), then block them or limit them (ARAGORA_RATE_LIMIT, ARAGORA_RATE_LIMIT_ROUTES); if it is a client of yours with a stale token, give it a new one.".into(),
            fires: scenario("three bad tokens a second", &[(&auth_failures("bad_signature"), steady(180.0, 30)), (&auth_failures("forbidden"), flat(0.0, 30))], &[15]).firing(&[&[]]),
            quiet: vec![
                scenario("zero traffic", &[(&auth_failures("bad_signature"), flat(0.0, 30)), (&auth_failures("missing"), flat(0.0, 30))], &[15]),
                scenario("a handful of typos", &[(&auth_failures("bad_signature"), with_jump(0.0, 5.0, 11, 30)), (&auth_failures("expired"), steady(1.0, 30))], &[13, 20]),
                scenario("just under one a second", &[(&auth_failures("bad_signature"), steady(30.0, 30)), (&auth_failures("expired"), steady(24.0, 30))], &[15]),
                scenario("403s are not stuffing", &[(&auth_failures("forbidden"), steady(600.0, 30))], &[15]),
            ],
        },
        // Resource exhaustion (issue 18): a client held to one of its own limits (engine/src/
        // http/limits.rs) over and over. Summed over replicas per limit: the counter has no
        // client label (subjects are unbounded), the engine's log names the subject. A client
        // reaching a limit now and then is the limit working; one refusal every ten seconds
        // for a quarter of an hour is a client in a loop (reconnecting, resubscribing, paging
        // with a huge `limit`) or a limit too low for what a real client needs: a ticket.
        OperationalAlert {
            name: "AragoraClientLimitRefusals",
            group: GROUP,
            severity: "warning",
            expr: format!("sum by (limit) (rate(aragora_client_limit_refusals_total{{{engine}}}[5m])) > 0.1"),
            for_: PromDuration::minutes(15),
            summary: "A client keeps hitting its per-client limit {{ $labels.limit }}".into(),
            description: "For 15 minutes the engines have refused over one request, WebSocket or message every ten seconds because a client reached its own limit {{ $labels.limit }} (aragora_client_limit_refusals_total). The engine logs each refusal (\"refused: the client reached its limit\") with the client's subject and the setting; find the subject there. A client in a loop: fix or stop it (revoke its key: aragora token revoke). A real need: raise the setting the log names (ARAGORA_WS_MAX_CONNECTIONS_PER_CLIENT, ARAGORA_WS_MAX_SUBSCRIPTIONS, ARAGORA_WS_MAX_MESSAGES_PER_SECOND, ARAGORA_DEBATE_QUEUE_PER_CLIENT, ARAGORA_MAX_LIST_LIMIT).".into(),
            fires: scenario("a client reconnecting in a loop", &[(&client_limit("websockets_per_client"), steady(30.0, 40)), (&client_limit("list_limit"), flat(0.0, 40))], &[25]).firing(&[&[("limit", "websockets_per_client")]]),
            quiet: vec![
                scenario("zero traffic", &[(&client_limit("websockets_per_client"), flat(0.0, 40)), (&client_limit("list_limit"), flat(0.0, 40))], &[25]),
                scenario("one burst of refusals", &[(&client_limit("messages_per_websocket"), with_jump(0.0, 500.0, 11, 40))], &[13, 25]),
                scenario("just under one every ten seconds", &[(&client_limit("debates_per_client"), steady(5.0, 40)), (&client_limit("list_limit"), steady(0.5, 40))], &[25]),
            ],
        },
        // Webhooks (issue 19). The queue's depth is the database's count, the same on every
        // replica: `max`, not `sum`. Growing means new dead letters within the last 15 minutes
        // (a constant old depth someone has not retried yet is not news); a breaker open for
        // 10 minutes is a receiver down for at least ten cooldowns (the gauge is the shared state
        // as of each scrape, so it turns half-open when the cooldown ends).
        OperationalAlert {
            name: "AragoraWebhookDeadLetterQueueGrowing",
            group: GROUP,
            severity: "warning",
            expr: format!("max(delta(aragora_webhook_dead_letter_queue_depth{{{engine}}}[15m])) > 0"),
            for_: PromDuration::minutes(5),
            summary: "Webhook deliveries are being dead-lettered".into(),
            description: "The webhook dead-letter queue has grown over the last 15 minutes: receivers refused or never answered deliveries through every retry. GET /api/admin/webhooks lists each subscription's last error; fix the receiver, then POST /api/admin/webhooks/deliveries/{id}/retry for each of GET /api/admin/webhooks/dead-letters.".into(),
            fires: scenario("a dead letter every minute", &[(&engine_gauge("aragora_webhook_dead_letter_queue_depth"), steady(1.0, 30))], &[15]).firing(&[&[]]),
            quiet: vec![
                scenario("an empty queue", &[(&engine_gauge("aragora_webhook_dead_letter_queue_depth"), flat(0.0, 30))], &[15]),
                scenario("old dead letters, none new", &[(&engine_gauge("aragora_webhook_dead_letter_queue_depth"), flat(4.0, 30))], &[20]),
            ],
        },
        OperationalAlert {
            name: "AragoraWebhookCircuitBreakerOpen",
            group: GROUP,
            severity: "warning",
            // Open (1) at some scrape of every 5 minutes: a receiver still down turns half-open
            // (2) for the moment of each trial, which must not restart the 10 minutes; one left
            // half-open after its cooldown, nothing sent since, is no alert.
            expr: format!("max by (endpoint) (max_over_time((aragora_webhook_circuit_breaker_state{{{engine}}} == 1)[5m:])) == 1"),
            for_: PromDuration::minutes(10),
            summary: "Webhook receiver {{ $labels.endpoint }} keeps failing (breaker open)".into(),
            description: "The circuit breaker of webhook receiver {{ $labels.endpoint }} has not closed for 10 minutes: its deliveries wait in the queue and will be dead-lettered when out of retries. Check the receiver; pause its subscription (POST /api/admin/webhooks/{id}/pause) if it is gone for long.".into(),
            fires: scenario("a receiver down, half-open at each trial", &[(&webhook_breaker("https://hooks.example.com"), ["1 1 2"; 10].join(" ")), (&webhook_breaker("https://ok.example.com"), flat(0.0, 30))], &[20]).firing(&[&[("endpoint", "https://hooks.example.com")]]),
            quiet: vec![
                scenario("breakers closed", &[(&webhook_breaker("https://hooks.example.com"), flat(0.0, 30))], &[20]),
                scenario("open for a minute", &[(&webhook_breaker("https://hooks.example.com"), spike(0.0, 1.0, 5, 30))], &[5, 20]),
                scenario("half-open, no delivery since the cooldown", &[(&webhook_breaker("https://hooks.example.com"), flat(2.0, 30))], &[20]),
            ],
        },
    ]
}

impl OperationalAlert {
    fn labels(&self) -> Labels {
        Labels::from([("severity".to_string(), self.severity.to_string())])
    }

    pub fn annotations(&self) -> Labels {
        Labels::from([
            ("summary".to_string(), self.summary.clone()),
            ("description".to_string(), self.description.clone()),
            (
                "runbook_url".to_string(),
                format!("{RUNBOOK_URL}#{}", self.name.to_lowercase()),
            ),
        ])
    }

    /// The labels of a firing alert whose series carried `series_labels`.
    pub fn alert_labels(&self, series_labels: &Labels) -> Labels {
        merge(&[series_labels, &self.labels()])
    }

    fn rule(&self) -> Rule {
        Rule {
            alert: Some(self.name.to_string()),
            expr: self.expr.clone(),
            for_: Some(self.for_.to_string()),
            labels: self.labels(),
            annotations: self.annotations(),
            ..Rule::default()
        }
    }
}

/// The rule file: one group per alert group, in the order the alerts first name them.
pub fn rule_file(alerts: &[OperationalAlert]) -> RuleFile {
    let mut groups: Vec<RuleGroup> = Vec::new();
    for alert in alerts {
        let rule = alert.rule();
        match groups.iter_mut().find(|group| group.name == alert.group) {
            Some(group) => group.rules.push(rule),
            None => groups.push(RuleGroup {
                name: alert.group.into(),
                rules: vec![rule],
            }),
        }
    }
    RuleFile { groups }
}
