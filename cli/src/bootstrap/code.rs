//! The functions' code on the emulator: a zip per function whose
//! `bootstrap` is one line, `exec <this keyfleet binary> lambda <function>`,
//! uploaded to a code bucket as Terraform's example uploads `dist/*.zip`.

use crate::aws;
use crate::config::Config;
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use std::io::Write;

/// Where the code objects are.
pub struct Code {
    pub bucket: String,
    pub agent_key: String,
    pub coordinator_key: String,
}

/// The zip of one function: a `bootstrap` that execs `exe lambda <function>`.
pub fn function_zip(exe: &std::path::Path, function: &str) -> Result<Vec<u8>> {
    let path = exe
        .to_str()
        .context("the keyfleet binary's path is not UTF-8")?;
    let script = format!(
        "#!/bin/sh\nexec '{}' lambda {function}\n",
        path.replace('\'', r"'\''")
    );
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options)?;
    zip.write_all(script.as_bytes())?;
    zip.finish()?;
    Ok(buf.into_inner())
}

/// Uploads both zips to `keyfleet-code-<account>`.
pub async fn upload(cfg: &Config, sdk: &SdkConfig, account_id: &str) -> Result<Code> {
    let exe = std::env::current_exe().context("locating the keyfleet binary")?;
    let s3 = aws::s3_client(cfg, sdk);
    let code = Code {
        bucket: format!("keyfleet-code-{account_id}"),
        agent_key: "keyfleet/agent.zip".into(),
        coordinator_key: "keyfleet/coordinator.zip".into(),
    };
    if s3.head_bucket().bucket(&code.bucket).send().await.is_err() {
        s3.create_bucket()
            .bucket(&code.bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {}", code.bucket))?;
    }
    for (key, function) in [
        (&code.agent_key, "agent"),
        (&code.coordinator_key, "coordinator"),
    ] {
        s3.put_object()
            .bucket(&code.bucket)
            .key(key)
            .body(function_zip(&exe, function)?.into())
            .send()
            .await
            .with_context(|| format!("uploading the {function} code"))?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_zip_holds_an_executable_one_line_bootstrap() {
        let bytes = function_zip(std::path::Path::new("/opt/it's/keyfleet"), "agent").unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut f = zip.by_name("bootstrap").unwrap();
        assert_eq!(f.unix_mode().map(|m| m & 0o777), Some(0o755));
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            "#!/bin/sh\nexec '/opt/it'\\''s/keyfleet' lambda agent\n"
        );
    }
}
