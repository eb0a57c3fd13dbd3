//! `aragora token create|list|revoke`: credentials minted and managed from the command line.
//!
//! API keys go straight into the configured database (SQLite in the data directory or
//! PostgreSQL, migrated first), created by `cli`, the key shown once; loop tokens are signed
//! with `ARAGORA_API_TOKEN` and JWTs with `ARAGORA_JWT_SECRET`, neither stored anywhere. `up`'s
//! first-start admin key is made here too ([`ensure_up_key`]), through the same database path.

use crate::dr::Output;
use crate::settings::{self, failed, Parts, Sources, EXIT_BAD_CONFIG};
use crate::{ConfigArgs, EngineArgs};
use aragora_auth::{generate_key, parse_key, Authenticator, IssuedKey, KeyStore, Role, KEY_PREFIX};
use aragora_chaos::time::Timestamp;
use aragora_engine::store::{DebateStore, SqlStore};
use aragora_engine::EngineConfig;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// The longest lifetime a credential made here may have.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// JWTs are bounded like `ARAGORA_JWT_TTL`.
const MAX_JWT_TTL_SECS: u64 = 30 * 24 * 3600;
const DEFAULT_LOOP_TTL_SECS: u64 = 3600;

#[derive(Args, Clone, Default)]
pub struct StoreArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Data directory holding the SQLite database (overrides ARAGORA_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API key in the database (shown once), or mint a loop token (--loop) or a JWT (--jwt).
    Create(CreateArgs),
    /// The API keys in the database: prefix, name, role, created, expires, state.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke an API key by its id or `ara_<id>` prefix.
    Revoke {
        /// The key's id (12 hex digits) or its prefix `ara_<id>`, as `aragora token list` shows.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The role: reader, operator or admin (not with --loop: loop `admin` is an admin, a
    /// debate id a share link to that debate).
    #[arg(long, value_parser = parse_role, required_unless_present = "loop_id", conflicts_with = "loop_id")]
    role: Option<Role>,
    /// Lifetime: 30s, 15m, 1h, 30d (at most 365d; JWTs at most 30d). API keys without it never
    /// expire; loop tokens default to 1h, JWTs to ARAGORA_JWT_TTL.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// The API key's name, shown in listings (e.g. ci).
    #[arg(long, required_unless_present_any = ["loop_id", "jwt"], conflicts_with_all = ["loop_id", "jwt"])]
    name: Option<String>,
    /// Mint the runbook's `{loop_id}:{expires}:{hmac}` token for this loop (needs ARAGORA_API_TOKEN).
    #[arg(long = "loop", value_name = "LOOP_ID", conflicts_with = "jwt")]
    loop_id: Option<String>,
    /// Mint a JWT signed with ARAGORA_JWT_SECRET.
    #[arg(long, requires = "sub")]
    jwt: bool,
    /// The JWT's subject (who it names).
    #[arg(long, requires = "jwt")]
    sub: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| format!("{raw:?} is not a role; use reader, operator or admin"))
}

/// `30s`, `15m`, `1h`, `30d`, `1h30m` (Prometheus' duration syntax, as SLO windows are
/// written; a bare number is seconds) → seconds, 1 s to 365 days.
pub fn parse_ttl(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let secs = match raw.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => aragora_slo::duration::PromDuration::parse(raw)
            .map_err(|_| {
                format!(
                    "{raw:?} is not a lifetime; write a number with s, m, h, d or w (30s, 15m, 1h30m, 30d)"
                )
            })?
            .seconds(),
    };
    if secs == 0 || secs > MAX_TTL_SECS {
        return Err(format!("{raw:?} is out of range; use 1s to 365d"));
    }
    Ok(secs)
}

/// Why a token command could not do its work (the configuration aside).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot open the {backend} database: {source}")]
    Connect {
        backend: &'static str,
        source: aragora_engine::store::StoreError,
    },
    #[error("cannot create the data directory {}: {source}", dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] aragora_auth::KeyStoreError),
    #[error("cannot write the key file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The configured database's store, or the exit code after saying why not.
async fn open_configured_store(args: &StoreArgs) -> Result<(EngineConfig, SqlStore), ExitCode> {
    let engine = load_engine(args)?;
    let store = open_store(&engine).await.map_err(failed)?;
    Ok((engine, store))
}

pub async fn open_store(engine: &EngineConfig) -> Result<SqlStore, TokenError> {
    let backend = engine.db_backend.as_str();
    if engine.db_backend == aragora_engine::DbBackend::Sqlite {
        std::fs::create_dir_all(&engine.data_dir).map_err(|source| TokenError::DataDir {
            dir: engine.data_dir.clone(),
            source,
        })?;
    }
    let store = SqlStore::connect(engine.db_backend, &engine.database_url(), 1)
        .await
        .map_err(|source| TokenError::Connect { backend, source })?;
    // As the engine's start would: migrated (unless ARAGORA_AUTO_MIGRATE=false), never a
    // database newer than this binary.
    aragora_engine::schema::prepare(
        &store,
        engine,
        &mut |waiting: &aragora_engine::schema::Waiting| eprintln!("aragora: {waiting}"),
    )
    .await
    .map_err(|err| TokenError::Connect {
        backend,
        source: err.into(),
    })?;
    Ok(store)
}

/// Creates an API key for `role`, stored (hash only) before it is returned.
pub async fn create_key(
    store: &SqlStore,
    name: &str,
    role: Role,
    ttl_secs: Option<u64>,
    created_by: &str,
) -> Result<IssuedKey, TokenError> {
    let issued = generate_key(name, role, ttl_secs.map(|s| s as i64 * 1000), created_by);
    store.insert_key(&issued.stored).await?;
    Ok(issued)
}

pub(crate) fn load_engine(store: &StoreArgs) -> Result<EngineConfig, ExitCode> {
    let args = EngineArgs {
        config: store.config.clone(),
        data_dir: store.data_dir.clone(),
        ..EngineArgs::default()
    };
    match settings::load(Parts::ENGINE, &Sources::engine(&args)) {
        Ok(loaded) => Ok(loaded.engine),
        Err(problems) => Err(settings::refused(&problems)),
    }
}

/// Where the engine's API is, for the printed curl lines.
pub(crate) fn engine_url(engine: &EngineConfig) -> String {
    let host = match engine.host.as_str() {
        "0.0.0.0" | "::" | "" => "127.0.0.1",
        host => host,
    };
    format!("http://{host}:{}", engine.api_port)
}

fn expiry(at_secs: Option<i64>) -> String {
    at_secs.map_or("never".into(), |s| Timestamp::from_ms(s * 1000).to_string())
}

pub async fn run(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::Create(args) => create(args).await,
        TokenCommand::List { store, output } => list(&store, output).await,
        TokenCommand::Revoke { id, store } => revoke(&id, &store).await,
    }
}

async fn create(args: CreateArgs) -> ExitCode {
    let engine = match load_engine(&args.store) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let now = aragora_auth::unix_now();
    if let Some(loop_id) = &args.loop_id {
        let Some(key) = engine.auth.api_token.as_deref() else {
            eprintln!("aragora: --loop tokens are signed with ARAGORA_API_TOKEN, which is not set; set it to the engine's value and retry");
            return ExitCode::from(EXIT_BAD_CONFIG);
        };
        let ttl = args.ttl.unwrap_or(DEFAULT_LOOP_TTL_SECS);
        let expires = now + ttl as i64;
        let token = aragora_auth::mint_loop_token(key, loop_id, expires);
        let what = if loop_id == "admin" {
            "an admin".to_string()
        } else {
            format!("a share link to debate {loop_id}")
        };
        return print_minted(&engine, &token, &what, Some(expires), args.output);
    }
    if args.jwt {
        let (role, sub) = (
            args.role.unwrap_or(Role::Reader),
            args.sub.unwrap_or_default(),
        );
        if let Some(ttl) = args.ttl.filter(|ttl| *ttl > MAX_JWT_TTL_SECS) {
            eprintln!("aragora: --ttl {ttl}s is longer than a JWT may live; use at most 30d");
            return ExitCode::from(2);
        }
        let ttl = args.ttl.unwrap_or(engine.auth.jwt_ttl_secs);
        return match Authenticator::new(engine.auth.clone(), None).mint_jwt(&sub, role, Some(ttl)) {
            Ok(token) => print_minted(
                &engine,
                &token,
                &format!("{sub} as {role}"),
                Some(now + ttl as i64),
                args.output,
            ),
            Err(aragora_auth::JwtError::NoSecret) => {
                eprintln!("aragora: {}", aragora_auth::JwtError::NoSecret);
                ExitCode::from(EXIT_BAD_CONFIG)
            }
            Err(err) => failed(err),
        };
    }
    let (role, name) = (
        args.role.unwrap_or(Role::Reader),
        args.name.unwrap_or_default(),
    );
    if name.trim().is_empty() || name.len() > 100 {
        eprintln!("aragora: --name must be 1 to 100 characters (e.g. ci)");
        return ExitCode::from(2);
    }
    let store = match open_store(&engine).await {
        Ok(store) => store,
        Err(err) => return failed(err),
    };
    let issued = match create_key(&store, &name, role, args.ttl, "cli").await {
        Ok(issued) => issued,
        Err(err) => return failed(err),
    };
    store.close().await;
    let stored = &issued.stored;
    match args.output {
        Output::Json => {
            let mut view = json!(stored.view(stored.created_at_ms));
            view["key"] = json!(issued.key);
            println!("{view}");
        }
        Output::Text => {
            println!(
                "Created API key {} (name {}, role {}, expires {}):",
                stored.prefix(),
                stored.name,
                stored.role,
                expiry(stored.expires_at_ms.map(|ms| ms / 1000))
            );
            println!();
            println!("  {}", issued.key);
            println!();
            println!("It will not be shown again: only its hash is stored. Try it:");
            println!("  {}", curl_line(&engine_url(&engine), &issued.key, false));
        }
    }
    ExitCode::SUCCESS
}

/// A ready-to-paste request for `GET /api/auth/me` with `credential`.
pub fn curl_line(base: &str, credential: &str, insecure: bool) -> String {
    let k = if insecure { " -k" } else { "" };
    format!("curl{k} -H \"Authorization: Bearer {credential}\" {base}/api/auth/me")
}

fn print_minted(
    engine: &EngineConfig,
    token: &str,
    what: &str,
    expires: Option<i64>,
    output: Output,
) -> ExitCode {
    match output {
        Output::Json => println!("{}", json!({"token": token, "expires_at": expires})),
        Output::Text => {
            println!("A token for {what}, expires {}:", expiry(expires));
            println!();
            println!("  {token}");
            println!();
            println!("It is not stored anywhere; keep it. Try it:");
            println!("  {}", curl_line(&engine_url(engine), token, false));
        }
    }
    ExitCode::SUCCESS
}

async fn list(args: &StoreArgs, output: Output) -> ExitCode {
    let (_, store) = match open_configured_store(args).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let keys = match store.list_keys().await {
        Ok(keys) => keys,
        Err(err) => return failed(err),
    };
    store.close().await;
    let now_ms = aragora_auth::unix_now() * 1000;
    let views: Vec<aragora_auth::KeyView> = keys.iter().map(|key| key.view(now_ms)).collect();
    match output {
        Output::Json => println!("{}", json!({ "keys": views })),
        Output::Text if keys.is_empty() => {
            println!(
                "No API keys. Create one with `aragora token create --role operator --name ci`."
            )
        }
        Output::Text => {
            println!(
                "{:<17} {:<16} {:<8} {:<24} {:<24} STATE",
                "PREFIX", "NAME", "ROLE", "CREATED", "EXPIRES"
            );
            for (key, view) in keys.iter().zip(&views) {
                let created = Timestamp::from_ms(key.created_at_ms).to_string();
                let expires = key
                    .expires_at_ms
                    .map_or("never".to_string(), |ms| Timestamp::from_ms(ms).to_string());
                println!(
                    "{:<17} {:<16} {:<8} {:<24} {:<24} {}",
                    key.prefix(),
                    key.name,
                    key.role,
                    created,
                    expires,
                    view.state
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// `ara_<id>`, `<id>`, or a whole key (its id part) → the id.
fn key_id(raw: &str) -> &str {
    let raw = raw.trim();
    if let Some((id, _)) = parse_key(raw) {
        return id;
    }
    raw.strip_prefix(KEY_PREFIX).unwrap_or(raw)
}

async fn revoke(raw: &str, args: &StoreArgs) -> ExitCode {
    let id = key_id(raw);
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        eprintln!("aragora: {raw:?} is not a key id; give the id or the ara_<id> prefix `aragora token list` shows");
        return ExitCode::from(2);
    }
    let (engine, store) = match open_configured_store(args).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let found = store.find_key(id).await;
    let revoked = store.revoke_key(id, aragora_auth::unix_now() * 1000).await;
    store.close().await;
    match (found, revoked) {
        (Err(err), _) | (_, Err(err)) => failed(err),
        (Ok(None), _) => {
            eprintln!("aragora: no API key {KEY_PREFIX}{id}; `aragora token list` shows the keys");
            ExitCode::FAILURE
        }
        (Ok(Some(_)), Ok(false)) => {
            println!("{KEY_PREFIX}{id} was already revoked.");
            ExitCode::SUCCESS
        }
        (Ok(Some(_)), Ok(true)) => {
            println!(
                "Revoked {KEY_PREFIX}{id}. Every engine refuses it within {} s (ARAGORA_API_KEY_CACHE_SECONDS: how long a replica trusts a key it verified).",
                engine.auth.api_key_cache_secs
            );
            ExitCode::SUCCESS
        }
    }
}

/// What `up` found or made: the key file, and the new key when it was created now.
pub struct UpKey {
    pub path: PathBuf,
    pub created: Option<String>,
}

/// `up`'s admin key: `<data_dir>/admin.key` (mode 0600), made on first start (name
/// `up-admin`). An existing file is kept while its key is in the database and not revoked;
/// otherwise (deleted, revoked, another database) a new key replaces it.
pub async fn ensure_up_key(engine: &EngineConfig) -> Result<UpKey, TokenError> {
    let path = engine.data_dir.join("admin.key");
    let store = open_store(engine).await?;
    let existing = std::fs::read_to_string(&path).ok();
    if let Some((id, _)) = existing.as_deref().and_then(|key| parse_key(key.trim())) {
        let now_ms = aragora_auth::unix_now() * 1000;
        let usable = store.find_key(id).await?.is_some_and(|key| {
            key.revoked_at_ms.is_none() && key.expires_at_ms.is_none_or(|at| at > now_ms)
        });
        if usable {
            store.close().await;
            return Ok(UpKey {
                path,
                created: None,
            });
        }
    }
    let issued = create_key(&store, "up-admin", Role::Admin, None, "up").await;
    store.close().await;
    let issued = issued?;
    aragora_config::files::write_private(
        &path,
        &format!("{}\n", issued.key),
        aragora_config::files::Existing::Replace,
    )
    .map_err(|source| TokenError::KeyFile {
        path: path.clone(),
        source,
    })?;
    Ok(UpKey {
        path,
        created: Some(issued.key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_a_unit_and_stay_bounded() {
        assert_eq!(parse_ttl("30s"), Ok(30));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("30d"), Ok(30 * 86400));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("1w"), Ok(7 * 86400));
        for bad in [
            "",
            "0s",
            "1x",
            "h",
            "1.5h",
            "53w",
            "-1h",
            "366d",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_key_is_named_by_its_id_its_prefix_or_itself() {
        let issued = generate_key("x", Role::Reader, None, "cli");
        let id = issued.stored.id.as_str();
        assert_eq!(key_id(id), id);
        assert_eq!(key_id(&issued.stored.prefix()), id);
        assert_eq!(key_id(&issued.key), id);
    }
}
