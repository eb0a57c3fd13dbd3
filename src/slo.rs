//! `aragora slo check` and `aragora slo generate`: read a spec (or build the default SLOs from
//! the environment), print every problem, write the rule files.

use crate::settings::{print_problems, EXIT_BAD_CONFIG};
use aragora_engine::config::process_env;
use aragora_slo::{SloError, SloSettings, SloSpec};
use std::path::Path;
use std::process::ExitCode;

/// The spec to use and the settings of the operational alerts' thresholds.
fn load(spec: Option<&Path>) -> Result<(SloSpec, SloSettings), ExitCode> {
    let settings = SloSettings::from_env(&process_env()).map_err(|problems| {
        print_problems(&problems);
        ExitCode::from(EXIT_BAD_CONFIG)
    })?;
    let spec = match spec {
        Some(path) => aragora_slo::load_spec(path).map_err(|err| fail(&err))?,
        None => settings.default_spec(),
    };
    Ok((spec, settings))
}

fn fail(err: &SloError) -> ExitCode {
    eprintln!("aragora: {err}");
    match err {
        SloError::Format(_) | SloError::Invalid(_) => ExitCode::from(EXIT_BAD_CONFIG),
        _ => ExitCode::FAILURE,
    }
}

pub fn check(spec: Option<&Path>) -> ExitCode {
    let (spec, _) = match load(spec) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let problems = aragora_slo::check(&spec);
    if !problems.is_empty() {
        return fail(&SloError::Invalid(problems));
    }
    let names: Vec<&str> = spec.slos.iter().map(|slo| slo.name.as_str()).collect();
    println!(
        "aragora: the {} SLO(s) of service {} are valid: {}",
        names.len(),
        spec.service,
        names.join(", ")
    );
    ExitCode::SUCCESS
}

pub fn generate(spec: Option<&Path>, out: &Path, dashboards: Option<&Path>) -> ExitCode {
    let (spec, settings) = match load(spec) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let files = match aragora_slo::generate(&spec, &settings) {
        Ok(files) => files,
        Err(err) => return fail(&err),
    };
    let mut outputs = vec![(out, files)];
    if let Some(dir) = dashboards {
        outputs.push((dir, aragora_slo::generate::dashboard_files(&settings)));
    }
    for (dir, files) in outputs {
        if let Err(err) = aragora_slo::generate::write(dir, &files) {
            return fail(&err);
        }
        for file in &files {
            println!("wrote {}", dir.join(file.name).display());
        }
    }
    ExitCode::SUCCESS
}
