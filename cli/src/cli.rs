//! The command-line definitions, kept in one place so that shell completions and the manual
//! page are generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

const EXIT_CODES: &str =
    "Exit codes: 0 success, 1 error, 2 the vault is sealed or the command line is wrong.";

/// The command-line client of vaultd
#[derive(Parser)]
#[command(name = "vaultctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Connection settings.
    #[command(flatten)]
    pub connection: Connection,

    /// Output: a table for people, the API's JSON, or NAME=value lines for shells.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Print only this field's bare value, for scripts.
    #[arg(long, global = true, value_name = "NAME")]
    pub field: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the vault. Flags override the environment.
#[derive(Args, Clone)]
pub struct Connection {
    /// The vault's address, https://host:port [env: VAULT_ADDR].
    #[arg(long, global = true, value_name = "URL")]
    pub address: Option<String>,

    /// A CA certificate (PEM) to verify the vault's certificate with [env: VAULT_CACERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// A client certificate (PEM) for mutual TLS [env: VAULT_CLIENT_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// The client certificate's key (PEM) [env: VAULT_CLIENT_KEY].
    #[arg(long, global = true, value_name = "FILE")]
    pub client_key: Option<PathBuf>,

    /// Accept any server certificate. Anyone on the path can then read every secret and
    /// token sent; only for throwaway test set-ups.
    #[arg(long, global = true)]
    pub dangerous_skip_tls_verify: bool,
}

/// Output formats.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// The API's JSON data.
    Json,
    /// NAME=value lines, shell-quoted.
    Env,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Show whether the vault is initialised and sealed.
    #[command(after_help = "Example: vaultctl status\n\nExit code 2 means the vault is sealed.")]
    Status,

    /// Initialise, unseal and seal the vault.
    #[command(subcommand)]
    Operator(Operator),

    /// Save a token for later commands (to a 0600 file in your config directory).
    #[command(
        after_help = "Examples:\n  vaultctl login                                  (asks for the token without echo)\n  vaultctl login - < token.txt\n  vaultctl login --method userpass --username alice   (asks for the password)\n  VAULT_CLIENT_CERT=svc.pem VAULT_CLIENT_KEY=svc.key vaultctl login --method cert"
    )]
    Login {
        /// `-` to read the token (or, with userpass, the password) from standard input,
        /// `@file` to read it from a file; otherwise it is asked for.
        #[arg(value_name = "-|@FILE")]
        stdin: Option<String>,
        /// How to log in: with a token, or a user name and password.
        #[arg(long, value_enum, default_value_t = LoginMethod::Token)]
        method: LoginMethod,
        /// The user name, for `--method userpass`.
        #[arg(long, required_if_eq("method", "userpass"))]
        username: Option<String>,
        /// The cert role to log in through, for `--method cert` (default: any that takes
        /// the certificate).
        #[arg(long)]
        role: Option<String>,
    },

    /// Forget the saved token.
    #[command(after_help = "Example: vaultctl logout")]
    Logout,

    /// Write a new version of a KV secret.
    #[command(
        after_help = "Examples:\n  vaultctl put secret/openai/prod api_key          (asks for the value without echo)\n  vaultctl put secret/openai/prod api_key=- < key.txt\n  vaultctl put secret/app/db password=@password.txt user=app\n\nA value typed as key=value is visible to other users of this machine while the command runs; prefer a prompt, - or @file for secrets."
    )]
    Put {
        /// The secret's path, including its mount (secret/…).
        path: String,
        /// Fields: key (asked for), key=- (standard input), key=@file, or key=value.
        #[arg(required = true, value_name = "KEY[=VALUE]")]
        fields: Vec<String>,
        /// Write only if the current version is this one (0: only if the secret is new).
        #[arg(long)]
        cas: Option<u64>,
    },

    /// Read a KV secret.
    #[command(
        after_help = "Examples:\n  vaultctl get secret/openai/prod\n  vaultctl get secret/openai/prod --field api_key\n  vaultctl get secret/openai/prod --version 2 --format json\n  vaultctl get secret/openai/prod --wrap-ttl 5m --field token   (a single-use wrapping token instead)"
    )]
    Get {
        /// The secret's path.
        path: String,
        /// Read this version instead of the latest.
        #[arg(long)]
        version: Option<u64>,
        /// Wrap the secret for this long (e.g. 5m): print a single-use wrapping token for
        /// `vaultctl unwrap` instead of the secret.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wrap_ttl: Option<std::time::Duration>,
    },

    /// Print what a response-wrapping token holds (the token works once).
    #[command(
        after_help = "Examples:\n  vaultctl unwrap                 (asks for the token without echo)\n  vaultctl unwrap - < wrapped.txt\n  vaultctl unwrap @wrapped.txt --field api_key"
    )]
    Unwrap {
        /// `-` to read the wrapping token from standard input, `@file` to read it from a
        /// file; otherwise it is asked for.
        #[arg(value_name = "-|@FILE")]
        stdin: Option<String>,
    },

    /// List the secrets under a path.
    #[command(after_help = "Example: vaultctl list secret/openai/")]
    List {
        /// The directory path.
        prefix: String,
    },

    /// Soft-delete versions of a secret (the latest when no version is given).
    #[command(
        after_help = "Examples:\n  vaultctl delete secret/app/db\n  vaultctl delete secret/app/db --versions 1,2"
    )]
    Delete(Versions),

    /// Bring back soft-deleted versions.
    #[command(after_help = "Example: vaultctl undelete secret/app/db --versions 3")]
    Undelete(RequiredVersions),

    /// Destroy versions for good.
    #[command(after_help = "Example: vaultctl destroy secret/app/db --versions 1")]
    Destroy(RequiredVersions),

    /// Show a secret's versions and metadata.
    #[command(after_help = "Example: vaultctl versions secret/app/db")]
    Versions {
        /// The secret's path.
        path: String,
    },

    /// Rotate a secret now by its rotation policy, or the keyring with --keyring.
    #[command(
        after_help = "Examples:\n  vaultctl rotate secret/openai/prod\n  vaultctl rotate --keyring"
    )]
    Rotate {
        /// The secret's path (mount included).
        #[arg(required_unless_present = "keyring", conflicts_with = "keyring")]
        path: Option<String>,
        /// Add a key term and rewrap every data key in the background.
        #[arg(long)]
        keyring: bool,
    },

    /// Set, show and list rotation policies.
    #[command(subcommand)]
    Rotation(RotationCommand),

    /// Encrypt, decrypt, sign and verify with transit keys.
    ///
    /// The keys never leave the vault. Plaintext and input to sign are read as they are, from
    /// standard input or a file, never from the command line.
    Transit(Transit),

    /// Create, look up and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),

    /// Write, read, list and delete ACL policies.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// Verify and read audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Run a command with secrets in its environment.
    #[command(
        after_help = "Example:\n  vaultctl exec --env OPENAI_API_KEY=secret/openai/prod#api_key -- ./server --port 8080\n\nEvery value is fetched before the command starts; if one is missing the command does not start.\nThe command replaces vaultctl, so signals and the exit code are its own."
    )]
    Exec {
        /// NAME=path#field, repeatable.
        #[arg(long = "env", required = true, value_name = "NAME=PATH#FIELD")]
        env: Vec<String>,
        /// Log in first with the client certificate of VAULT_CLIENT_CERT and
        /// VAULT_CLIENT_KEY (`cert`) instead of using VAULT_TOKEN; the token is used for the
        /// reads only, never saved or passed on.
        #[arg(long, value_name = "METHOD", value_parser = ["cert"])]
        login: Option<String>,
        /// How long to wait for a sealed or unreachable vault, in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },

    /// Print a shell completion script.
    #[command(after_help = "Example: vaultctl completions bash > /etc/bash_completion.d/vaultctl")]
    Completions {
        /// The shell.
        shell: Shell,
    },

    /// Print the manual page (roff).
    #[command(after_help = "Example: vaultctl man > /usr/local/share/man/man1/vaultctl.1")]
    Man,
}

/// `operator` subcommands.
#[derive(Subcommand)]
pub enum Operator {
    /// Initialise a new vault: prints the unseal shares and the root token, once.
    #[command(after_help = "Example: vaultctl operator init --shares 5 --threshold 3")]
    Init {
        /// Shares to split the unseal key into.
        #[arg(long, default_value_t = 5)]
        shares: u8,
        /// Shares needed to unseal.
        #[arg(long, default_value_t = 3)]
        threshold: u8,
    },
    /// Submit one unseal share.
    #[command(
        after_help = "Examples:\n  vaultctl operator unseal          (asks for the share without echo)\n  vaultctl operator unseal - < share.txt"
    )]
    Unseal {
        /// `-` to read the share from standard input, `@file` to read it from a file;
        /// otherwise it is asked for.
        #[arg(value_name = "-|@FILE")]
        stdin: Option<String>,
        /// Forget the shares submitted so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal the vault now.
    #[command(after_help = "Example: vaultctl operator seal")]
    Seal,
}

/// A path and optional versions.
#[derive(Args)]
pub struct Versions {
    /// The secret's path.
    pub path: String,
    /// Versions, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub versions: Vec<u64>,
}

/// A path and required versions.
#[derive(Args)]
pub struct RequiredVersions {
    /// The secret's path.
    pub path: String,
    /// Versions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub versions: Vec<u64>,
}

/// `rotation` subcommands.
#[derive(Subcommand)]
pub enum RotationCommand {
    /// Set a secret's rotation policy.
    #[command(
        after_help = "Examples:\n  vaultctl rotation set secret/app/db --method generate --period 720h --target-field password --length 40\n  vaultctl rotation set secret/openai/prod --method manual --period 2160h --grace 168h"
    )]
    Set {
        /// The secret's path (mount included).
        path: String,
        /// generate (a random value), command (an external rotator), or manual (report only).
        #[arg(long)]
        method: String,
        /// Time between rotations (Go duration: 720h, 90s).
        #[arg(long)]
        period: String,
        /// Time after a due date before the secret counts as overdue.
        #[arg(long)]
        grace: Option<String>,
        /// The field that holds the credential.
        #[arg(long, value_name = "FIELD")]
        target_field: Option<String>,
        /// generate: length of the random part.
        #[arg(long)]
        length: Option<u64>,
        /// generate: the characters to draw from.
        #[arg(long)]
        alphabet: Option<String>,
        /// generate: a fixed prefix, such as sk-.
        #[arg(long)]
        prefix: Option<String>,
        /// command: the rotator's name in vault.toml.
        #[arg(long)]
        rotator: Option<String>,
    },
    /// Show a secret's rotation policy and status.
    #[command(after_help = "Example: vaultctl rotation show secret/app/db")]
    Show {
        /// The secret's path.
        path: String,
    },
    /// List every scheduled item: path, method, last rotation, next due, state.
    #[command(after_help = "Example: vaultctl rotation list")]
    List,
    /// Delete a secret's rotation policy.
    #[command(after_help = "Example: vaultctl rotation delete secret/app/db")]
    Delete {
        /// The secret's path.
        path: String,
    },
}

/// `transit` subcommands, and the mount they use.
#[derive(Args)]
pub struct Transit {
    /// The transit mount's path.
    #[arg(long, global = true, value_name = "PATH", default_value = "transit")]
    pub mount: String,

    /// What to do.
    #[command(subcommand)]
    pub command: TransitCommand,
}

/// `transit` subcommands. Plaintext and input to sign are read as they are, a final newline
/// included, from standard input or a file: never from the command line.
#[derive(Subcommand)]
pub enum TransitCommand {
    /// Create a key; an existing key is left as it is.
    #[command(
        after_help = "Examples:\n  vaultctl transit create orders\n  vaultctl transit create releases --type ed25519\n  vaultctl transit create tenants --derived      (each --context gets a key of its own)"
    )]
    Create {
        /// The key's name.
        name: String,
        /// The key's type: an AEAD to encrypt with, ed25519 or ecdsa-p256 to sign with, or hmac.
        #[arg(long = "type", value_enum, default_value_t = TransitKeyType::Aes256Gcm96)]
        key_type: TransitKeyType,
        /// Derive a key per --context (encryption keys only).
        #[arg(long)]
        derived: bool,
    },
    /// Encrypt standard input or a file; prints the ciphertext (vault:vN:…).
    #[command(
        after_help = "Examples:\n  vaultctl transit encrypt orders < card.txt\n  vaultctl transit encrypt orders --plaintext-file card.txt\n  vaultctl transit encrypt tenants --context tenant-42 < value.txt"
    )]
    Encrypt {
        /// The key's name.
        name: String,
        /// Read the plaintext from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        plaintext_file: Option<PathBuf>,
        /// The context of a derived key (text; sent base64-encoded).
        #[arg(long, value_name = "TEXT")]
        context: Option<String>,
    },
    /// Decrypt a ciphertext; writes the plaintext as it is (--format json: base64).
    #[command(
        after_help = "Examples:\n  vaultctl transit decrypt orders vault:v1:8SDd3WHDOjf7mq69…  > card.txt\n  vaultctl transit encrypt orders < card.txt | vaultctl transit decrypt orders"
    )]
    Decrypt {
        /// The key's name.
        name: String,
        /// The ciphertext; read from standard input when not given.
        ciphertext: Option<String>,
        /// The context the ciphertext was made with.
        #[arg(long, value_name = "TEXT")]
        context: Option<String>,
    },
    /// Re-encrypt a ciphertext with the key's latest version, without showing the plaintext.
    #[command(after_help = "Example: vaultctl transit rewrap orders vault:v1:8SDd3WHDOjf7mq69…")]
    Rewrap {
        /// The key's name.
        name: String,
        /// The ciphertext.
        ciphertext: String,
        /// The context the ciphertext was made with.
        #[arg(long, value_name = "TEXT")]
        context: Option<String>,
    },
    /// Add a key version that new encryptions and signatures use; prints its number.
    #[command(after_help = "Example: vaultctl transit rotate orders")]
    Rotate {
        /// The key's name.
        name: String,
    },
    /// Sign standard input or a file; prints the signature (vault:vN:…).
    #[command(
        after_help = "Example: vaultctl transit sign releases --input-file release.tar.gz > release.sig"
    )]
    Sign {
        /// The key's name.
        name: String,
        /// Read the input from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
    },
    /// Check a signature of standard input or a file; prints valid or invalid.
    #[command(
        after_help = "Example: vaultctl transit verify releases \"$(cat release.sig)\" --input-file release.tar.gz\n\nExit code 1 means the signature is invalid, or the check failed."
    )]
    Verify {
        /// The key's name.
        name: String,
        /// The signature (vault:vN:…).
        signature: String,
        /// Read the input from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input_file: Option<PathBuf>,
    },
}

/// Transit key types, named as the API names them.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransitKeyType {
    /// AES-256-GCM with 96-bit nonces.
    #[value(name = "aes256-gcm96")]
    Aes256Gcm96,
    /// ChaCha20-Poly1305.
    #[value(name = "chacha20-poly1305")]
    Chacha20Poly1305,
    /// XChaCha20-Poly1305, with 192-bit nonces.
    #[value(name = "xchacha20-poly1305")]
    Xchacha20Poly1305,
    /// Ed25519 signatures.
    #[value(name = "ed25519")]
    Ed25519,
    /// ECDSA signatures on P-256 with SHA-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// HMAC.
    #[value(name = "hmac")]
    Hmac,
}

/// `token` subcommands.
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (a child of yours).
    #[command(after_help = "Example: vaultctl token create --policy openai-reader --ttl 1h")]
    Create {
        /// A policy to attach; repeatable.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Time to live (90s, 1h, …).
        #[arg(long)]
        ttl: Option<String>,
        /// Uses allowed (0: unlimited).
        #[arg(long, default_value_t = 0)]
        num_uses: u64,
        /// A name for logs.
        #[arg(long)]
        display_name: Option<String>,
        /// Create without a parent (needs sudo).
        #[arg(long)]
        orphan: bool,
    },
    /// Look up your token, or one by its accessor.
    #[command(
        after_help = "Examples:\n  vaultctl token lookup\n  vaultctl token lookup --accessor 7fK2…"
    )]
    Lookup {
        /// The accessor of the token to look up.
        #[arg(long)]
        accessor: Option<String>,
    },
    /// Revoke a token by its accessor, or your own with --self; its children go too.
    #[command(
        after_help = "Examples:\n  vaultctl token revoke --accessor 7fK2…\n  vaultctl token revoke --self"
    )]
    Revoke {
        /// The accessor of the token to revoke.
        #[arg(long, conflicts_with = "self_")]
        accessor: Option<String>,
        /// Revoke the token in use.
        #[arg(long = "self")]
        self_: bool,
    },
}

/// `policy` subcommands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Write a policy from a file (HCL or JSON), or `-` for standard input.
    #[command(after_help = "Example: vaultctl policy write openai-reader openai-reader.hcl")]
    Write {
        /// The policy's name.
        name: String,
        /// The file, or `-`.
        file: PathBuf,
    },
    /// Print a policy.
    #[command(after_help = "Example: vaultctl policy read openai-reader")]
    Read {
        /// The policy's name.
        name: String,
    },
    /// List policies.
    #[command(after_help = "Example: vaultctl policy list")]
    List,
    /// Delete a policy.
    #[command(after_help = "Example: vaultctl policy delete openai-reader")]
    Delete {
        /// The policy's name.
        name: String,
    },
}

/// `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check audit files offline; names the first bad line.
    #[command(
        after_help = "Example: vaultctl audit verify --public-key \"$(vaultctl audit public-key)\" audit.log.1 audit.log"
    )]
    Verify {
        /// The audit signing public key (base64).
        #[arg(long)]
        public_key: String,
        /// The files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the audit signing public key.
    #[command(
        name = "public-key",
        after_help = "Example: vaultctl audit public-key > audit-key.txt"
    )]
    PublicKey,
    /// Show the last entries of an audit file as a table.
    #[command(after_help = "Example: vaultctl audit tail /var/log/vaultd/audit.log -n 50")]
    Tail {
        /// The audit file.
        file: PathBuf,
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
}

/// How `vaultctl login` proves who you are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoginMethod {
    /// A token you already have.
    Token,
    /// A user name and password (`auth/userpass`).
    Userpass,
    /// The client certificate of VAULT_CLIENT_CERT and VAULT_CLIENT_KEY (`auth/cert`).
    Cert,
}

/// A wrap TTL such as `90s`, `5m` or `1h30m`: whole seconds, at least one.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: use e.g. 90s, 5m or 1h30m"))?;
    if ttl.as_secs() == 0 || ttl.subsec_nanos() != 0 {
        return Err("use whole seconds, at least 1s (e.g. 90s, 5m or 1h30m)".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example() {
        fn walk(command: &clap::Command) {
            for sub in command.get_subcommands() {
                if sub.get_subcommands().next().is_some() {
                    walk(sub);
                } else if sub.get_name() != "help" {
                    let help = sub
                        .get_after_help()
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    assert!(
                        help.contains("Example"),
                        "vaultctl {} has no example",
                        sub.get_name()
                    );
                }
            }
        }
        walk(&Cli::command());
    }
}
