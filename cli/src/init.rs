//! `keyfleet init`: writes a commented `keyfleet.toml` for a deployment and
//! checks it with `keyfleet doctor`.
//!
//! The values come from the Terraform example's outputs
//! (`terraform output -json | keyfleet init`: the coordinator function, the
//! report bucket, the alerts topic, the key ring, the agent StackSet), and
//! the Region from `--region`, the function's ARN, or `AWS_REGION`. Without
//! outputs on standard input, it asks for the two names it needs. It never
//! overwrites a file (`--force` does), and writes nothing secret: the
//! outputs it reads hold names and ARNs only.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub function: String,
    pub report_bucket: String,
    pub alerts_topic: Option<String>,
    pub private_key_secret: Option<String>,
}

/// The values of `terraform output -json` (`{"name": {"value": ...}}`)
/// that keyfleet.toml needs; an output that is missing is an error naming
/// it.
pub fn from_outputs(json: &str, region: Option<&str>) -> Result<Values> {
    let outputs: Value = serde_json::from_str(json)
        .context("standard input is not the JSON of `terraform output -json`")?;
    let get =
        |name: &str| -> Option<String> { outputs[name]["value"].as_str().map(str::to_string) };
    let need = |name: &str| -> Result<String> {
        get(name).with_context(|| {
            format!("`terraform output -json` has no `{name}`: run it in terraform/examples/complete (or a copy of it)")
        })
    };
    let function = need("coordinator_function_name")?;
    let region = region
        .map(str::to_string)
        .or_else(|| {
            // An ARN names its Region; a name does not.
            function
                .starts_with("arn:")
                .then(|| function.split(':').nth(3).map(str::to_string))
                .flatten()
        })
        .or_else(|| std::env::var("AWS_REGION").ok())
        .context("no Region: pass --region (the provisioning account's Region)")?;
    Ok(Values {
        region,
        endpoint_url: None,
        function,
        report_bucket: need("report_bucket")?,
        // The file names the topic; its ARN is the output.
        alerts_topic: get("alerts_topic_arn")
            .map(|arn| arn.rsplit(':').next().unwrap_or(&arn).to_string()),
        private_key_secret: get("private_key_secret_arn"),
    })
}

/// `keyfleet.toml` for `v`, commented.
pub fn render(v: &Values) -> String {
    let mut out = String::from(
        "# keyfleet's configuration for this deployment (written by `keyfleet init`).\n\
         # Every key can be overridden by KEYFLEET_<SECTION>_<KEY>; see the README's\n\
         # \"Configuration\". `keyfleet doctor` checks it against the deployment.\n\n",
    );
    out.push_str("[aws]\n# The provisioning account's Region (the coordinator's).\n");
    out.push_str(&format!("region = {}\n", toml_str(&v.region)));
    if let Some(url) = &v.endpoint_url {
        out.push_str("# An emulator or a VPC endpoint; remove for AWS itself.\n");
        out.push_str(&format!("endpoint_url = {}\n", toml_str(url)));
    }
    out.push_str(
        "\n[coordinator]\n# The deployed coordinator that `run`, `plan`, `rotate` and `doctor` use\n# (output coordinator_function_name).\n",
    );
    out.push_str(&format!("function = {}\n", toml_str(&v.function)));
    out.push_str("# Where the reports are (output report_bucket).\n");
    out.push_str(&format!("report_bucket = {}\n", toml_str(&v.report_bucket)));
    if let Some(topic) = &v.alerts_topic {
        out.push_str("# The alerts topic's name (output alerts_topic_arn).\n");
        out.push_str(&format!("alerts_topic = {}\n", toml_str(topic)));
    }
    if let Some(secret) = &v.private_key_secret {
        out.push_str(
            "# The coordinator's key ring, for `keygen`, `retire-key` and `--local` runs\n# (output private_key_secret_arn).\n",
        );
        out.push_str(&format!("private_key_secret = {}\n", toml_str(secret)));
    }
    out
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Asks for what the file needs on the terminal.
fn ask(region: Option<&str>) -> Result<Values> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut prompt = |what: &str, default: Option<&str>| -> Result<String> {
        match default {
            Some(d) => eprint!("{what} [{d}]: "),
            None => eprint!("{what}: "),
        }
        std::io::stderr().flush().ok();
        let line = lines.next().transpose()?.unwrap_or_default();
        let line = line.trim();
        match (line.is_empty(), default) {
            (false, _) => Ok(line.to_string()),
            (true, Some(d)) => Ok(d.to_string()),
            (true, None) => bail!("{what} is needed"),
        }
    };
    let env_region = std::env::var("AWS_REGION").ok();
    let region = prompt(
        "Region of the coordinator",
        region.or(env_region.as_deref()),
    )?;
    let function = prompt(
        "Coordinator function (output coordinator_function_name)",
        Some("keyfleet-coordinator"),
    )?;
    let report_bucket = prompt("Report bucket (output report_bucket)", None)?;
    Ok(Values {
        region,
        endpoint_url: None,
        function,
        report_bucket,
        alerts_topic: None,
        private_key_secret: None,
    })
}

/// `keyfleet init`: writes `path`, then runs `doctor` on it.
pub async fn run(
    path: &Path,
    region: Option<&str>,
    endpoint_url: Option<&str>,
    force: bool,
    doctor: bool,
) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "{} exists: keyfleet init does not overwrite it (--force does)",
            path.display()
        );
    }
    let mut values = if std::io::stdin().is_terminal() {
        ask(region)?
    } else {
        let mut json = String::new();
        std::io::stdin()
            .read_to_string(&mut json)
            .context("reading standard input")?;
        from_outputs(&json, region)?
    };
    values.endpoint_url = endpoint_url.map(str::to_string);
    let text = render(&values);
    // The file parses as the commands will read it.
    let cfg: Config = toml::from_str(&text).context("the file keyfleet init wrote")?;
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    if !doctor {
        return Ok(());
    }
    println!("\nkeyfleet doctor:");
    crate::doctor::run(&cfg, false, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUTS: &str = r#"{
      "coordinator_function_name": {"sensitive": false, "type": "string", "value": "keyfleet-coordinator"},
      "report_bucket": {"sensitive": false, "type": "string", "value": "keyfleet-reports-111122223333"},
      "alerts_topic_arn": {"sensitive": false, "type": "string", "value": "arn:aws:sns:eu-west-1:111122223333:keyfleet-alerts"},
      "private_key_secret_arn": {"sensitive": false, "type": "string", "value": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:keyfleet-coordinator/private-key-AbCdEf"},
      "ses_dkim_tokens": {"sensitive": false, "type": ["list", "string"], "value": ["a", "b"]}
    }"#;

    #[test]
    fn the_outputs_make_a_file_the_commands_read() {
        let v = from_outputs(OUTPUTS, Some("eu-west-1")).unwrap();
        assert_eq!(v.function, "keyfleet-coordinator");
        assert_eq!(v.report_bucket, "keyfleet-reports-111122223333");
        let text = render(&v);
        let cfg: Config = toml::from_str(&text).unwrap();
        assert_eq!(cfg.aws.region, "eu-west-1");
        assert_eq!(cfg.coordinator.function, "keyfleet-coordinator");
        assert_eq!(
            cfg.coordinator.report_bucket,
            "keyfleet-reports-111122223333"
        );
        assert!(cfg
            .coordinator
            .private_key_secret
            .ends_with("private-key-AbCdEf"));
        assert!(text.starts_with("# keyfleet's configuration"), "{text}");
    }

    #[test]
    fn a_missing_output_or_region_is_named() {
        let e =
            from_outputs(r#"{"report_bucket": {"value": "b"}}"#, Some("eu-west-1")).unwrap_err();
        assert!(e.to_string().contains("coordinator_function_name"), "{e}");
        let arn = r#"{"coordinator_function_name": {"value": "arn:aws:lambda:ap-south-1:1:function:f"}, "report_bucket": {"value": "b"}}"#;
        assert_eq!(from_outputs(arn, None).unwrap().region, "ap-south-1");
        assert!(from_outputs("not json", None).is_err());
    }
}
