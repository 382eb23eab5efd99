//! `keyfleet`: the command line. Runs the coordinator and the agents in one
//! process (local fleet) against any endpoint: the embedded emulator for
//! the demo and tests, or a real organization.

mod bench;
mod bootstrap;
mod config;
mod demo;
mod fleet;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use config::Config;
use keyfleet_coordinator::{outcome, render, RunRequest};
use keyfleet_protocol::report::RunReport;
use keyfleet_protocol::{JobMode, Outcome, Verdict};
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
    /// Run the whole system on the embedded emulator: organization, agents
    /// deployed by StackSets, three cycles (rotate, deactivate, delete).
    Demo {
        /// Where to write the HTML reports.
        #[arg(long, default_value = "keyfleet-demo")]
        out: PathBuf,
    },
    /// Create the coordinator's resources and the agent StackSet in an
    /// emulator (what Terraform does in production).
    Bootstrap,
    /// One full cycle in local fleet mode.
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
    },
    /// Read a stored report.
    Report {
        /// Run id, or `latest`.
        #[arg(long, default_value = "latest")]
        run: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
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
    },
    /// Benchmark: a full cycle on emulated organizations of each size,
    /// printing accounts/s, IAM calls per account, wall time, peak memory.
    Bench {
        /// Organization sizes (accounts), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
        accounts: Vec<usize>,
        /// Users per account.
        #[arg(long, default_value_t = 50)]
        users: usize,
    },
    /// Generate the coordinator key pair; store the private key in Secrets
    /// Manager and print the public key and key id for the agents.
    Keygen {
        /// Secret to store the private key in (name or ARN; created if missing).
        #[arg(long, alias = "secret-arn")]
        secret_id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    Html,
}

fn parse_as_of(s: &str) -> Result<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339))
        .with_context(|| format!("--as-of `{s}` is neither RFC 3339 nor YYYY-MM-DD"))
}

fn print_plan(report: &RunReport) {
    println!(
        "Plan for run {} (dry run: nothing was changed)",
        report.run_id
    );
    for a in &report.accounts {
        println!(
            "\naccount {} {} [{}]",
            a.account_id,
            a.name,
            a.state.as_str()
        );
        for u in &a.users {
            let actions: Vec<String> = u
                .actions
                .iter()
                .map(|r| {
                    let what = match &r.action {
                        keyfleet_protocol::Action::CreateKey => "create new key".to_string(),
                        keyfleet_protocol::Action::Deactivate { key_id } => {
                            format!("deactivate {key_id}")
                        }
                        keyfleet_protocol::Action::Delete { key_id } => format!("delete {key_id}"),
                        keyfleet_protocol::Action::Notify { notice } => {
                            format!("notify {} ({})", notice.kind(), notice.key_id())
                        }
                    };
                    match &r.result {
                        Outcome::Planned => what,
                        other => format!("{what} [{other:?}]"),
                    }
                })
                .collect();
            println!(
                "  {:<32} {:<22} {}{}",
                u.user_name,
                u.verdict.as_str(),
                if actions.is_empty() {
                    "-".into()
                } else {
                    actions.join("; ")
                },
                u.note
                    .as_deref()
                    .map(|n| format!(" (note: {})", n.escape_debug()))
                    .unwrap_or_default()
            );
        }
    }
}

/// No silent success: a run that failed as a whole (no account selected,
/// or every selected account failed or is missing) is an error, after its
/// report was printed.
fn check_run(fleet: &fleet::Fleet, report: &RunReport) -> Result<()> {
    if let Some(why) = outcome::describe(report) {
        bail!(
            "run {} failed: {why}; report: {}",
            report.run_id,
            fleet.coordinator.report_url(&report.run_id)
        );
    }
    Ok(())
}

/// An emergency rotation succeeded only if the agent reported the user
/// and did not fail it; otherwise its reason is the error.
fn check_rotation(report: &RunReport, account: &str, user: &str) -> Result<()> {
    let reported = report.accounts.iter().find(|a| a.account_id == account);
    let Some(u) = reported.and_then(|a| a.users.iter().find(|u| u.user_name == user)) else {
        let why = reported
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        bail!(
            "emergency rotation of `{user}` in {account}: the agent did not report the user{why}"
        );
    };
    let mut errors: Vec<String> = u.error.iter().cloned().collect();
    for r in &u.actions {
        if let Outcome::Failed { error } = &r.result {
            if !errors.iter().any(|e| e.contains(error.as_str())) {
                errors.push(format!("{}: {error}", r.action.kind()));
            }
        }
    }
    if u.verdict == Verdict::Failed || !errors.is_empty() {
        bail!(
            "emergency rotation of `{user}` in {account} failed: {}",
            if errors.is_empty() {
                "the agent reported the user as failed".to_string()
            } else {
                errors.join("; ")
            }
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYFLEET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="));
    let mut cfg = Config::load(&cli.config, explicit)?;
    if let Some(url) = &cli.endpoint_url {
        cfg.aws.endpoint_url = Some(url.clone());
    }
    match cli.command {
        Command::Demo { out } => demo::run(&out).await,
        Command::Bench { accounts, users } => bench::run(&accounts, users).await,
        Command::Bootstrap => {
            if cfg.aws.endpoint_url.is_none() {
                bail!("bootstrap targets an emulator (--endpoint-url); deploy to AWS with Terraform (see terraform/README.md)");
            }
            let sdk = fleet::sdk_config(&cfg).await;
            let b = bootstrap::bootstrap(&cfg, &sdk).await?;
            println!("coordinator account {}", b.account_id);
            println!("results queue       {}", b.results_queue_url);
            println!("coordinator key id  {}", b.key_id);
            Ok(())
        }
        Command::Run {
            dry_run,
            accounts,
            json,
        } => {
            let fleet = fleet::Fleet::connect(cfg, &cli.config).await?;
            let report = fleet
                .cycle(RunRequest {
                    dry_run,
                    accounts,
                    ..Default::default()
                })
                .await?;
            if json {
                println!("{}", String::from_utf8_lossy(&render::to_json(&report)));
            } else {
                println!("{}", render::to_table(&report));
            }
            check_run(&fleet, &report)
        }
        Command::Plan {
            as_of,
            accounts,
            json,
        } => {
            let as_of = as_of.as_deref().map(parse_as_of).transpose()?;
            let fleet = fleet::Fleet::connect(cfg, &cli.config).await?;
            let report = fleet
                .cycle(RunRequest {
                    dry_run: true,
                    accounts,
                    as_of,
                    ..Default::default()
                })
                .await?;
            if json {
                println!("{}", String::from_utf8_lossy(&render::to_json(&report)));
            } else {
                print_plan(&report);
            }
            check_run(&fleet, &report)
        }
        Command::Report { run, format } => {
            let fleet = fleet::Fleet::connect(cfg, &cli.config).await?;
            let report = fleet
                .coordinator
                .report(&run)
                .await?
                .with_context(|| format!("no finalized report for `{run}`"))?;
            match format {
                Format::Table => println!("{}", render::to_table(&report)),
                Format::Json => println!("{}", String::from_utf8_lossy(&render::to_json(&report))),
                Format::Csv => print!("{}", String::from_utf8_lossy(&render::to_csv(&report))),
                Format::Html => println!("{}", render::to_html(&report)),
            }
            Ok(())
        }
        Command::Rotate {
            account,
            user,
            deactivate_old,
            key_id,
        } => {
            let fleet = fleet::Fleet::connect(cfg, &cli.config).await?;
            let report = fleet
                .cycle(RunRequest {
                    accounts: Some(vec![account.clone()]),
                    mode: JobMode::Rotate {
                        user: user.clone(),
                        deactivate_old,
                        key_id,
                    },
                    ..Default::default()
                })
                .await?;
            println!("{}", render::to_table(&report));
            check_run(&fleet, &report)?;
            check_rotation(&report, &account, &user)
        }
        Command::Keygen { secret_id } => {
            let sdk = fleet::sdk_config(&cfg).await;
            let sm = aws_sdk_secretsmanager::Client::new(&sdk);
            let key = keyfleet_protocol::PrivateKey::generate();
            let put = sm
                .put_secret_value()
                .secret_id(&secret_id)
                .secret_string(key.to_base64().expose())
                .send()
                .await;
            if put.is_err() {
                sm.create_secret()
                    .name(&secret_id)
                    .secret_string(key.to_base64().expose())
                    .send()
                    .await
                    .with_context(|| format!("storing the private key in {secret_id}"))?;
            }
            let public = key.public_key();
            println!("coordinator_public_key = \"{}\"", public.to_base64());
            println!("coordinator_key_id     = \"{}\"", public.key_id);
            Ok(())
        }
    }
}
