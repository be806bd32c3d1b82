//! The ECS task definitions in `terraform/` against the binaries' real configuration:
//! every `.tf` file parses as HCL; each container's command names a binary the
//! Dockerfiles install, its flags exist, and every environment variable and secret it
//! sets is one the binary reads (clap's `env` names, or a secret read from the
//! environment only). A renamed flag or variable fails here. The NATS containers set
//! every variable the shipped nats.conf reads. The bot token is a secret of the
//! gateway and the REST proxy only, and the command and sync workers send through the
//! proxy; every worker reads the database URL from a secret.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use hcl::expr::{Expression, ObjectKey};
use hcl::{Body, Structure};

/// Every worker binary the worker image ships.
const WORKER_BINARIES: [&str; 4] = [
    "shardline-event-worker",
    "shardline-command-worker",
    "shardline-eligibility-worker",
    "shardline-sync-worker",
];

/// Read by tracing-subscriber's `EnvFilter`, not by clap.
const LOG_FILTER_ENV: &str = "RUST_LOG";

fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform")
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            tf_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
}

/// A container definition found in the HCL: its command and the names it sets.
#[derive(Debug, Default)]
struct Container {
    file: String,
    command: Vec<String>,
    health: Vec<String>,
    env: BTreeSet<String>,
}

fn key_name(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Identifier(id) => Some(id.to_string()),
        ObjectKey::Expression(Expression::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn strings(expr: &Expression) -> Vec<String> {
    match expr {
        Expression::Array(items) => items
            .iter()
            .filter_map(|e| match e {
                Expression::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Every `name = "..."` in objects anywhere under `expr`.
fn names(expr: &Expression, out: &mut BTreeSet<String>) {
    visit(expr, &mut |e| {
        if let Expression::Object(object) = e {
            for (key, value) in object {
                if let (Some("name"), Expression::String(name)) = (key_name(key).as_deref(), value)
                {
                    out.insert(name.clone());
                }
            }
        }
    });
}

fn visit(expr: &Expression, f: &mut dyn FnMut(&Expression)) {
    f(expr);
    match expr {
        Expression::Array(items) => items.iter().for_each(|e| visit(e, f)),
        Expression::Object(object) => {
            for (key, value) in object {
                if let ObjectKey::Expression(k) = key {
                    visit(k, f);
                }
                visit(value, f);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|e| visit(e, f)),
        Expression::Parenthesis(inner) => visit(inner, f),
        Expression::Conditional(c) => {
            visit(&c.cond_expr, f);
            visit(&c.true_expr, f);
            visit(&c.false_expr, f);
        }
        Expression::ForExpr(for_expr) => {
            visit(&for_expr.collection_expr, f);
            if let Some(key) = &for_expr.key_expr {
                visit(key, f);
            }
            visit(&for_expr.value_expr, f);
        }
        _ => {}
    }
}

fn body_expressions<'a>(body: &'a Body, out: &mut Vec<&'a Expression>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attribute) => out.push(&attribute.expr),
            Structure::Block(block) => body_expressions(&block.body, out),
        }
    }
}

/// Every container definition (an object with a `command` or `image`) in the module.
fn containers() -> Vec<Container> {
    let mut files = Vec::new();
    tf_files(&terraform_dir(), &mut files);
    assert!(files.len() >= 8, "terraform/ has its .tf files: {files:?}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let body: Body =
            hcl::parse(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut exprs = Vec::new();
        body_expressions(&body, &mut exprs);
        for expr in exprs {
            visit(expr, &mut |e| {
                let Expression::Object(object) = e else {
                    return;
                };
                let field = |name: &str| {
                    object
                        .iter()
                        .find(|(k, _)| key_name(k).as_deref() == Some(name))
                        .map(|(_, v)| v)
                };
                if field("essential").is_none() || field("image").is_none() {
                    return;
                }
                let mut container = Container {
                    file: file.display().to_string(),
                    ..Container::default()
                };
                if let Some(command) = field("command") {
                    container.command = strings(command);
                }
                if let Some(Expression::Object(health)) = field("healthCheck") {
                    for (k, v) in health {
                        if key_name(k).as_deref() == Some("command") {
                            container.health = strings(v);
                        }
                    }
                }
                for key in ["environment", "secrets"] {
                    if let Some(list) = field(key) {
                        names(list, &mut container.env);
                    }
                }
                found.push(container);
            });
        }
    }
    found
}

/// What a binary accepts: its long flags and the environment variables it reads.
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn from_clap(command: &clap::Command) -> Accepts {
    let mut accepts = Accepts {
        flags: BTreeSet::new(),
        env: BTreeSet::new(),
    };
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            accepts.flags.insert(format!("--{long}"));
        }
        if let Some(env) = arg.get_env() {
            accepts.env.insert(env.to_string_lossy().into_owned());
        }
    }
    accepts
}

/// A worker binary's flags and variables, from its own `--help` (clap prints
/// `[env: NAME=]` for every variable).
fn from_help(binary: &str) -> Accepts {
    let path = match binary {
        "shardline-event-worker" => env!("CARGO_BIN_EXE_shardline-event-worker"),
        "shardline-command-worker" => env!("CARGO_BIN_EXE_shardline-command-worker"),
        "shardline-eligibility-worker" => env!("CARGO_BIN_EXE_shardline-eligibility-worker"),
        "shardline-sync-worker" => env!("CARGO_BIN_EXE_shardline-sync-worker"),
        other => panic!("no worker binary {other}"),
    };
    let output = Command::new(path).arg("--help").output().unwrap();
    assert!(output.status.success(), "{binary} --help");
    let help = String::from_utf8(output.stdout).unwrap();
    let mut accepts = Accepts {
        flags: BTreeSet::new(),
        env: BTreeSet::new(),
    };
    for word in help.split_whitespace() {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split(['=', ' ', ',', '<']).next().unwrap_or_default();
            accepts.flags.insert(format!("--{flag}"));
        }
    }
    for part in help.split("[env: ").skip(1) {
        accepts
            .env
            .insert(part.split('=').next().unwrap().trim().to_owned());
    }
    assert!(accepts.env.contains("NATS_URL"), "{binary} --help: {help}");
    accepts
}

fn accepts(binary: &str) -> Accepts {
    let mut accepts = match binary {
        "shardline-gateway" => {
            let mut a = from_clap(&shardline_gateway::Config::command());
            a.env
                .insert(shardline_gateway::DISCORD_TOKEN_ENV.to_owned());
            a
        }
        "shardline-interactions" => from_clap(&shardline_interactions::Config::command()),
        "shardline-rest" => {
            let mut a = from_clap(&shardline_rest::Config::command());
            a.env.insert(shardline_rest::DISCORD_TOKEN_ENV.to_owned());
            a
        }
        worker => {
            let mut a = from_help(worker);
            // A secret: read from the environment only (or DATABASE_URL_FILE).
            a.env.insert(shardline_app::DATABASE_URL_ENV.to_owned());
            a
        }
    };
    accepts.env.extend(
        shardline_jetstream::SECRET_VALUE_ENVS
            .iter()
            .map(|s| (*s).to_owned()),
    );
    accepts.env.insert(LOG_FILTER_ENV.to_owned());
    accepts
}

/// What is wrong with `container`, one line each.
fn problems(container: &Container) -> Vec<String> {
    let Some(binary_path) = container.command.first() else {
        return vec![format!(
            "{}: a Shardline container without a command",
            container.file
        )];
    };
    let binary = binary_path.rsplit('/').next().unwrap();
    let accepted = accepts(binary);
    let mut problems = Vec::new();
    for flag in container.command[1..]
        .iter()
        .filter(|a| a.starts_with("--"))
    {
        let flag = flag.split('=').next().unwrap();
        if !accepted.flags.contains(flag) {
            problems.push(format!("{binary}: no flag {flag}"));
        }
    }
    for env in &container.env {
        if !accepted.env.contains(env) {
            problems.push(format!("{binary}: reads no variable {env}"));
        }
    }
    problems
}

/// Whether a Dockerfile copies a file to `path` in its runtime image.
fn installed(path: &str) -> bool {
    dockerfiles()
        .lines()
        .any(|l| l.starts_with("COPY --from=build") && l.ends_with(&format!(" {path}")))
}

fn dockerfiles() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker");
    [
        "gateway.Dockerfile",
        "worker.Dockerfile",
        "rest.Dockerfile",
        "interactions.Dockerfile",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
    .collect()
}

#[test]
fn task_definitions_match_the_binaries() {
    let all = containers();
    let shardline: Vec<&Container> = all
        .iter()
        .filter(|c| c.command.first().is_some_and(|c| c.contains("/shardline-")))
        .collect();
    let binaries: BTreeSet<&str> = shardline
        .iter()
        .map(|c| c.command[0].rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        binaries,
        BTreeSet::from([
            "shardline-gateway",
            "shardline-rest",
            "shardline-interactions"
        ]),
        "workers take their binary from var.workers; the gateway, the proxy and the interactions service are literal"
    );
    assert!(installed("/usr/local/bin/shardline-healthcheck"));
    for container in &shardline {
        assert_eq!(problems(container), Vec::<String>::new(), "{container:?}");
        assert!(
            installed(&container.command[0]),
            "a Dockerfile installs {}",
            container.command[0]
        );
        assert_eq!(
            container.health[1..],
            ["/usr/local/bin/shardline-healthcheck"]
        );
        // The healthcheck asks /healthz on one of these.
        assert!(
            container.env.contains("METRICS_ADDR") || container.env.contains("REST_LISTEN"),
            "{container:?}"
        );
        let needed: &[&str] = match container.command[0].rsplit('/').next() {
            Some("shardline-gateway" | "shardline-rest") => &["DISCORD_TOKEN"],
            _ => &["DISCORD_PUBLIC_KEY", "LISTEN_ADDR", "METRICS_ADDR"],
        };
        for needed in ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "STREAM_REPLICAS"]
            .iter()
            .chain(needed)
        {
            assert!(
                container.env.contains(*needed),
                "{} sets {needed}",
                container.command[0]
            );
        }
    }
}

/// The interactions service sits behind an ALB: the ALB must close an idle
/// connection before the task does (a task closing one the ALB is reusing is a 502),
/// so the service's header read timeout (also its keep-alive idle time) must exceed
/// the ALB's idle timeout.
#[test]
fn the_load_balancer_closes_idle_connections_before_the_task() {
    let tf = std::fs::read_to_string(terraform_dir().join("interactions.tf")).unwrap();
    let number_after = |marker: &str| -> u64 {
        let rest = &tf[tf
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in interactions.tf"))
            + marker.len()..];
        let digits: String = rest
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    let alb_idle_secs = number_after("idle_timeout =");
    let header_timeout_ms = number_after(r#""HEADER_READ_TIMEOUT_MS", value = ""#);
    assert!(
        header_timeout_ms > alb_idle_secs * 1000,
        "HEADER_READ_TIMEOUT_MS {header_timeout_ms} must exceed the ALB's idle timeout {alb_idle_secs} s"
    );
}

/// The worker containers' command is `/usr/local/bin/${each.value.binary}`: check the
/// binaries `var.workers` allows, with the variables the worker container sets.
#[test]
fn worker_task_definitions_match_the_worker_binaries() {
    let all = containers();
    let worker = all
        .iter()
        .find(|c| c.file.ends_with("workers.tf") && c.env.contains("NATS_URL"))
        .expect("the worker container in workers.tf");
    let variables = std::fs::read_to_string(terraform_dir().join("variables.tf")).unwrap();
    for binary in WORKER_BINARIES {
        assert!(
            variables.contains(&format!("\"{binary}\"")),
            "var.workers allows {binary}"
        );
        assert!(installed(&format!("/usr/local/bin/{binary}")), "{binary}");
        let container = Container {
            command: vec![format!("/usr/local/bin/{binary}")],
            ..Container {
                file: worker.file.clone(),
                command: Vec::new(),
                health: worker.health.clone(),
                env: worker.env.clone(),
            }
        };
        assert_eq!(problems(&container), Vec::<String>::new(), "{binary}");
    }
    assert_eq!(worker.health[1..], ["/usr/local/bin/shardline-healthcheck"]);
    // Every worker binary keeps its records in PostgreSQL: the URL is a secret.
    assert!(worker.env.contains("DATABASE_URL"), "{worker:?}");
    let workers = std::fs::read_to_string(terraform_dir().join("workers.tf")).unwrap();
    assert!(
        workers.contains(r#"{ name = "DATABASE_URL", valueFrom = var.database_url_secret_arn }"#)
    );
}

#[test]
fn a_renamed_variable_or_flag_is_caught() {
    let container = Container {
        file: "test".to_owned(),
        command: vec![
            "/usr/local/bin/shardline-gateway".to_owned(),
            "--shard-idz=0-3".to_owned(),
        ],
        health: Vec::new(),
        env: BTreeSet::from(["NATS_URL".to_owned(), "SHARD_IDZ".to_owned()]),
    };
    assert_eq!(
        problems(&container),
        vec![
            "shardline-gateway: no flag --shard-idz".to_owned(),
            "shardline-gateway: reads no variable SHARD_IDZ".to_owned(),
        ]
    );
    let worker = Container {
        command: vec!["/usr/local/bin/shardline-event-worker".to_owned()],
        env: BTreeSet::from(["DISCORD_TOKEN".to_owned()]),
        ..container
    };
    assert_eq!(
        problems(&worker),
        vec!["shardline-event-worker: reads no variable DISCORD_TOKEN".to_owned()]
    );
}

#[test]
fn nats_containers_set_what_the_shipped_config_reads() {
    let all = containers();
    let nats = all
        .iter()
        .find(|c| c.env.contains("NATS_SERVER_NAME"))
        .expect("the NATS container");
    let module =
        std::fs::read_to_string(terraform_dir().join("modules/nats-node/main.tf")).unwrap();
    let nats_tf = std::fs::read_to_string(terraform_dir().join("nats.tf")).unwrap();
    assert!(nats_tf.contains(r#"file("${path.module}/nats/nats.conf")"#));
    let config = std::fs::read_to_string(shardline_testkit::shipped_nats_config()).unwrap();
    for var in shardline_testkit::CONFIG_ENV {
        assert!(config.contains(&format!("${var}")), "nats.conf reads {var}");
        // Plain variables are in `environment`; passwords come from the secret map.
        assert!(
            nats.env.contains(var) || module.contains(&format!("{var} ")),
            "the NATS task sets {var}"
        );
    }
    assert!(nats.env.contains("NATS_CONFIG"));
}

/// The expression of `locals { name = ... }` in `file` (under terraform/).
fn local_value(file: &str, name: &str) -> Expression {
    let text = std::fs::read_to_string(terraform_dir().join(file)).unwrap();
    let body: Body = hcl::parse(&text).unwrap();
    body.blocks()
        .filter(|b| b.identifier() == "locals")
        .flat_map(|b| b.body().attributes())
        .find(|a| a.key() == name)
        .map(|a| a.expr().clone())
        .unwrap_or_else(|| panic!("{file} has no local {name}"))
}

/// Variables only one worker binary gets (`local.worker_binary_env` in workers.tf)
/// are read by that binary; the command worker sends through the REST proxy; no
/// worker holds the bot token, the proxy does.
#[test]
fn the_bot_token_is_the_proxys_and_the_command_worker_sends_through_it() {
    let Expression::Object(by_binary) = local_value("workers.tf", "worker_binary_env") else {
        panic!("worker_binary_env is a map");
    };
    for (binary, list) in &by_binary {
        let binary = key_name(binary).expect("a binary name");
        let mut env = BTreeSet::new();
        names(list, &mut env);
        let container = Container {
            file: "workers.tf".to_owned(),
            command: vec![format!("/usr/local/bin/{binary}")],
            health: Vec::new(),
            env,
        };
        assert_eq!(problems(&container), Vec::<String>::new(), "{binary}");
    }
    let workers = std::fs::read_to_string(terraform_dir().join("workers.tf")).unwrap();
    assert!(workers.contains(r#"{ name = "DISCORD_API_URL", value = local.rest_url }"#));
    for binary in ["shardline-command-worker", "shardline-sync-worker"] {
        let key = ObjectKey::Expression(Expression::String(binary.to_owned()));
        assert!(
            by_binary.contains_key(&key),
            "{binary} sends through the proxy"
        );
    }
    let rest = std::fs::read_to_string(terraform_dir().join("rest.tf")).unwrap();
    assert!(rest.contains(
        r#"rest_url  = "http://rest.${var.service_discovery_namespace}:${local.rest_port}""#
    ));
    let all = containers();
    let worker = all
        .iter()
        .find(|c| c.file.ends_with("workers.tf") && c.env.contains("NATS_URL"))
        .expect("the worker container");
    assert!(
        !worker.env.contains("DISCORD_TOKEN"),
        "workers hold no bot token"
    );
    let proxy = all
        .iter()
        .find(|c| {
            c.command
                .first()
                .is_some_and(|c| c.ends_with("/shardline-rest"))
        })
        .expect("the REST proxy container");
    assert!(proxy.env.contains("DISCORD_TOKEN") && proxy.env.contains("REST_LISTEN"));
}
