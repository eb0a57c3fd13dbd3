//! The runbook's infrastructure alerts ("Key Metrics to Watch", Infrastructure Metrics):
//! PostgreSQL connections over 80% of `max_connections`, Redis memory over 80% of its
//! `maxmemory`, a filesystem over 85% used, over the metrics of postgres_exporter,
//! redis_exporter and node_exporter (the runbook's `postgres`, `redis` and `node` scrape
//! jobs); the gateway's TLS certificate expiring within 14 days (a warning) or 3 days or
//! already (critical), over the expiry the gateway exports itself; and its OCSP staple
//! (`gateway/src/ocsp/`): missing while stapling is on, stale, refreshes failing, or the
//! certificate revoked.
//!
//! They form their own rule group, [`GROUP`], inside `operational-rules.yaml`: a deployment
//! without the exporters (the Simple profile on SQLite) loads them and they stay silent, and
//! the group's name says what they watch. There is deliberately no `absent()` alert for a
//! missing exporter: on that profile it would fire for ever and teach people to ignore alerts;
//! a configured exporter that stops answering is Prometheus' `up == 0`, and alerts/README.md
//! gives the query that tells a silent group from a missing exporter.
//!
//! Choices the runbook leaves open, written beside each alert: Redis without `maxmemory`
//! (unlimited) is not compared with anything, the disk alert ignores memory-backed, image and
//! read-only filesystems, and the `for` durations.

use super::operational::{flat, scenario, spike, OperationalAlert};
use crate::duration::PromDuration;
use crate::settings::gateway_selector;

/// `(series, values)` pairs as [`scenario`] takes them.
fn refs(series: &[(String, String)]) -> Vec<(&str, String)> {
    series
        .iter()
        .map(|(s, v)| (s.as_str(), v.clone()))
        .collect()
}

/// The rule group of these alerts.
pub const GROUP: &str = "aragora-infrastructure";

/// Filesystem types the disk alert ignores: memory-backed (`tmpfs`, `ramfs`, `devtmpfs`:
/// their size is a RAM limit, not a disk), container image layers (`overlay`: the disk under
/// them is reported as itself) and images that are full by construction (`squashfs` snaps,
/// `iso9660`). node_exporter already drops `/proc`, `/sys`, `/dev` and the like.
pub const IGNORED_FSTYPES: &str = "tmpfs|ramfs|devtmpfs|overlay|squashfs|iso9660";

/// The exporters whose metrics the infrastructure alerts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exporter {
    Postgres,
    Redis,
    Node,
}

impl Exporter {
    pub const ALL: [Exporter; 3] = [Exporter::Postgres, Exporter::Redis, Exporter::Node];

    /// The exporter a metric name belongs to, by the namespace each exporter writes in.
    pub fn of(metric: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|exporter| metric.starts_with(exporter.namespace()))
    }

    pub fn namespace(self) -> &'static str {
        match self {
            Exporter::Postgres => "pg_",
            Exporter::Redis => "redis_",
            Exporter::Node => "node_",
        }
    }

    /// The exporter's upstream name.
    pub fn program(self) -> &'static str {
        match self {
            Exporter::Postgres => "postgres_exporter",
            Exporter::Redis => "redis_exporter",
            Exporter::Node => "node_exporter",
        }
    }

    /// The Debian package; it installs the program as /usr/bin/<package>.
    pub fn package(self) -> &'static str {
        match self {
            Exporter::Postgres => "prometheus-postgres-exporter",
            Exporter::Redis => "prometheus-redis-exporter",
            Exporter::Node => "prometheus-node-exporter",
        }
    }

    /// The runbook's scrape job (Monitoring, "Scrape configuration").
    pub fn job(self) -> &'static str {
        match self {
            Exporter::Postgres => "postgres",
            Exporter::Redis => "redis",
            Exporter::Node => "node",
        }
    }

    /// The port it listens on by default (the runbook's targets use them).
    pub fn port(self) -> u16 {
        match self {
            Exporter::Postgres => 9187,
            Exporter::Redis => 9121,
            Exporter::Node => 9100,
        }
    }
}

/// Client connections over `max_connections`, per PostgreSQL server. `pg_stat_activity_count`
/// counts the backends of every database and state (idle ones hold a slot too), not the
/// server's own background workers, which `max_connections` does not limit either. `server`
/// is the label postgres_exporter 0.11 (Debian 12) adds and later versions dropped: grouping
/// by it keeps the servers of a multi-DSN exporter apart and is harmless without it.
pub fn postgres_connections_ratio() -> String {
    "sum by (job, instance, server) (pg_stat_activity_count)\n/ on (job, instance, server)\n(max by (job, instance, server) (pg_settings_max_connections) > 0)".into()
}

/// Used memory over `maxmemory`, per Redis. A Redis without `maxmemory` (0, unlimited) has no
/// series here: `> 0` drops it before the division, so nothing divides by zero and nothing
/// fires. Comparing it with system memory instead was rejected: redis_exporter reports that
/// only with `-include-system-metrics`, it is the host's memory (not a container's limit), and
/// a host running out of memory is the node's alert, not Redis'.
pub fn redis_memory_ratio() -> String {
    "redis_memory_used_bytes\n/\n(redis_memory_max_bytes > 0)".into()
}

/// The share of each filesystem that unprivileged processes can no longer use (1 - avail/size:
/// the root-reserved blocks count as used, since PostgreSQL does not run as root), read-only
/// mounts and [`IGNORED_FSTYPES`] aside.
pub fn disk_used_ratio() -> String {
    let fs = format!("fstype!~\"{IGNORED_FSTYPES}\"");
    format!(
        "(\n1 - node_filesystem_avail_bytes{{{fs}}}\n/ (node_filesystem_size_bytes{{{fs}}} > 0)\n)\nunless on (job, instance, device, mountpoint)\nnode_filesystem_readonly == 1"
    )
}

/// Seconds until each gateway's certificate expires (negative once expired); a gauge still at
/// 0 (no certificate read) is left out rather than taken as expired in 1970.
pub fn tls_seconds_left() -> String {
    format!(
        "(aragora_tls_cert_expiry_timestamp_seconds{{{}}} > 0) - time()",
        gateway_selector()
    )
}

const DAY: f64 = 86_400.0;
const TLS_WARNING_DAYS: u64 = 14;
const TLS_CRITICAL_DAYS: u64 = 3;

/// The infrastructure alerts, with their promtool scenarios.
pub fn alerts() -> Vec<OperationalAlert> {
    // Series as the runbook's scrape jobs (and the exporters' own labels) give them.
    let exporter_down = |job: &str, instance: &str| {
        (
            format!("up{{instance=\"{instance}\",job=\"{job}\"}}"),
            flat(0.0, 30),
        )
    };
    let pg = |name: &str, extra: &str| {
        format!("{name}{{instance=\"postgres-exporter:9187\",job=\"postgres\",server=\"db:5432\"{extra}}}")
    };
    let activity = |state: &str| {
        pg(
            "pg_stat_activity_count",
            &format!(",datname=\"aragora\",state=\"{state}\""),
        )
    };
    let max_connections = pg("pg_settings_max_connections", "");
    let pg_instance: &[(&str, &str)] = &[
        ("instance", "postgres-exporter:9187"),
        ("job", "postgres"),
        ("server", "db:5432"),
    ];

    let redis = |name: &str| format!("{name}{{instance=\"redis-exporter:9121\",job=\"redis\"}}");
    let (used, max) = (
        redis("redis_memory_used_bytes"),
        redis("redis_memory_max_bytes"),
    );
    let redis_instance: &[(&str, &str)] = &[("instance", "redis-exporter:9121"), ("job", "redis")];
    let maxmemory = 512.0 * 1024.0 * 1024.0; // the runbook's default REDIS_MAXMEMORY

    let fs = |name: &str, device: &str, fstype: &str, mountpoint: &str| {
        format!("{name}{{device=\"{device}\",fstype=\"{fstype}\",instance=\"node-exporter:9100\",job=\"node\",mountpoint=\"{mountpoint}\"}}")
    };
    // One filesystem: size 100 GB, `avail` GB left, read-only or not.
    let filesystem = |device: &str, fstype: &str, mountpoint: &str, avail: f64, readonly: bool| {
        vec![
            (
                fs("node_filesystem_size_bytes", device, fstype, mountpoint),
                flat(100e9, 30),
            ),
            (
                fs("node_filesystem_avail_bytes", device, fstype, mountpoint),
                flat(avail * 1e9, 30),
            ),
            (
                fs("node_filesystem_readonly", device, fstype, mountpoint),
                flat(if readonly { 1.0 } else { 0.0 }, 30),
            ),
        ]
    };
    let data_volume =
        |avail: f64| filesystem("/dev/vdb", "ext4", "/var/lib/postgresql", avail, false);
    // Full, and none of them a disk that can fill up.
    let never_disks = [
        filesystem("tmpfs", "tmpfs", "/run", 0.0, false),
        filesystem("overlay", "overlay", "/", 0.0, false),
        filesystem("/dev/loop0", "squashfs", "/snap/core/1", 0.0, true),
        filesystem("/dev/vdc", "ext4", "/mnt/archive", 0.0, true),
    ]
    .concat();
    let node_instance: &[(&str, &str)] = &[
        ("device", "/dev/vdb"),
        ("fstype", "ext4"),
        ("instance", "node-exporter:9100"),
        ("job", "node"),
        ("mountpoint", "/var/lib/postgresql"),
    ];

    let cert = |gateway: &str| {
        format!("aragora_tls_cert_expiry_timestamp_seconds{{component=\"gateway\",instance=\"{gateway}:9091\",job=\"aragora-gateway\"}}")
    };
    // promtool's clock starts at 0: a certificate `days` from the start expires then.
    let expires_in = |days: f64| flat(days * DAY, 30);
    let gateway = |name: &'static str| -> [(&'static str, &'static str); 3] {
        [
            ("component", "gateway"),
            ("instance", name),
            ("job", "aragora-gateway"),
        ]
    };
    let (gateway_1, gateway_2) = (gateway("gateway-1:9091"), gateway("gateway-2:9091"));
    let left = tls_seconds_left();
    let gw = gateway_selector();
    let ocsp = |name: &str, gateway: &str| {
        format!(
            "{name}{{component=\"gateway\",instance=\"{gateway}:9091\",job=\"aragora-gateway\"}}"
        )
    };
    let ocsp_failures = |reason: &str, gateway: &str| {
        format!("aragora_tls_ocsp_refresh_failures_total{{component=\"gateway\",instance=\"{gateway}:9091\",job=\"aragora-gateway\",reason=\"{reason}\"}}")
    };
    // One gateway's staple: stapling on or off, stapled or not, its age and time left.
    let staple = |gateway: &str, enabled: f64, stapled: f64, age: f64, left: f64| {
        vec![
            (
                ocsp("aragora_tls_ocsp_stapling_enabled", gateway),
                flat(enabled, 40),
            ),
            (ocsp("aragora_tls_ocsp_stapled", gateway), flat(stapled, 40)),
            (
                ocsp("aragora_tls_ocsp_staple_age_seconds", gateway),
                flat(age, 40),
            ),
            (
                ocsp("aragora_tls_ocsp_staple_expires_in_seconds", gateway),
                flat(left, 40),
            ),
        ]
    };
    let hour = 3600.0;

    vec![
        OperationalAlert {
            name: "AragoraPostgresConnectionsHigh",
            group: GROUP,
            severity: "warning",
            expr: format!("(\n{}\n) > 0.8", postgres_connections_ratio()),
            // A rolling restart holds old and new pools for a minute or two; 5 minutes is a
            // pool that stays too big, or a leak.
            for_: PromDuration::minutes(5),
            summary: "PostgreSQL {{ $labels.instance }} uses over 80% of max_connections".into(),
            description: "Client connections to the PostgreSQL server behind {{ $labels.instance }} have been over 80% of max_connections for 5 minutes; new connections (a replica starting, a backup) will soon be refused. Lower ARAGORA_DB_POOL_SIZE or the number of replicas, or raise max_connections.".into(),
            fires: scenario("85 of 100 connections", &[(&activity("active"), flat(50.0, 30)), (&activity("idle"), flat(35.0, 30)), (&max_connections, flat(100.0, 30))], &[10]).firing(&[pg_instance]),
            quiet: vec![
                scenario("79 of 100 connections", &[(&activity("active"), flat(40.0, 30)), (&activity("idle"), flat(39.0, 30)), (&max_connections, flat(100.0, 30))], &[10]),
                scenario("90 of 100 for two minutes (a rolling restart)", &[(&activity("active"), spike(40.0, 90.0, 5, 30)), (&activity("idle"), flat(0.0, 30)), (&max_connections, flat(100.0, 30))], &[6, 10]),
                scenario("no exporter data (exporter down)", &refs(&[exporter_down("postgres", "postgres-exporter:9187")]), &[10]),
            ],
        },
        OperationalAlert {
            name: "AragoraRedisMemoryHigh",
            group: GROUP,
            severity: "warning",
            expr: format!("(\n{}\n) > 0.8", redis_memory_ratio()),
            // Near maxmemory Redis evicts (volatile-lru) or refuses writes within minutes under
            // load; 2 minutes rides out a burst of pub/sub output buffers.
            for_: PromDuration::minutes(2),
            summary: "Redis {{ $labels.instance }} uses over 80% of its maxmemory".into(),
            description: "Redis behind {{ $labels.instance }} has used over 80% of maxmemory for 2 minutes; it will soon evict keys (rate-limit state, debate fan-out) or refuse writes. Raise REDIS_MAXMEMORY or review the eviction policy (`redis-cli INFO memory`).".into(),
            fires: scenario("90% of 512 MiB", &[(&used, flat(0.9 * maxmemory, 30)), (&max, flat(maxmemory, 30))], &[10]).firing(&[redis_instance]),
            quiet: vec![
                scenario("79% of 512 MiB", &[(&used, flat(0.79 * maxmemory, 30)), (&max, flat(maxmemory, 30))], &[10]),
                scenario("maxmemory 0 (unlimited): nothing to compare with", &[(&used, flat(8e9, 30)), (&max, flat(0.0, 30))], &[10]),
                scenario("95% for a minute", &[(&used, spike(0.5 * maxmemory, 0.95 * maxmemory, 5, 30)), (&max, flat(maxmemory, 30))], &[5, 6, 10]),
                scenario("no exporter data (exporter down)", &refs(&[exporter_down("redis", "redis-exporter:9121")]), &[10]),
            ],
        },
        OperationalAlert {
            name: "AragoraDiskUsageHigh",
            group: GROUP,
            severity: "warning",
            expr: format!("(\n{}\n) > 0.85", disk_used_ratio()),
            // Disks fill slowly; a backup being written and then moved is a short bump.
            for_: PromDuration::minutes(10),
            summary: "Filesystem {{ $labels.mountpoint }} on {{ $labels.instance }} is over 85% full".into(),
            description: "{{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} has had less than 15% free for 10 minutes. Extend the volume, or free space: fewer backups kept (ARAGORA_BACKUP_KEEP_COUNT), old logs, PostgreSQL bloat (VACUUM).".into(),
            fires: scenario("the data volume 90% full (tmpfs, overlay and read-only mounts full too)", &refs(&[data_volume(10.0), never_disks.clone()].concat()), &[15]).firing(&[node_instance]),
            quiet: vec![
                scenario("84% full", &refs(&data_volume(16.0)), &[15]),
                scenario("only tmpfs, overlay, squashfs and read-only mounts are full", &refs(&never_disks), &[15]),
                scenario("no exporter data (exporter down)", &refs(&[exporter_down("node", "node-exporter:9100")]), &[15]),
            ],
        },
        OperationalAlert {
            name: "AragoraTLSCertificateExpiringSoon",
            group: GROUP,
            severity: "warning",
            // Below 3 days the critical alert takes over, so one certificate never notifies
            // twice (and no inhibit rule is needed).
            expr: format!("{left} < {TLS_WARNING_DAYS} * 86400\nunless\n{left} < {TLS_CRITICAL_DAYS} * 86400"),
            // The expiry only changes when a certificate is loaded: nothing to wait out.
            for_: PromDuration::minutes(0),
            summary: "The TLS certificate of gateway {{ $labels.instance }} expires within 14 days".into(),
            description: "The certificate gateway {{ $labels.instance }} serves expires in less than 14 days. Renew it, replace the files ARAGORA_TLS_CERT and ARAGORA_TLS_KEY name and send the gateway SIGHUP (it swaps certificates without dropping connections); check with `openssl x509 -enddate -noout -in $ARAGORA_TLS_CERT`.".into(),
            fires: scenario("10 days left (another gateway: 60)", &[(&cert("gateway-1"), expires_in(10.0)), (&cert("gateway-2"), expires_in(60.0))], &[5]).firing(&[&gateway_1]),
            quiet: vec![
                scenario("60 days left", &[(&cert("gateway-1"), expires_in(60.0))], &[5]),
                scenario("2 days left: the critical alert's", &[(&cert("gateway-1"), expires_in(2.0))], &[5]),
                scenario("no certificate read (0)", &[(&cert("gateway-1"), flat(0.0, 30))], &[5]),
            ],
        },
        OperationalAlert {
            name: "AragoraTLSCertificateExpiryCritical",
            group: GROUP,
            severity: "critical",
            expr: format!("{left} < {TLS_CRITICAL_DAYS} * 86400"),
            for_: PromDuration::minutes(0),
            summary: "The TLS certificate of gateway {{ $labels.instance }} expires within 3 days, or has expired".into(),
            description: "The certificate gateway {{ $labels.instance }} serves expires in less than 3 days or already has: clients will refuse every connection. Renew it now, replace the files ARAGORA_TLS_CERT and ARAGORA_TLS_KEY name and send the gateway SIGHUP.".into(),
            fires: scenario("2 days left, and one expired", &[(&cert("gateway-1"), expires_in(2.0)), (&cert("gateway-2"), flat(120.0, 30))], &[5]).firing(&[&gateway_1, &gateway_2]),
            quiet: vec![
                scenario("10 days left: the warning's", &[(&cert("gateway-1"), expires_in(10.0))], &[5]),
                scenario("no certificate read (0)", &[(&cert("gateway-1"), flat(0.0, 30))], &[5]),
            ],
        },
        // OCSP stapling. A staple missing only matters while one is wanted (a file, or a
        // certificate naming a responder); 15 minutes covers a start's first fetch and its
        // retries. A staple refreshed at its half-life never gets past half its validity, so
        // two thirds means refreshes have failed for a sixth of it (a day of a week-long
        // response): time to act before clients lose it at nextUpdate.
        OperationalAlert {
            name: "AragoraOCSPStapleMissing",
            group: GROUP,
            severity: "warning",
            expr: format!("aragora_tls_ocsp_stapling_enabled{{{gw}}} == 1\nunless on (job, instance)\naragora_tls_ocsp_stapled{{{gw}}} == 1"),
            for_: PromDuration::minutes(15),
            summary: "Gateway {{ $labels.instance }} staples no OCSP response though stapling is on".into(),
            description: "For 15 minutes gateway {{ $labels.instance }} has handed TLS clients no OCSP staple although its certificate is to be stapled (ARAGORA_TLS_OCSP_STAPLING, or ARAGORA_TLS_OCSP_RESPONSE_FILE): no good response yet, or the last one expired or said revoked. Clients that require a staple refuse to connect; the others ask the CA themselves. The gateway's log says why (\"OCSP refresh failed\", with the responder and what to do); aragora_tls_ocsp_refresh_failures_total by reason counts the failures.".into(),
            fires: scenario("stapling on, no staple (another gateway stapled)", &refs(&[staple("gateway-1", 1.0, 0.0, 0.0, 0.0), staple("gateway-2", 1.0, 1.0, hour, 6.0 * hour)].concat()), &[20]).firing(&[&gateway_1]),
            quiet: vec![
                scenario("stapling off", &refs(&staple("gateway-1", 0.0, 0.0, 0.0, 0.0)), &[20]),
                scenario("stapled", &refs(&staple("gateway-1", 1.0, 1.0, hour, 6.0 * hour)), &[20]),
                scenario("no staple for ten minutes (a start's first fetches)", &refs(&[(ocsp("aragora_tls_ocsp_stapling_enabled", "gateway-1"), flat(1.0, 40)), (ocsp("aragora_tls_ocsp_stapled", "gateway-1"), format!("0x10 {}", flat(1.0, 30)))]), &[12, 20]),
            ],
        },
        OperationalAlert {
            name: "AragoraOCSPStapleStale",
            group: GROUP,
            severity: "warning",
            // Both are 0 while nothing is stapled: 0 < 0 leaves those out.
            expr: format!("aragora_tls_ocsp_staple_expires_in_seconds{{{gw}}}\n< aragora_tls_ocsp_staple_age_seconds{{{gw}}} / 2"),
            for_: PromDuration::minutes(10),
            summary: "The OCSP staple of gateway {{ $labels.instance }} is past two thirds of its validity".into(),
            description: "The OCSP response gateway {{ $labels.instance }} staples has less than half its age left before its nextUpdate (aragora_tls_ocsp_staple_expires_in_seconds): refreshes, due at its half-life, have been failing, and at nextUpdate clients lose the staple. The gateway's log says why (\"OCSP refresh failed\"): check that it can reach the responder, or write a fresh ARAGORA_TLS_OCSP_RESPONSE_FILE and send SIGHUP.".into(),
            fires: scenario("5 of 7 days gone", &refs(&[staple("gateway-1", 1.0, 1.0, 120.0 * hour, 48.0 * hour), staple("gateway-2", 1.0, 1.0, 24.0 * hour, 144.0 * hour)].concat()), &[20]).firing(&[&gateway_1]),
            quiet: vec![
                scenario("half its validity gone (refresh due)", &refs(&staple("gateway-1", 1.0, 1.0, 84.0 * hour, 84.0 * hour)), &[20]),
                scenario("nothing stapled", &refs(&staple("gateway-1", 1.0, 0.0, 0.0, 0.0)), &[20]),
            ],
        },
        OperationalAlert {
            name: "AragoraOCSPRefreshFailing",
            group: GROUP,
            severity: "warning",
            // One failure that the next try mends is noise; a responder down keeps failing
            // (backing off to ARAGORA_TLS_OCSP_REFRESH_SECS, an hour by default), so two
            // within two hours is a refresh that does not come back by itself.
            expr: format!("sum by (component, job, instance) (increase(aragora_tls_ocsp_refresh_failures_total{{{gw}}}[2h])) >= 2"),
            for_: PromDuration::minutes(0),
            summary: "Gateway {{ $labels.instance }} keeps failing to refresh its OCSP staple".into(),
            description: "Gateway {{ $labels.instance }} failed to fetch a good OCSP response at least twice in two hours (aragora_tls_ocsp_refresh_failures_total by reason: unreachable, refused, invalid, unknown). The last good staple is still served until its nextUpdate (AragoraOCSPStapleStale warns before that). The gateway's log line \"OCSP refresh failed\" names the responder and what to do.".into(),
            fires: scenario("the responder unreachable", &[(&ocsp_failures("unreachable", "gateway-1"), "0+1x40".into()), (&ocsp_failures("unreachable", "gateway-2"), flat(0.0, 40))], &[20]).firing(&[&gateway_1]),
            quiet: vec![
                scenario("no failures", &[(&ocsp_failures("unreachable", "gateway-1"), flat(0.0, 40))], &[20]),
                scenario("one failure, then good refreshes", &[(&ocsp_failures("refused", "gateway-1"), format!("0x10 {}", flat(1.0, 30)))], &[20]),
            ],
        },
        OperationalAlert {
            name: "AragoraOCSPCertificateRevoked",
            group: GROUP,
            severity: "critical",
            expr: format!("sum by (component, job, instance) (increase(aragora_tls_ocsp_refresh_failures_total{{{gw},reason=\"revoked\"}}[1h])) > 0"),
            for_: PromDuration::minutes(0),
            summary: "The CA says the TLS certificate of gateway {{ $labels.instance }} is revoked".into(),
            description: "The OCSP responder answered that the certificate gateway {{ $labels.instance }} serves has been revoked; the gateway stopped stapling at once, and clients that check revocation refuse to connect. Get a new certificate now, replace the files ARAGORA_TLS_CERT and ARAGORA_TLS_KEY name and send the gateway SIGHUP.".into(),
            fires: scenario("a revoked answer", &[(&ocsp_failures("revoked", "gateway-1"), format!("0x10 {}", flat(1.0, 30))), (&ocsp_failures("unreachable", "gateway-1"), "0+1x40".into())], &[15]).firing(&[&gateway_1]),
            quiet: vec![
                scenario("never revoked", &[(&ocsp_failures("revoked", "gateway-1"), flat(0.0, 40))], &[15]),
                scenario("unreachable only", &[(&ocsp_failures("unreachable", "gateway-1"), "0+1x40".into())], &[15]),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_belongs_to_its_exporter() {
        assert_eq!(
            Exporter::of("pg_settings_max_connections"),
            Some(Exporter::Postgres)
        );
        assert_eq!(
            Exporter::of("redis_memory_max_bytes"),
            Some(Exporter::Redis)
        );
        assert_eq!(
            Exporter::of("node_filesystem_avail_bytes"),
            Some(Exporter::Node)
        );
        assert_eq!(
            Exporter::of("aragora_tls_cert_expiry_timestamp_seconds"),
            None
        );
        assert_eq!(Exporter::of("process_resident_memory_bytes"), None);
    }

    /// No selector of any operational rule would be a false problem of `aragora slo check`:
    /// each names a catalogue metric or one of the exporters'.
    #[test]
    fn every_metric_an_operational_rule_names_is_aragoras_or_an_exporters() {
        let settings = crate::SloSettings::default();
        for alert in crate::rules::operational::alerts(&settings) {
            for selector in crate::promql::selectors(&alert.expr) {
                let metric = &selector.metric;
                assert!(
                    crate::check::catalogue_entry(metric).is_some()
                        || (Exporter::of(metric).is_some()
                            && !metric.starts_with(crate::check::NAMESPACE)),
                    "{}: {metric} is neither in the catalogue nor an exporter's",
                    alert.name
                );
            }
        }
    }

    #[test]
    fn every_alert_is_in_the_infrastructure_group() {
        let alerts = alerts();
        assert_eq!(alerts.len(), 9);
        assert!(alerts.iter().all(|a| a.group == GROUP));
    }
}
