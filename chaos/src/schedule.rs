//! Jobs on cron schedules (tokio-cron-scheduler; six fields with seconds, UTC): backups and
//! drills, and in `aragora control` chaos experiments.
//!
//! Each job skips a tick while its previous run is still going (a slow backup must not pile
//! up behind a short schedule), logs what it did, and records it in the DR log like the CLI.
//! Only the scheduler leader runs a tick ([`crate::leader`]: every process that runs schedules
//! on one database stands, one leads), and only after claiming it in `scheduled_runs` (keyed by
//! job and scheduled time), so no tick runs twice.
//!
//! A weekly drill cannot be waited for in a test, and tokio-cron-scheduler reads the wall
//! clock itself. So with `ARAGORA_DR_CLOCK_SCALE` above 1 the same jobs are triggered by a
//! [`ScaledClock`] instead: the same cron parser (croner, configured as tokio-cron-scheduler
//! configures it) finds each next occurrence in scaled time, and the job runs when the scaled
//! clock gets there. A week of schedule then passes in minutes, with the calendar intact.

use crate::config::DrConfig;
use crate::error::DrError;
use crate::leader::Leadership;
use crate::manifest::Manifest;
use crate::{backup, cron, drill, retention};
use aragora_engine::EngineConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};

/// A clock that runs `scale` times faster than real time from `start`.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    start: chrono::DateTime<chrono::Utc>,
    real_start: tokio::time::Instant,
    scale: f64,
}

impl ScaledClock {
    pub fn new(start: chrono::DateTime<chrono::Utc>, scale: f64) -> ScaledClock {
        ScaledClock {
            start,
            real_start: tokio::time::Instant::now(),
            scale,
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let scaled = self.real_start.elapsed().as_secs_f64() * self.scale;
        self.start + chrono::Duration::milliseconds((scaled * 1000.0) as i64)
    }

    /// Real time until the scaled clock shows `at` (zero when it already has).
    pub fn real_delay_until(&self, at: chrono::DateTime<chrono::Utc>) -> Duration {
        let scaled = (at - self.now()).num_milliseconds().max(0) as f64 / 1000.0;
        Duration::from_secs_f64(scaled / self.scale)
    }
}

/// What triggers the jobs: tokio-cron-scheduler on the real clock, or timers on a scaled one.
enum Trigger {
    Cron(JobScheduler),
    Scaled(Vec<tokio::task::JoinHandle<()>>),
}

/// The running schedules; [`Schedules::shutdown`] stops them.
pub struct Schedules {
    trigger: Trigger,
    leadership: Leadership,
}

impl Schedules {
    /// This process's part in the election of the scheduler leader.
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// Stops the triggers, then the campaign (a leader releases its lock for a follower).
    pub async fn shutdown(self) {
        self.shutdown_triggers().await;
        self.leadership.stop().await;
    }

    async fn shutdown_triggers(&self) {
        match &self.trigger {
            Trigger::Cron(scheduler) => {
                if let Err(err) = scheduler.clone().shutdown().await {
                    tracing::warn!(error = ?err, "the DR scheduler did not stop cleanly");
                }
            }
            Trigger::Scaled(timers) => timers.iter().for_each(|timer| timer.abort()),
        }
    }
}

/// Work a schedule runs: a closure that starts one run.
pub type Work = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a trigger calls at each tick: the scheduled time (scaled time on a scaled clock).
type Tick = Arc<
    dyn Fn(chrono::DateTime<chrono::Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// `work` at each tick, when this process leads, the previous run has ended and the tick is
/// claimed; each skip is logged with its reason.
fn guarded(name: &'static str, work: Work, leadership: Leadership) -> Tick {
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    Arc::new(move |tick| {
        let (busy, work, leadership) = (busy.clone(), work.clone(), leadership.clone());
        Box::pin(async move {
            let scheduled_for = tick.to_rfc3339();
            if let Err(reason) = leadership.may_start() {
                tracing::debug!(job = name, tick = %scheduled_for, reason = %reason, "not the scheduler leader; tick skipped");
                return;
            }
            let Ok(_running) = busy.try_lock() else {
                tracing::warn!(job = name, tick = %scheduled_for, "the previous scheduled run is still going; skipping this tick");
                return;
            };
            let tick_ms = tick.timestamp_millis();
            let claimed = match leadership.claim(name, tick_ms).await {
                Ok(Ok(())) => true,
                Ok(Err(holder)) => {
                    tracing::info!(job = name, tick = %scheduled_for, holder = %holder, "tick already claimed; skipped");
                    return;
                }
                Err(err) => {
                    // No claim row (the database is away, or its schema predates migration 7):
                    // the leader's lock alone keeps the tick single.
                    tracing::warn!(job = name, tick = %scheduled_for, error = %err, "cannot claim the tick in scheduled_runs; running it under the scheduler lock alone");
                    false
                }
            };
            tracing::info!(job = name, scheduled_for = %scheduled_for, leader = %leadership.id(), "scheduled job starts");
            work().await;
            if leadership.role() != crate::leader::Role::Leader {
                tracing::warn!(job = name, tick = %scheduled_for, "this run finished after leadership was lost (runs in progress finish; the tick was claimed, so no one else ran it)");
            }
            if claimed {
                leadership.finish(name, tick_ms).await;
            }
        })
    })
}

/// A tokio-cron-scheduler job that runs `tick` on `expression`, with the occurrence it fires for.
fn job(expression: &str, tick: Tick) -> Result<Job, String> {
    let occurrences = Arc::new(cron::parse(expression)?);
    Job::new_async(expression, move |_, _| {
        // tokio-cron-scheduler fires at or just after the occurrence: the latest one at or
        // before now (whole seconds, as occurrences are) is the tick every replica agrees on.
        let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
        let at = occurrences
            .find_previous_occurrence(&now, true)
            .unwrap_or(now);
        tick(at)
    })
    .map_err(|err| format!("{err:?}"))
}

/// A timer that runs `tick` at each occurrence of `expression` on the scaled clock.
fn scaled_job(
    name: &'static str,
    expression: &str,
    clock: ScaledClock,
    tick: Tick,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let occurrences = cron::parse(expression)?;
    Ok(tokio::spawn(async move {
        loop {
            // croner keeps the sub-second part of its starting point; occurrences are whole seconds.
            let now = chrono::SubsecRound::trunc_subsecs(clock.now(), 0);
            let Ok(next) = occurrences.find_next_occurrence(&now, false) else {
                tracing::warn!(job = name, "the schedule has no next occurrence; it stops");
                return;
            };
            tokio::time::sleep(clock.real_delay_until(next)).await;
            tracing::debug!(job = name, tick = %next.to_rfc3339(), "tick (scaled clock)");
            // Not awaited: a run that outlasts the next occurrence makes that tick skip.
            tokio::spawn(tick(next));
        }
    }))
}

/// Takes a backup, notes it in the DR log and prunes old ones, as a scheduled backup does; a
/// backup not noted or not pruned is logged, not an error (the artifact is on disk).
pub async fn take_backup(engine: &EngineConfig, dr: &DrConfig) -> Result<Manifest, DrError> {
    let manifest = backup::create(engine, dr, false).await?;
    if let Err(err) = backup::record(engine, &manifest).await {
        tracing::warn!(error = %err, "backup taken but not in the DR log");
    }
    match retention::prune(&dr.backup_dir(engine), dr.backup_keep_count, dr.max_age()) {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(deleted = ?deleted, "old backups deleted")
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot prune old backups"),
    }
    Ok(manifest)
}

/// One scheduled backup: take it, note it, prune.
pub async fn backup_once(engine: &EngineConfig, dr: &DrConfig) {
    match take_backup(engine, dr).await {
        Ok(manifest) => {
            tracing::info!(id = %manifest.id, bytes = manifest.artifact_bytes, seconds = manifest.duration_seconds, "scheduled backup taken");
        }
        Err(err) => tracing::error!(error = %err, "scheduled backup failed"),
    }
}

/// A job for [`start_jobs`]: a name for the logs, a cron expression, the work.
pub struct ScheduledJob {
    pub name: &'static str,
    pub expression: String,
    pub work: Work,
}

/// The backup and drill jobs `dr` asks for (none for an empty schedule).
pub fn dr_jobs(engine: EngineConfig, dr: DrConfig) -> Vec<ScheduledJob> {
    let shared = Arc::new((engine, dr));
    let dr = &shared.1;
    let mut jobs = Vec::new();
    if !dr.backup_schedule.trim().is_empty() {
        let context = shared.clone();
        let work: Work = Arc::new(move || {
            let context = context.clone();
            Box::pin(async move { backup_once(&context.0, &context.1).await })
        });
        jobs.push(ScheduledJob {
            name: "backup",
            expression: dr.backup_schedule.clone(),
            work,
        });
    }
    if !dr.drill_schedule.trim().is_empty() {
        let context = shared.clone();
        let work: Work = Arc::new(move || {
            let context = context.clone();
            Box::pin(async move {
                let report = drill::run(&context.0, &context.1, false).await;
                if report.passed() {
                    tracing::info!(rto_seconds = ?report.rto_seconds, rpo_seconds = ?report.rpo_seconds, "scheduled DR drill passed");
                } else {
                    tracing::error!(failures = ?report.failures, "scheduled DR drill failed");
                }
            })
        });
        jobs.push(ScheduledJob {
            name: "drill",
            expression: dr.drill_schedule.clone(),
            work,
        });
    }
    jobs
}

/// The scaled clock `dr` asks for, if any.
pub fn scaled_clock(dr: &DrConfig) -> Result<Option<ScaledClock>, String> {
    if dr.clock_scale <= 1.0 {
        return Ok(None);
    }
    let start = match &dr.clock_start {
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|err| format!("ARAGORA_DR_CLOCK_START {text:?}: {err}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    tracing::warn!(scale = dr.clock_scale, start = %start.to_rfc3339(), "the schedules run on a scaled clock (ARAGORA_DR_CLOCK_SCALE), not the real one");
    Ok(Some(ScaledClock::new(start, dr.clock_scale)))
}

/// Starts the configured backup and drill schedules (none when both are empty), this process
/// standing for scheduler leader of `engine`'s database.
pub async fn start(engine: EngineConfig, dr: DrConfig) -> Result<Option<Schedules>, String> {
    let clock = scaled_clock(&dr)?;
    start_jobs(dr_jobs(engine.clone(), dr), clock, &engine, None).await
}

/// Runs `jobs` on tokio-cron-scheduler, or on `clock` when it is scaled (none: no scheduler),
/// each tick only on the scheduler leader of `engine`'s database; this process stands
/// (`aragora_control_leader` in `registry`, when given).
pub async fn start_jobs(
    jobs: Vec<ScheduledJob>,
    clock: Option<ScaledClock>,
    engine: &EngineConfig,
    registry: Option<&prometheus::Registry>,
) -> Result<Option<Schedules>, String> {
    if jobs.is_empty() {
        return Ok(None);
    }
    // Checked before standing, so a bad expression never leaves a campaign behind.
    for job in &jobs {
        cron::parse(&job.expression)?;
    }
    let leadership = Leadership::start(engine, registry);
    let described: Vec<String> = jobs
        .iter()
        .map(|job| format!("{} {:?}", job.name, job.expression))
        .collect();
    let trigger = match clock {
        Some(clock) => Trigger::Scaled(
            jobs.into_iter()
                .map(|job| {
                    let tick = guarded(job.name, job.work, leadership.clone());
                    scaled_job(job.name, &job.expression, clock, tick)
                })
                .collect::<Result<_, _>>()?,
        ),
        None => {
            let started = async {
                let scheduler = JobScheduler::new()
                    .await
                    .map_err(|err| format!("{err:?}"))?;
                for scheduled in jobs {
                    let tick = guarded(scheduled.name, scheduled.work, leadership.clone());
                    scheduler
                        .add(job(&scheduled.expression, tick)?)
                        .await
                        .map_err(|err| format!("{err:?}"))?;
                }
                scheduler.start().await.map_err(|err| format!("{err:?}"))?;
                Ok::<_, String>(scheduler)
            };
            match started.await {
                Ok(scheduler) => Trigger::Cron(scheduler),
                Err(err) => {
                    leadership.stop().await;
                    return Err(err);
                }
            }
        }
    };
    tracing::info!(jobs = ?described, "schedules running");
    Ok(Some(Schedules {
        trigger,
        leadership,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_fast_from_its_start() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-29T02:59:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let before = std::time::Instant::now();
        let clock = ScaledClock::new(start, 600.0);
        assert!(clock.now() >= start);
        // Ten scaled minutes are one real second, less the real time gone since the clock
        // started (however long a loaded machine took; the clock counts in whole scaled ms).
        let delay = clock.real_delay_until(start + chrono::Duration::minutes(10));
        let gone = before.elapsed();
        let one_second = Duration::from_secs(1);
        assert!(
            delay <= one_second && delay + gone + Duration::from_millis(1) >= one_second,
            "{delay:?} after {gone:?}"
        );
        assert_eq!(clock.real_delay_until(start), Duration::ZERO);
    }

    #[test]
    fn the_default_schedules_keep_the_rpo_and_drill_weekly() {
        let defaults = DrConfig::default();
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:02:13Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let backups = cron::parse(&defaults.backup_schedule).unwrap();
        let mut at = start;
        for _ in 0..2016 {
            let next = backups.find_next_occurrence(&at, false).unwrap();
            assert!((next - at).num_seconds() <= defaults.rpo_target_secs as i64);
            at = next;
        }
        let drills = cron::parse(&defaults.drill_schedule).unwrap();
        let first = drills.find_next_occurrence(&start, false).unwrap();
        let second = drills.find_next_occurrence(&first, false).unwrap();
        assert_eq!(first.to_rfc3339(), "2026-11-29T03:00:00+00:00");
        assert_eq!((second - first).num_days(), 7);
    }
}
