//! The exporters the infrastructure alerts read (Debian's postgres_exporter, redis_exporter and
//! node_exporter, installed by scripts/setup.sh) on free ports, and a `redis-server` of the
//! test's own with a small `maxmemory` to fill (the shared Redis's configuration is never
//! touched). Each is stopped when dropped.

use super::{eventually, free_port, series_key};
use aragora_slo::rules::infrastructure::Exporter;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

/// A running exporter.
pub struct ExporterProcess {
    child: Child,
    pub exporter: Exporter,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl ExporterProcess {
    /// postgres_exporter on the server of `database_url` (its statistics are server-wide; the
    /// database is the one it connects to), ready once it reports `pg_up 1`.
    pub async fn postgres(database_url: &str) -> Self {
        let separator = if database_url.contains('?') { '&' } else { '?' };
        let dsn = format!("{database_url}{separator}sslmode=disable");
        Self::start(
            Exporter::Postgres,
            &[],
            &[("DATA_SOURCE_NAME", dsn)],
            "pg_up 1",
        )
        .await
    }

    /// redis_exporter on the Redis at 127.0.0.1:`redis_port`, ready once it reports `redis_up 1`.
    pub async fn redis(redis_port: u16) -> Self {
        let addr = format!("--redis.addr=redis://127.0.0.1:{redis_port}");
        Self::start(Exporter::Redis, &[addr], &[], "redis_up 1").await
    }

    /// node_exporter with only its filesystem collector (the one the disk alert reads).
    pub async fn node() -> Self {
        let args = [
            "--collector.disable-defaults".to_string(),
            "--collector.filesystem".to_string(),
        ];
        Self::start(Exporter::Node, &args, &[], "node_filesystem_size_bytes").await
    }

    async fn start(
        exporter: Exporter,
        args: &[String],
        env: &[(&str, String)],
        ready: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let program = exporter.package();
        let child = Command::new(program)
            .args(args)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("exporter.log")).unwrap())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("{program}: {err} (apt-get install {program}; scripts/setup.sh does)")
            });
        let process = Self {
            child,
            exporter,
            port,
            _dir: dir,
        };
        eventually(
            &format!("{program} to report {ready}"),
            PATIENCE,
            || async {
                let metrics = process.try_metrics().await?;
                metrics
                    .lines()
                    .any(|line| line.starts_with(ready))
                    .then_some(())
            },
        )
        .await;
        process
    }

    /// `127.0.0.1:PORT`, for a scrape config.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn try_metrics(&self) -> Option<String> {
        let url = format!("http://{}/metrics", self.target());
        let response = reqwest::get(&url).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// A scrape of its `/metrics`.
    pub async fn metrics(&self) -> String {
        self.try_metrics().await.expect("the exporter answers")
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every sample of series `name` in the exposition `metrics`, as its label pairs and value.
pub fn samples(metrics: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (line_name, labels) = series_key(key)?;
            (line_name == name).then(|| Some((labels, value.parse().ok()?)))?
        })
        .collect()
}

/// A `redis-server` of the test's own on a free port (plain TCP, no persistence) with
/// `maxmemory` and the `noeviction` policy, so what is written stays and counts.
pub struct SmallRedis {
    child: Child,
    pub port: u16,
    pub maxmemory: u64,
    _dir: tempfile::TempDir,
}

impl SmallRedis {
    pub async fn start(maxmemory: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--maxmemory", &maxmemory.to_string()])
            .args(["--maxmemory-policy", "noeviction"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::fs::File::create(dir.path().join("redis.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("redis-server: {err} (apt-get install redis-server; scripts/setup.sh does)")
            });
        let redis = Self {
            child,
            port,
            maxmemory,
            _dir: dir,
        };
        eventually("redis-server to answer PING", PATIENCE, || async {
            (redis.cli(&["PING"]).trim() == "PONG").then_some(())
        })
        .await;
        redis
    }

    /// What `redis-cli` prints for one command.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools, installed with redis-server)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        let info = self.cli(&["INFO", "memory"]);
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no used_memory in {info}"))
    }

    /// Writes 64 KiB at a time until `used_memory` is at least `share` of `maxmemory`; the
    /// share reached.
    pub fn fill_to(&self, share: f64) -> f64 {
        let script = "for i = 1, 4 do redis.call('SET', KEYS[1] .. i, string.rep('x', 16384)) end";
        for batch in 0.. {
            let used = self.used_memory() as f64 / self.maxmemory as f64;
            if used >= share {
                return used;
            }
            assert!(batch < 10_000, "Redis stays at {used} of maxmemory");
            let prefix = format!("fill:{batch}:");
            let reply = self.cli(&["EVAL", script, "1", &prefix]);
            assert!(!reply.contains("OOM"), "refused at {used}: {reply}");
        }
        unreachable!()
    }
}

impl Drop for SmallRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
