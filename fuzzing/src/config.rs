//! The configuration an operator writes: the TOML files (`--config` of the engine and the
//! gateway, the DR config) and the environment variables of each part, read as a start reads
//! them (file, env overlay, the part's own finishing) and then validated.

use aragora_chaos::DrConfig;
use aragora_config::{from_toml_str, Env, Settings};
use aragora_engine::EngineConfig;
use aragora_gateway::GatewayConfig;

/// Every problem names its setting and says what to do.
fn assert_problems(problems: &[aragora_config::ConfigProblem]) {
    for problem in problems {
        assert!(!problem.setting.is_empty(), "{problem:?}");
        assert!(!problem.message.is_empty(), "{problem:?}");
    }
}

/// Input after the selector byte: a second byte below 128 means the rest is the TOML file;
/// from 128 on it picks one of the part's settings, and the rest is its variable's value.
fn read<T: Settings>(data: &[u8]) {
    let Some((&how, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut problems = Vec::new();
    let mut config: T = if how < 128 {
        match from_toml_str(text, "config file fuzz.toml") {
            Ok(config) => config,
            Err(problem) => return assert_problems(&[problem]),
        }
    } else {
        T::default()
    };
    let mut env = Env::new();
    if how >= 128 {
        let setting = &T::SETTINGS[usize::from(how) % T::SETTINGS.len()];
        if let Some(name) = setting.env.first() {
            env.insert(name.to_string(), text.to_string());
        }
    }
    config.apply_env(&env, &mut problems);
    config.finish_read(&env, &mut problems);
    problems.extend(config.validate());
    assert_problems(&problems);
}

/// The engine's, the gateway's and the DR configuration, by the first byte.
pub fn config_toml(data: &[u8]) {
    let Some((&part, rest)) = data.split_first() else {
        return;
    };
    match part % 3 {
        0 => read::<EngineConfig>(rest),
        1 => read::<GatewayConfig>(rest),
        _ => read::<DrConfig>(rest),
    }
}
