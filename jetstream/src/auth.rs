//! NATS credentials and TLS, one argument group every binary flattens into its flags.
//!
//! Secrets are taken from the environment or from a file, never from the command line
//! (a flag's value is visible to every user of the machine in `ps`), and never printed:
//! [`Secret`]'s `Debug` is `<redacted>`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable holding the NATS password itself (never a flag).
pub const NATS_PASSWORD_ENV: &str = "NATS_PASSWORD";

/// Every environment variable a secret *value* is read from. These are not clap
/// arguments (they have no flag); everything else a binary reads is one.
pub const SECRET_VALUE_ENVS: &[&str] = &[NATS_PASSWORD_ENV];

/// A secret string. `Debug` prints `<redacted>`; there is no `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret in `env`, if set and not blank (surrounding whitespace removed).
    pub fn from_env(env: &str) -> Option<Self> {
        std::env::var(env)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(Self)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both the variable and its `_FILE` twin are set: which one is meant is unclear.
    #[error("both {env} and {env}_FILE are set; set one")]
    Ambiguous {
        /// The variable's name.
        env: String,
    },
    /// A required secret is set nowhere.
    #[error("{env} or {env}_FILE is required")]
    Missing {
        /// The variable's name.
        env: String,
    },
    /// The file could not be read or is empty.
    #[error("reading {env}_FILE {path}: {reason}")]
    File {
        /// The variable's name.
        env: String,
        /// The file.
        path: PathBuf,
        /// Why it failed (never the content).
        reason: String,
    },
}

/// The secret `env` names: the value of `env`, or the content of `file` (the value of
/// `env` + `_FILE`), trimmed. `None` when neither is given.
///
/// # Errors
///
/// [`SecretError::Ambiguous`] if both are given, [`SecretError::File`] if the file
/// cannot be read or is empty.
pub fn secret_from_env_or_file(
    env: &str,
    value: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretError::Ambiguous {
            env: env.to_owned(),
        }),
        (Some(value), None) => Ok(Some(value)),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let file_error = |reason: String| SecretError::File {
                env: env.to_owned(),
                path: path.to_owned(),
                reason,
            };
            let content = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            let content = content.trim();
            if content.is_empty() {
                return Err(file_error("the file is empty".to_owned()));
            }
            Ok(Some(Secret(content.to_owned())))
        }
    }
}

/// How to authenticate to NATS and whether to use TLS. Flattened into each binary's
/// clap configuration; every field also reads an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct NatsAuth {
    /// NATS user name (with a password from NATS_PASSWORD or NATS_PASSWORD_FILE).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,

    /// The NATS password, read from the NATS_PASSWORD environment variable only.
    #[arg(skip = Secret::from_env(NATS_PASSWORD_ENV))]
    pub password: Option<Secret>,

    /// File holding the NATS password (instead of NATS_PASSWORD).
    #[arg(long = "nats-password-file", env = "NATS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// NATS `.creds` file (JWT and nkey seed) of a decentralised-auth user.
    #[arg(long = "nats-creds-file", env = "NATS_CREDS_FILE")]
    pub creds_file: Option<PathBuf>,

    /// File holding a user nkey seed (`SU...`).
    #[arg(long = "nats-nkey-seed-file", env = "NATS_NKEY_SEED_FILE")]
    pub nkey_seed_file: Option<PathBuf>,

    /// PEM file of the CA(s) that signed the servers' certificates.
    #[arg(long = "nats-tls-ca-file", env = "NATS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// PEM client certificate, for servers that verify clients (with NATS_TLS_KEY_FILE).
    #[arg(
        long = "nats-tls-cert-file",
        env = "NATS_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the client certificate.
    #[arg(
        long = "nats-tls-key-file",
        env = "NATS_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-tls-required", env = "NATS_TLS_REQUIRED")]
    pub tls_required: bool,
}

impl NatsAuth {
    /// User and password authentication, nothing else.
    pub fn user_password(user: &str, password: &str) -> Self {
        Self {
            user: Some(user.to_owned()),
            password: Some(Secret::new(password)),
            ..Self::default()
        }
    }

    /// The password: NATS_PASSWORD, or the content of NATS_PASSWORD_FILE.
    ///
    /// # Errors
    ///
    /// See [`secret_from_env_or_file`].
    pub fn resolved_password(&self) -> Result<Option<Secret>, SecretError> {
        secret_from_env_or_file(
            NATS_PASSWORD_ENV,
            self.password.clone(),
            self.password_file.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Binary {
        #[command(flatten)]
        auth: NatsAuth,
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let auth = NatsAuth::user_password("gateway", "hunter2-secret");
        let printed = format!("{auth:?}");
        assert!(!printed.contains("hunter2-secret"), "{printed}");
        assert!(
            printed.contains("<redacted>") && printed.contains("gateway"),
            "{printed}"
        );
    }

    #[test]
    fn the_password_is_not_a_flag() {
        assert!(Binary::try_parse_from(["bin", "--nats-password", "x"]).is_err());
        let parsed = Binary::try_parse_from([
            "bin",
            "--nats-user",
            "u",
            "--nats-password-file",
            "/run/secrets/p",
            "--nats-tls-required",
        ])
        .unwrap();
        assert_eq!(parsed.auth.user.as_deref(), Some("u"));
        assert!(parsed.auth.tls_required);
        assert!(
            Binary::try_parse_from(["bin", "--nats-tls-cert-file", "c.pem"]).is_err(),
            "a client certificate needs its key"
        );
    }

    #[test]
    fn password_from_a_file_or_the_environment_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-file\n").unwrap();
        let mut auth = NatsAuth {
            password_file: Some(path),
            ..NatsAuth::default()
        };
        assert_eq!(
            auth.resolved_password().unwrap(),
            Some(Secret::new("from-file"))
        );
        auth.password = Some(Secret::new("from-env"));
        assert!(matches!(
            auth.resolved_password(),
            Err(SecretError::Ambiguous { .. })
        ));
        auth.password_file = Some(dir.path().join("missing"));
        auth.password = None;
        let error = auth.resolved_password().unwrap_err();
        assert!(matches!(error, SecretError::File { .. }));
    }
}
