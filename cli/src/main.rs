//! `keyfleet`: the command line. `run`, `plan` and `rotate` invoke the
//! deployed coordinator and follow the run to its report (or, with
//! `--local`, run the coordinator and the agents in this process); `report`
//! reads stored reports; `keygen` makes the coordinator's key pair;
//! `credential-process` hands a program its user's current key. With
//! the `emulator` feature (on by default), `demo`, `bootstrap` and `bench`
//! run the whole system on the embedded AWS emulator.
//!
//! This file parses and dispatches; each command has its own module.

mod aws;
mod config;
mod credential_process;
mod deployed;
mod doctor;
mod errors;
mod init;
mod keygen;
mod local;
mod progress;
mod report;
mod runs;
mod serve;

#[cfg(feature = "emulator")]
mod bench;
#[cfg(feature = "emulator")]
mod bench_finalize;
#[cfg(feature = "emulator")]
mod bootstrap;
#[cfg(feature = "emulator")]
mod cost;
#[cfg(feature = "emulator")]
mod demo;
#[cfg(feature = "emulator")]
mod fault_run;
#[cfg(feature = "emulator")]
mod lambda;
#[cfg(feature = "emulator")]
mod policy_template;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::Config;
use keyfleet_protocol::command::Command as Coordinate;
use runs::{Mode, Output};
use std::path::PathBuf;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(
    name = "keyfleet",
    version,
    about = "Rotates the access keys of IAM users across an AWS Organization"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, default_value = "keyfleet.toml")]
    config: PathBuf,
    /// AWS endpoint (an emulator); overrides [aws] endpoint_url.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One full cycle: the deployed coordinator starts a run, the agents
    /// apply the rules, and the report is printed when the run finalizes.
    Run {
        /// Change nothing; report what a run would do.
        #[arg(long)]
        dry_run: bool,
        /// Only these accounts (comma-separated ids).
        #[arg(long, value_delimiter = ',')]
        accounts: Option<Vec<String>>,
        /// Print the consolidated report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Run the coordinator and the agents in this process, through a
        /// role assumed in each account ([org] agent_role), instead of the
        /// deployment.
        #[arg(long)]
        local: bool,
    },
    /// What a run would do, user by user, changing nothing.
    Plan {
        /// Evaluate as of this instant (RFC 3339, or YYYY-MM-DD).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_delimiter = ',')]
        accounts: Option<Vec<String>>,
        #[arg(long)]
        json: bool,
        /// In this process instead of the deployment (see `run --local`).
        #[arg(long)]
        local: bool,
    },
    /// Check the deployment the configuration names, read-only: each check
    /// PASS, WARN or FAIL with what it saw and the fix. Exits 3 when a
    /// check failed (warnings allowed), 1 when it could not run.
    Doctor {
        /// The checks as a JSON array on stdout.
        #[arg(long)]
        json: bool,
        /// Read the agent StackSet as its delegated administrator
        /// (`DELEGATED_ADMIN`) rather than as its owner (`SELF`).
        #[arg(long, value_name = "SELF|DELEGATED_ADMIN")]
        call_as: Option<String>,
    },
    /// Write keyfleet.toml for a deployment, from `terraform output -json`
    /// on standard input (or answers to two questions on a terminal), then
    /// run `doctor` on it.
    Init {
        /// The coordinator's Region (default: the function ARN's, or
        /// AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
        /// Do not run `doctor` afterwards.
        #[arg(long)]
        no_doctor: bool,
    },
    /// Read a stored report.
    Report {
        /// Run id, or `latest`.
        #[arg(long, default_value = "latest")]
        run: String,
        #[arg(long, value_enum, default_value_t = report::Format::Table)]
        format: report::Format,
    },
    /// Emergency rotation of one user: a new key now. Exits non-zero when
    /// the agent refused or failed the rotation, with its reason.
    Rotate {
        #[arg(long)]
        account: String,
        #[arg(long)]
        user: String,
        /// Deactivate the old key at once (default: it stays active).
        #[arg(long)]
        deactivate_old: bool,
        /// The access key to replace; required when the user has two
        /// active keys.
        #[arg(long = "key", value_name = "KEY_ID")]
        key_id: Option<String>,
        /// In this process instead of the deployment (see `run --local`).
        #[arg(long)]
        local: bool,
    },
    /// Switch a key keyfleet deactivated back to Active (an application
    /// broke), while it has not been deleted. The key gets a fresh notice
    /// period before it is deactivated again; the owner is told. Exits
    /// non-zero when the agent refused (say, the key was deleted).
    Reactivate {
        #[arg(long)]
        account: String,
        #[arg(long)]
        user: String,
        /// The access key to switch back on.
        #[arg(long = "key", value_name = "KEY_ID")]
        key_id: String,
        /// In this process instead of the deployment (see `run --local`).
        #[arg(long)]
        local: bool,
    },
    /// The security team's REST API and dashboard on a local port: reads
    /// the report bucket, starts rotations through the deployed
    /// coordinator, with the keys of [api]. Prints `listening on
    /// http://ADDR` once bound.
    Serve {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Make every AWS call under this role (the API's role); overrides
        /// [api] role_arn.
        #[arg(long, value_name = "ARN")]
        role_arn: Option<String>,
    },
    /// API keys of the REST API.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Add a new coordinator key pair to the key ring in Secrets Manager
    /// (the previous keys stay until retired) and print its public key and
    /// key id for the agents.
    Keygen {
        /// Secret holding the key ring (name or ARN; created if missing).
        #[arg(long, alias = "secret-arn")]
        secret_id: String,
    },
    /// Remove a coordinator key from the key ring once no agent seals to it
    /// (checked on the agent StackSet); boxes sealed to it no longer open.
    RetireKey {
        /// The key id to retire (`kf-...`).
        key_id: String,
        /// Secret holding the key ring (name or ARN).
        #[arg(long, alias = "secret-arn")]
        secret_id: String,
        /// The agent StackSet whose parameters and instances are checked.
        #[arg(long, default_value = keygen::DEFAULT_STACK_SET)]
        stack_set: String,
        /// Retire without checking the StackSet.
        #[arg(long)]
        force: bool,
    },
    /// For `credential_process` in `~/.aws/config`: prints the IAM user's
    /// current key from its keyfleet delivery secret (Secrets Manager
    /// delivery), read with the key it last obtained, so a program follows
    /// each rotation by itself. Run once with `--init` to store the user's
    /// current key. Reads no configuration file.
    CredentialProcess {
        /// The IAM user whose key it serves.
        #[arg(long)]
        user: String,
        /// The delivery secret (default `keyfleet/<user>`).
        #[arg(long)]
        secret_id: Option<String>,
        /// The region of the user's delivery secret (default AWS_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Where the keys are kept (default
        /// ~/.config/keyfleet/credential-process/<user>.json).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Store the user's current key (from AWS_ACCESS_KEY_ID and
        /// AWS_SECRET_ACCESS_KEY, or pasted), checked with STS.
        #[arg(long)]
        init: bool,
    },
    /// Run the whole system on the embedded emulator: organization, the
    /// coordinator and the agents deployed as Lambdas, three cycles
    /// (rotate, deactivate, delete) started by the coordinator's schedule.
    #[cfg(feature = "emulator")]
    Demo {
        /// Where to write the HTML reports.
        #[arg(long, default_value = "keyfleet-demo")]
        out: PathBuf,
    },
    /// Deploy keyfleet into an emulator (what Terraform does in AWS): the
    /// coordinator's resources and Lambda, and the agent StackSet.
    #[cfg(feature = "emulator")]
    Bootstrap,
    /// Benchmark: a full `--local` cycle on emulated organizations of each
    /// size, printing accounts/s, IAM calls per account, wall time, peak
    /// memory.
    #[cfg(feature = "emulator")]
    Bench {
        /// Organization sizes (accounts), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
        accounts: Vec<usize>,
        /// Users per account.
        #[arg(long, default_value_t = 50)]
        users: usize,
        /// Instead: the fault run over this many accounts (the deployed
        /// system under IAM, SQS, SES and S3 faults, against a clean run).
        #[arg(long, value_name = "ACCOUNTS")]
        faults: Option<usize>,
        /// Instead: the coordinator's finalize alone, in a process of its
        /// own, on runs of these sizes (`10x50,100x100,500x100`): peak
        /// memory, time, report sizes.
        #[arg(long, value_name = "SIZES")]
        finalize: Option<String>,
    },
    /// One finalize of `keyfleet bench --finalize`, in its own process.
    #[cfg(feature = "emulator")]
    #[command(hide = true)]
    BenchFinalize { run_id: String },
    /// The Lambda bootstrap of the emulator's functions.
    #[cfg(feature = "emulator")]
    #[command(hide = true)]
    Lambda {
        #[arg(value_enum)]
        function: lambda::Function,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Make a key: prints it once, and the entry (its hash) to add under
    /// [api] or to the deployed API's keys secret.
    New {
        /// Who holds the key (logs name it).
        #[arg(long)]
        id: String,
        /// `read`, `rotate` (rotation and reactivation) or both, comma-separated.
        #[arg(long, default_value = "read")]
        scopes: String,
    },
}

fn parse_as_of(s: &str) -> Result<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339))
        .with_context(|| format!("--as-of `{s}` is neither RFC 3339 nor YYYY-MM-DD"))
}

/// The exit code: 0, [`runs::EXIT_UNSERVED`] for a run that finished with
/// some accounts unserved, 1 for any other error, printed in two lines at
/// most (see [`errors`]).
fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<doctor::ChecksFailed>().is_some() => {
            eprintln!("keyfleet: {e}");
            std::process::ExitCode::from(doctor::EXIT_FAILED)
        }
        Err(e) if e.downcast_ref::<runs::Unserved>().is_some() => {
            eprintln!("keyfleet: {e}");
            std::process::ExitCode::from(runs::EXIT_UNSERVED)
        }
        Err(e) => {
            tracing::debug!(error = ?e, "the command failed");
            eprintln!("{}", errors::render(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    #[cfg(feature = "emulator")]
    if let Command::Lambda { function } = cli.command {
        // A Lambda process: no configuration file, JSON logs of its own.
        return runtime
            .block_on(lambda::run(function))
            .map_err(|e| anyhow::anyhow!("{e}"));
    }
    if let Command::CredentialProcess {
        user,
        secret_id,
        region,
        store,
        init,
    } = cli.command
    {
        // No configuration file and no logs: standard output is the SDK's,
        // standard error the user's, and neither may carry anything else.
        let args = credential_process::Args {
            user,
            secret_id,
            region,
            store,
            init,
            endpoint_url: cli.endpoint_url,
        };
        return runtime.block_on(credential_process::run(args));
    }
    // `serve` logs each request (key id, method, path, status) by default.
    // The SDK's credential chain warns of every provider it tried; the
    // error a command ends with says what matters (see `errors`).
    let default_log = match cli.command {
        Command::Serve { .. } => "warn,aws_config=error,keyfleet_api=info",
        _ => "warn,aws_config=error",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYFLEET_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .init();
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<()> {
    if let Command::Init {
        region,
        force,
        no_doctor,
    } = &cli.command
    {
        // Before the file exists: it writes it.
        return init::run(
            &cli.config,
            region.as_deref(),
            cli.endpoint_url.as_deref(),
            *force,
            !no_doctor,
        )
        .await;
    }
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let mut cfg = Config::load(&cli.config, explicit)?;
    if let Some(url) = &cli.endpoint_url {
        cfg.aws.endpoint_url = Some(url.clone());
    }
    errors::note_endpoint(cfg.aws.endpoint_url.as_deref(), &cfg.aws.region);
    let path = cli.config.as_path();
    match cli.command {
        Command::Run {
            dry_run,
            accounts,
            json,
            local,
        } => {
            let output = if json { Output::Json } else { Output::Table };
            let cmd = Coordinate::Run { accounts, dry_run };
            runs::run(&cfg, path, Mode::from_flag(local), cmd, output).await
        }
        Command::Plan {
            as_of,
            accounts,
            json,
            local,
        } => {
            let as_of = as_of.as_deref().map(parse_as_of).transpose()?;
            let output = if json { Output::Json } else { Output::Plan };
            let cmd = Coordinate::Plan { accounts, as_of };
            runs::run(&cfg, path, Mode::from_flag(local), cmd, output).await
        }
        Command::Rotate {
            account,
            user,
            deactivate_old,
            key_id,
            local,
        } => {
            let cmd = Coordinate::Rotate {
                account,
                user,
                deactivate_old,
                key_id,
            };
            runs::run(&cfg, path, Mode::from_flag(local), cmd, Output::Table).await
        }
        Command::Reactivate {
            account,
            user,
            key_id,
            local,
        } => {
            let cmd = Coordinate::Reactivate {
                account,
                user,
                key_id,
            };
            runs::run(&cfg, path, Mode::from_flag(local), cmd, Output::Table).await
        }
        Command::Report { run, format } => report::run(&cfg, &run, format).await,
        Command::Doctor { json, call_as } => doctor::run(&cfg, json, call_as.as_deref()).await,
        Command::Serve { listen, role_arn } => serve::run(&cfg, path, listen, role_arn).await,
        Command::ApiKey {
            command: ApiKeyCommand::New { id, scopes },
        } => serve::new_key(&id, &scopes),
        Command::Keygen { secret_id } => keygen::run(&cfg, &secret_id).await,
        Command::RetireKey {
            key_id,
            secret_id,
            stack_set,
            force,
        } => keygen::retire(&cfg, &secret_id, &key_id, &stack_set, force).await,
        #[cfg(feature = "emulator")]
        Command::Demo { out } => demo::run(&out).await,
        #[cfg(feature = "emulator")]
        Command::Bench {
            faults: Some(n), ..
        } => fault_run::run(n).await,
        #[cfg(feature = "emulator")]
        Command::Bench {
            finalize: Some(sizes),
            ..
        } => bench_finalize::run(&bench_finalize::parse_sizes(&sizes)?).await,
        #[cfg(feature = "emulator")]
        Command::BenchFinalize { run_id } => bench_finalize::child(&cfg, path, &run_id).await,
        #[cfg(feature = "emulator")]
        Command::Bench {
            accounts, users, ..
        } => bench::run(&accounts, users).await,
        #[cfg(feature = "emulator")]
        Command::Bootstrap => bootstrap::run(&cfg, path).await,
        #[cfg(feature = "emulator")]
        Command::Lambda { .. } => unreachable!("handled before the configuration is read"),
        Command::CredentialProcess { .. } | Command::Init { .. } => {
            unreachable!("handled before the configuration is read")
        }
    }
}
