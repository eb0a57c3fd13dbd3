//! Backups and drills on cron schedules (tokio-cron-scheduler; six fields with seconds, UTC).
//!
//! Each job skips a tick while its previous run is still going (a slow backup must not pile
//! up behind a short schedule), logs what it did, and records it in the DR log like the CLI.

use crate::config::DrConfig;
use crate::{backup, drill, retention};
use aragora_engine::EngineConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Checks a cron expression; empty means "off".
pub fn check_cron(expression: &str) -> Result<(), String> {
    if expression.trim().is_empty() {
        return Ok(());
    }
    Job::new_async(expression, |_, _| Box::pin(async {}))
        .map(|_| ())
        .map_err(|err| format!("{expression:?} is not a cron expression ({err:?}); write six fields, sec min hour day month weekday, such as \"0 */5 * * * *\" for every 5 minutes"))
}

/// The running schedules; [`DrScheduler::shutdown`] stops them.
pub struct DrScheduler {
    scheduler: JobScheduler,
}

impl DrScheduler {
    pub async fn shutdown(mut self) {
        if let Err(err) = self.scheduler.shutdown().await {
            tracing::warn!(error = ?err, "the DR scheduler did not stop cleanly");
        }
    }
}

type Work = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A job that runs `work` on `expression`, skipping ticks while the last run is going.
fn job(expression: &str, work: Work) -> Result<Job, String> {
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    Job::new_async(expression, move |_, _| {
        let (busy, work) = (busy.clone(), work.clone());
        Box::pin(async move {
            let Ok(_running) = busy.try_lock() else {
                tracing::warn!("the previous scheduled run is still going; skipping this tick");
                return;
            };
            work().await;
        })
    })
    .map_err(|err| format!("{err:?}"))
}

/// One scheduled backup: take it, note it, prune.
pub async fn backup_once(engine: &EngineConfig, dr: &DrConfig) {
    match backup::create(engine, dr, false).await {
        Ok(manifest) => {
            tracing::info!(id = %manifest.id, bytes = manifest.artifact_bytes, seconds = manifest.duration_seconds, "scheduled backup taken");
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
        }
        Err(err) => tracing::error!(error = %err, "scheduled backup failed"),
    }
}

/// Starts the configured schedules (none when both are empty).
pub async fn start(engine: EngineConfig, dr: DrConfig) -> Result<Option<DrScheduler>, String> {
    if dr.backup_schedule.trim().is_empty() && dr.drill_schedule.trim().is_empty() {
        return Ok(None);
    }
    let scheduler = JobScheduler::new()
        .await
        .map_err(|err| format!("{err:?}"))?;
    let shared = Arc::new((engine, dr));
    if !shared.1.backup_schedule.trim().is_empty() {
        let context = shared.clone();
        let work: Work = Arc::new(move || {
            let context = context.clone();
            Box::pin(async move { backup_once(&context.0, &context.1).await })
        });
        scheduler
            .add(job(&shared.1.backup_schedule, work)?)
            .await
            .map_err(|err| format!("{err:?}"))?;
    }
    if !shared.1.drill_schedule.trim().is_empty() {
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
        scheduler
            .add(job(&shared.1.drill_schedule, work)?)
            .await
            .map_err(|err| format!("{err:?}"))?;
    }
    scheduler.start().await.map_err(|err| format!("{err:?}"))?;
    tracing::info!(backups = %shared.1.backup_schedule, drills = %shared.1.drill_schedule, "DR schedules running");
    Ok(Some(DrScheduler { scheduler }))
}
