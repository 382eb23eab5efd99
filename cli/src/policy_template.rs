//! The IAM policies of the Terraform modules, rendered for the emulator.
//!
//! The coordinator's and the org reader's permissions live in one JSON
//! template each (`terraform/modules/*/policies/*.json.tftpl`), which
//! Terraform renders with `templatefile()` and `keyfleet bootstrap` renders
//! here with the emulator's ARNs, so the deployed roles in the emulator
//! hold exactly the production permissions (and the emulator enforces
//! them). The syntax is the subset of Terraform templates the files use:
//! `${name}` inside a JSON string, `${jsonencode(name)}` for a value of its
//! own (a list, or a string as a JSON string), as Terraform renders them.

use std::collections::BTreeMap;

/// The coordinator role's policy template.
pub const COORDINATOR: &str =
    include_str!("../../terraform/modules/coordinator/policies/coordinator.json.tftpl");
/// The security team's API role's policy template.
pub const API: &str = include_str!("../../terraform/modules/api/policies/api.json.tftpl");
/// The results queue's policy template: only `keyfleet-agent*` roles of
/// the organization may send results.
pub const RESULTS_QUEUE: &str =
    include_str!("../../terraform/modules/coordinator/policies/results-queue.json.tftpl");
/// The coordinator private key's secret policy template: nobody but the
/// coordinator's role (and the module's `private_key_readers`) reads it.
pub const PRIVATE_KEY: &str =
    include_str!("../../terraform/modules/coordinator/policies/private-key.json.tftpl");
/// The org reader role's policy template.
pub const ORG_READER: &str =
    include_str!("../../terraform/modules/org-reader/policies/org-reader.json.tftpl");

/// A template variable's value.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

/// Why a template did not render.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template variable `{0}` has no value")]
    Missing(String),
    #[error("template variable `{0}` is a list; use ${{jsonencode({0})}}")]
    NotAString(String),
    #[error("template variables passed but not used: {0:?}")]
    Unused(Vec<String>),
    #[error("unterminated `${{` in the template")]
    Unterminated,
    #[error("the rendered policy is not JSON: {0}")]
    Json(String),
}

/// Renders `template` with `values`; every variable must be used and every
/// placeholder have a value, and the result must be a JSON document.
pub fn render(
    template: &str,
    values: &BTreeMap<&str, Value>,
) -> Result<serde_json::Value, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut used = std::collections::BTreeSet::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or(TemplateError::Unterminated)?;
        let expr = after[..end].trim();
        let (name, as_list) = match expr
            .strip_prefix("jsonencode(")
            .and_then(|e| e.strip_suffix(')'))
        {
            Some(n) => (n.trim(), true),
            None => (expr, false),
        };
        let value = values
            .get(name)
            .ok_or_else(|| TemplateError::Missing(name.to_string()))?;
        used.insert(name);
        match (value, as_list) {
            (Value::Str(s), false) => {
                let quoted = serde_json::to_string(s).expect("strings serialize");
                out.push_str(&quoted[1..quoted.len() - 1]);
            }
            (Value::Str(s), true) => {
                out.push_str(&serde_json::to_string(s).expect("strings serialize"))
            }
            (Value::List(l), true) => {
                out.push_str(&serde_json::to_string(l).expect("strings serialize"))
            }
            (Value::List(_), false) => return Err(TemplateError::NotAString(name.to_string())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    let unused: Vec<String> = values
        .keys()
        .filter(|k| !used.contains(*k))
        .map(|k| k.to_string())
        .collect();
    if !unused.is_empty() {
        return Err(TemplateError::Unused(unused));
    }
    serde_json::from_str(&out).map_err(|e| TemplateError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn renders_strings_inside_json_strings_and_lists_as_arrays() {
        let doc = render(
            r#"{"a": "${x}/*", "b": ${jsonencode(l)}, "c": ${jsonencode(x)}}"#,
            &BTreeMap::from([("x", s("q\"")), ("l", Value::List(vec!["1".into()]))]),
        )
        .unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"a": "q\"/*", "b": ["1"], "c": "q\""})
        );
    }

    #[test]
    fn every_placeholder_needs_a_value_and_every_value_a_use() {
        assert_eq!(
            render(r#"{"a": "${x}"}"#, &BTreeMap::new()),
            Err(TemplateError::Missing("x".into()))
        );
        assert_eq!(
            render(r#"{"a": "b"}"#, &BTreeMap::from([("x", s("y"))])),
            Err(TemplateError::Unused(vec!["x".into()]))
        );
        assert_eq!(
            render(r#"{"a": "${x"#, &BTreeMap::from([("x", s("y"))])),
            Err(TemplateError::Unterminated)
        );
        assert_eq!(
            render(
                r#"{"a": "${l}"}"#,
                &BTreeMap::from([("l", Value::List(vec![]))])
            ),
            Err(TemplateError::NotAString("l".into()))
        );
    }

    #[test]
    fn the_module_templates_render() {
        let coordinator: BTreeMap<&str, Value> = [
            "org_reader_role_arn",
            "jobs_queue_arns",
            "organization_id",
            "results_queue_arn",
            "invoke_dlq_arn",
            "report_bucket_arn",
            "kms_key_arn",
            "alerts_topic_arn",
            "sender",
            "private_key_secret_arn",
            "log_group_arn",
        ]
        .into_iter()
        .map(|k| (k, s("arn:aws:x")))
        .chain([("ses_resource_arns", Value::List(vec!["arn:aws:ses".into()]))])
        .collect();
        let doc = render(COORDINATOR, &coordinator).unwrap();
        assert!(doc["Statement"].as_array().is_some_and(|s| s.len() > 5));
        let reader: BTreeMap<&str, Value> = ["ou_arns", "root_arns"]
            .into_iter()
            .map(|k| (k, s("arn:aws:organizations::1:x")))
            .collect();
        assert!(render(ORG_READER, &reader).unwrap()["Statement"].is_array());
    }
}
