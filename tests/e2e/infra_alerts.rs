//! The infrastructure alerts (`aragora-infrastructure`) against the real exporters and a real
//! Prometheus: every metric the rules name is in a scrape of its exporter (Debian's builds,
//! on the PostgreSQL and Redis of this machine) with the labels the rules select on; and in a
//! Prometheus scraping the exporters and two gateways with the committed rules, each ratio
//! measures what the servers say, the Redis alert fires for a Redis of the test's own filled
//! past 80% of its maxmemory (and never for one without maxmemory), and each TLS alert fires
//! for the gateway whose certificate expires in its window, and only for it.

use crate::alerting::{instant, named_metrics, Named, Source};
use crate::support::exporters::{samples, ExporterProcess, SmallRedis};
use crate::support::prom::PromServer;
use crate::support::{eventually, GatewayProcess, TestDatabase};
use aragora_slo::rules::infrastructure::{self, Exporter};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);
/// The shared Redis of the test machine (scripts/services.sh), read and never configured.
const SHARED_REDIS_PORT: u16 = 6379;
const DAY: f64 = 86_400.0;

/// PostgreSQL's own `max_connections`.
async fn max_connections(database_url: &str) -> f64 {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(database_url).await.unwrap();
    let text: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_infrastructure_alerts_name_is_in_its_exporters_scrape() {
    let database = TestDatabase::create().await;
    let exporters = [
        ExporterProcess::postgres(&database.url).await,
        ExporterProcess::redis(SHARED_REDIS_PORT).await,
        ExporterProcess::node().await,
    ];
    let mut scrapes = BTreeMap::new();
    for exporter in &exporters {
        scrapes.insert(exporter.exporter, exporter.metrics().await);
    }

    let named: Vec<(Exporter, Named)> = named_metrics()
        .into_iter()
        .filter_map(|named| match named.source {
            Source::Exporter(exporter) => Some((exporter, named)),
            Source::Component(_) => None,
        })
        .collect();
    for exporter in Exporter::ALL {
        assert!(
            named.iter().any(|(e, _)| *e == exporter),
            "no rule names a metric of {exporter:?}: {named:#?}"
        );
    }
    // Each metric with every label its matchers select on (a renamed label would leave the
    // rule matching nothing, silently).
    let missing: Vec<String> = named
        .iter()
        .filter(|(exporter, named)| {
            !samples(&scrapes[exporter], &named.metric)
                .iter()
                .any(|(labels, _)| {
                    named
                        .labels
                        .iter()
                        .all(|wanted| labels.iter().any(|(label, _)| label == wanted))
                })
        })
        .map(|(exporter, named)| {
            format!(
                "{} with labels {:?} ({}; {exporter:?})",
                named.metric, named.labels, named.place
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "absent from the exporters' scrapes: {missing:#?}"
    );

    // And what they say is the server's own.
    let reported = samples(&scrapes[&Exporter::Postgres], "pg_settings_max_connections");
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].1, max_connections(&database.url).await);
    let node = samples(&scrapes[&Exporter::Node], "node_filesystem_size_bytes");
    assert!(
        node.iter().any(|(_, size)| *size > 0.0),
        "no filesystem with a size: {node:?}"
    );
}

/// A gateway (in front of nothing) serving a certificate that openssl made valid for `days`.
async fn gateway_with_certificate(dir: &Path, name: &str, days: u32) -> GatewayProcess {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-days", &days.to_string(), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/setup.sh installs it)");
    assert!(status.success());
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "upstreams = [\"127.0.0.1:9\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    GatewayProcess::start_with_file(&file, &cert, &[]).await
}

/// Every alert named `name` in Prometheus, pending or firing.
async fn alerts(prometheus: &PromServer, name: &str) -> Vec<Value> {
    let answer = prometheus.api("/api/v1/alerts", &[]).await;
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["labels"]["alertname"] == name)
        .cloned()
        .collect()
}

/// The alert named `name` for `instance` in `state`, once there is one.
async fn alert_for(prometheus: &PromServer, name: &str, instance: &str, state: &str) -> Value {
    eventually(
        &format!("{name} {state} for {instance}"),
        PATIENCE * 4,
        || async {
            prometheus
                .alerts(name, state)
                .await
                .into_iter()
                .find(|alert| alert["labels"]["instance"] == instance)
        },
    )
    .await
}

fn value(sample: &Value) -> f64 {
    let text = sample["value"]
        .as_str()
        .or_else(|| sample["value"][1].as_str())
        .unwrap_or_else(|| panic!("no value in {sample}"));
    text.parse().unwrap()
}

/// The share of `mountpoint` unprivileged processes cannot use, as statvfs(3) says.
fn used_share(mountpoint: &str) -> f64 {
    let path = std::ffi::CString::new(mountpoint).unwrap();
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs struct the call fills in.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stats) }, 0);
    1.0 - stats.f_bavail as f64 / stats.f_blocks as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_infrastructure_alerts_fire_in_a_real_prometheus() {
    let database = TestDatabase::create().await;
    let small = SmallRedis::start(4 * 1024 * 1024).await;
    let postgres = ExporterProcess::postgres(&database.url).await;
    let full_redis = ExporterProcess::redis(small.port).await;
    let unlimited_redis = ExporterProcess::redis(SHARED_REDIS_PORT).await;
    let node = ExporterProcess::node().await;
    let dir = tempfile::tempdir().unwrap();
    let in_10_days = gateway_with_certificate(dir.path(), "ten-days", 10).await;
    let in_a_day = gateway_with_certificate(dir.path(), "one-day", 1).await;
    let gateway_target = |gateway: &GatewayProcess| format!("127.0.0.1:{}", gateway.admin_port);
    // The runbook's job names for the exporters; the rules select none of them.
    let prometheus = PromServer::prometheus(&[
        ("postgres", postgres.target()),
        ("redis", full_redis.target()),
        ("redis-unlimited", unlimited_redis.target()),
        ("node", node.target()),
        ("aragora-gateway", gateway_target(&in_10_days)),
        ("aragora", gateway_target(&in_a_day)),
    ])
    .await;
    eventually("every target scraped and up", PATIENCE, || async {
        (instant(&prometheus, "up == 1").await.len() == 6).then_some(())
    })
    .await;

    // PostgreSQL: one ratio for the one server, a whole number of connections (at least the
    // exporter's own) of max_connections.
    let connections = eventually("the connections ratio", PATIENCE, || async {
        let found = instant(&prometheus, &infrastructure::postgres_connections_ratio()).await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["metric"]["instance"], postgres.target());
    let max = max_connections(&database.url).await;
    let held = value(&connections[0]) * max;
    assert!(
        held >= 1.0 && (held - held.round()).abs() < 1e-6 && held < 0.8 * max,
        "{held} of {max} connections"
    );

    // Disk: the filesystems node_exporter reports that the alert watches (none of the ignored
    // types, not read-only), each at the share statvfs gives.
    let node_metrics = node.metrics().await;
    let ignored: Vec<&str> = infrastructure::IGNORED_FSTYPES.split('|').collect();
    let label = |labels: &[(String, String)], name: &str| {
        labels
            .iter()
            .find(|(l, _)| l == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let readonly: BTreeSet<String> = samples(&node_metrics, "node_filesystem_readonly")
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .map(|(labels, _)| label(&labels, "mountpoint"))
        .collect();
    let watched: BTreeSet<String> = samples(&node_metrics, "node_filesystem_size_bytes")
        .into_iter()
        .filter(|(labels, size)| {
            *size > 0.0
                && !ignored.contains(&label(labels, "fstype").as_str())
                && !readonly.contains(&label(labels, "mountpoint"))
        })
        .map(|(labels, _)| label(&labels, "mountpoint"))
        .collect();
    let disks = instant(&prometheus, &infrastructure::disk_used_ratio()).await;
    let measured: BTreeMap<String, f64> = disks
        .iter()
        .map(|disk| {
            let mountpoint = disk["metric"]["mountpoint"].as_str().unwrap().to_string();
            (mountpoint, value(disk))
        })
        .collect();
    assert_eq!(
        measured.keys().cloned().collect::<BTreeSet<_>>(),
        watched,
        "{node_metrics}"
    );
    for (mountpoint, share) in &measured {
        let expected = used_share(mountpoint);
        assert!(
            (share - expected).abs() < 0.01,
            "{mountpoint}: {share} in Prometheus, {expected} by statvfs"
        );
    }

    // Redis: a ratio for the Redis with a maxmemory; none (nothing divided by zero) for one
    // without.
    let unlimited_max = samples(&unlimited_redis.metrics().await, "redis_memory_max_bytes");
    let redis_ratios = instant(&prometheus, &infrastructure::redis_memory_ratio()).await;
    let instances: Vec<&str> = redis_ratios
        .iter()
        .filter_map(|r| r["metric"]["instance"].as_str())
        .collect();
    assert!(
        instances.contains(&full_redis.target().as_str()),
        "{redis_ratios:?}"
    );
    assert_eq!(
        instances.contains(&unlimited_redis.target().as_str()),
        unlimited_max.iter().any(|(_, max)| *max > 0.0),
        "{redis_ratios:?} with {unlimited_max:?}"
    );

    // Filled past 80%: pending at once, firing after its `for`. The alert may turn pending on a
    // scrape taken while the fill was passing 80%; each evaluation updates its value, so it
    // comes to show the filled Redis' ratio.
    let reached = small.fill_to(0.9);
    let pending = eventually(
        &format!("AragoraRedisMemoryHigh pending at about {reached}"),
        PATIENCE * 4,
        || async {
            prometheus
                .alerts("AragoraRedisMemoryHigh", "pending")
                .await
                .into_iter()
                .find(|alert| {
                    alert["labels"]["instance"] == full_redis.target().as_str()
                        && (value(alert) - reached).abs() < 0.05
                })
        },
    )
    .await;
    assert_eq!(pending["labels"]["job"], "redis", "{pending}");

    // TLS: each certificate in its own window, and only there.
    let soon = alert_for(
        &prometheus,
        "AragoraTLSCertificateExpiringSoon",
        &gateway_target(&in_10_days),
        "firing",
    )
    .await;
    assert_eq!(soon["labels"]["severity"], "warning");
    let left = value(&soon);
    assert!(left > 9.9 * DAY && left <= 10.0 * DAY, "{soon}");
    let critical = alert_for(
        &prometheus,
        "AragoraTLSCertificateExpiryCritical",
        &gateway_target(&in_a_day),
        "firing",
    )
    .await;
    assert_eq!(critical["labels"]["severity"], "critical");
    assert_eq!(critical["labels"]["component"], "gateway");
    let left = value(&critical);
    assert!(left > 0.9 * DAY && left <= DAY, "{critical}");
    let instances_of = |alerts: Vec<Value>| -> Vec<String> {
        alerts
            .iter()
            .map(|a| {
                a["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        instances_of(alerts(&prometheus, "AragoraTLSCertificateExpiringSoon").await),
        [gateway_target(&in_10_days)]
    );
    assert_eq!(
        instances_of(alerts(&prometheus, "AragoraTLSCertificateExpiryCritical").await),
        [gateway_target(&in_a_day)]
    );

    let firing = alert_for(
        &prometheus,
        "AragoraRedisMemoryHigh",
        &full_redis.target(),
        "firing",
    )
    .await;
    assert_eq!(firing["labels"]["severity"], "warning");
    assert_eq!(firing["labels"]["job"], "redis");
    assert_eq!(
        instances_of(alerts(&prometheus, "AragoraRedisMemoryHigh").await),
        [full_redis.target()],
        "only the filled Redis"
    );
    // PostgreSQL under 80% all along; each filesystem alerting only past 85%.
    assert!(alerts(&prometheus, "AragoraPostgresConnectionsHigh")
        .await
        .is_empty());
    // These are the machine's real filesystems, which builds running beside the test fill and
    // empty: one within two points of the threshold may cross it between the measurement and
    // the rule's evaluation, so only those clearly on one side are held to it.
    let clear = |share: f64| (share - 0.85).abs() > 0.02;
    let full_disks: BTreeSet<String> = measured
        .iter()
        .filter(|(_, share)| **share > 0.85 && clear(**share))
        .map(|(mountpoint, _)| mountpoint.clone())
        .collect();
    let near: BTreeSet<String> = measured
        .iter()
        .filter(|(_, share)| !clear(**share))
        .map(|(mountpoint, _)| mountpoint.clone())
        .collect();
    let disk_alerts: BTreeSet<String> = alerts(&prometheus, "AragoraDiskUsageHigh")
        .await
        .iter()
        .map(|a| {
            a["labels"]["mountpoint"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|mountpoint| !near.contains(mountpoint))
        .collect();
    assert_eq!(disk_alerts, full_disks, "{measured:?}");
}
