//! `keyfleet report`: a stored report, read from the report bucket (no
//! coordinator needed, and no private key).

use crate::aws;
use crate::config::Config;
use crate::deployed;
use anyhow::{Context, Result};
use clap::ValueEnum;
use keyfleet_reports::render;

/// How a report is printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Html,
}

pub async fn run(cfg: &Config, run: &str, format: Format) -> Result<()> {
    let sdk = aws::sdk_config(cfg).await;
    aws::require_credentials(&sdk).await?;
    let report = deployed::reports(cfg, &sdk)
        .report(run)
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
