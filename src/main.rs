//! The vaultd daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;
use vaultd::config::{Config, LogFormat};
use vaultd::server::{Server, tls};
use vaultd::storage::SledStorage;
use vaultd::vault::{Vault, VaultOptions};
use vaultd::{dev, harden};

/// A TLS-only secrets vault and key-management daemon.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Run in production from this configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a development vault: local CA, one share, auto-unseal, audit log. Not for production.
    Dev {
        /// The data directory [default: $XDG_DATA_HOME/vaultd-dev].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8200")]
        listen: SocketAddr,
    },
    /// Work with audit logs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check audit files offline and name the first bad line.
    Verify {
        /// The audit signing public key (base64), from `sys/audit-public-key`.
        #[arg(long, value_name = "KEY")]
        public_key: String,
        /// The files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match (cli.command, cli.config) {
        (
            Some(Command::Audit {
                command: AuditCommand::Verify { public_key, files },
            }),
            _,
        ) => verify(&public_key, &files),
        (Some(Command::Dev { data_dir, listen }), _) => run_dev(data_dir, listen),
        (None, Some(path)) => run_production(&path),
        (None, None) => {
            Err("nothing to do: pass --config FILE for production, or run `vaultd dev`".into())
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("vaultd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn verify(public_key: &str, files: &[PathBuf]) -> Result<ExitCode, String> {
    match vaultd::audit::verify::verify(files, public_key) {
        Ok(report) => {
            println!(
                "ok: {} lines, {} signed checkpoints",
                report.lines, report.checkpoints
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            println!("FAILED: {failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_production(path: &Path) -> Result<ExitCode, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    serve(config, None)
}

fn run_dev(data_dir: Option<PathBuf>, listen: SocketAddr) -> Result<ExitCode, String> {
    let dir = match data_dir {
        Some(dir) => dir,
        None => dev::default_dir()?,
    };
    let (config, paths) = dev::prepare(&dir, listen)?;
    serve(config, Some(paths))
}

fn serve(config: Config, dev: Option<dev::DevPaths>) -> Result<ExitCode, String> {
    init_logging(&config)?;
    if let Err(e) = harden::no_core_dumps() {
        tracing::warn!(error = %e, "running with core dumps possible");
    }
    if !config.security.disable_mlock {
        match harden::lock_memory() {
            Ok(()) => tracing::info!("memory locked against swapping"),
            Err(e) => tracing::warn!(error = %e, "memory is not locked: keys may reach swap"),
        }
    }
    if harden::running_as_root() && !config.security.allow_root {
        return Err(
            "refusing to run as root; run as a dedicated user, or set security.allow_root = true"
                .into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run(config, dev))
}

async fn run(config: Config, dev: Option<dev::DevPaths>) -> Result<ExitCode, String> {
    let storage = SledStorage::open(&config.storage.path).map_err(|e| e.to_string())?;
    let options = VaultOptions {
        seal: config.seal_mechanism(),
        keyring: vaultd::keyring::KeyringConfig {
            algorithm: config.crypto.aead,
            wear_limit: config.crypto.key_term_wear_limit,
        },
        audit: config.audit.clone(),
        limits: config.limits.clone(),
        allow_init_from_any_address: config.security.allow_init_from_any_address,
        rotators: config.rotators.clone(),
        transit_encryption_limit: config.crypto.transit_encryptions_per_key_version,
    };
    let vault = Arc::new(Vault::new(Arc::new(storage), options));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let listener_config = &config.listener;
    let certificates = Arc::new(tls::CertificateStore::load(
        &listener_config.tls_cert_file,
        &listener_config.tls_key_file,
        Arc::clone(&provider),
    )?);
    let server_config = tls::server_config(
        Arc::clone(&certificates),
        listener_config.tls_client_ca_file.as_deref(),
        provider,
    )?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind(listener_config.address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", listener_config.address))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    let setup_vault = Arc::clone(&vault);
    let dev_for_setup = dev.clone();
    tokio::task::spawn_blocking(move || start_up(&setup_vault, dev_for_setup.as_ref(), local))
        .await
        .map_err(|e| e.to_string())??;

    // The scheduler: every timed job (keyring and secret rotations, rewraps) runs from here,
    // on its own thread, about twice a second while the vault is unsealed.
    let scheduled = Arc::clone(&vault);
    std::thread::Builder::new()
        .name("vaultd-scheduler".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                scheduled.rotation_tick(std::time::SystemTime::now());
            }
        })
        .map_err(|e| format!("cannot start the scheduler: {e}"))?;

    tracing::info!(address = %local, "listening");
    let server = Server::new(Arc::clone(&vault), config.limits.clone());
    let serving = tokio::spawn(server.serve(listener, acceptor));

    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match certificates.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one"),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    serving.abort();
    let closing = Arc::clone(&vault);
    let _ = tokio::task::spawn_blocking(move || closing.seal_now()).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Initialises and unseals a dev vault, or unseals a key file vault that is initialised.
fn start_up(vault: &Vault, dev: Option<&dev::DevPaths>, local: SocketAddr) -> Result<(), String> {
    let config = vault.seal().config().map_err(|e| e.to_string())?;
    let key_file = config
        .as_ref()
        .is_some_and(|c| c.seal_type == vaultd::seal::SealType::Keyfile);
    let Some(dev) = dev else {
        if key_file {
            vault.unseal_with_key_file().map_err(|e| e.to_string())?;
        }
        return Ok(());
    };
    if config.is_some() {
        vault.unseal_with_key_file().map_err(|e| e.to_string())?;
    } else {
        let initialized = vault.initialize(1, 1).map_err(|e| e.to_string())?;
        if let Some(warning) = initialized.warnings.first() {
            return Err(warning.clone());
        }
        dev::write_file(
            &dev.root_token,
            format!("{}\n", initialized.root_token.as_str()).as_bytes(),
            0o600,
        )?;
    }
    let root = zeroize::Zeroizing::new(
        std::fs::read_to_string(&dev.root_token)
            .map_err(|e| format!("cannot read {}: {e}", dev.root_token.display()))?,
    );
    eprintln!(
        "vaultd: DEVELOPMENT MODE. The unseal key and the root token are kept in plain files in"
    );
    eprintln!(
        "vaultd: {}. Do not use this for real secrets.",
        dev.dir.display()
    );
    println!("export VAULT_ADDR='https://{local}'");
    println!("export VAULT_CACERT='{}'", dev.ca_cert.display());
    println!("export VAULT_TOKEN='{}'", root.trim());
    Ok(())
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .map_err(|e| format!("log.level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
