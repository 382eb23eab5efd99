//! The report as JSON: the record itself, as the protocol's [`RunReport`]
//! serializes it (its fields are the schema), plus a top-level `error` when
//! the run failed as a whole.

use crate::outcome;
use keyfleet_protocol::report::RunReport;

/// The report as pretty-printed JSON, newline-terminated. A run that
/// failed as a whole carries a top-level `error` after the report's fields.
pub fn to_json(report: &RunReport) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        report: &'a RunReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let json = Json {
        report,
        error: outcome::describe(report),
    };
    // Plain structs with string keys: serialization cannot fail.
    let mut out = serde_json::to_vec_pretty(&json).expect("a RunReport always serializes");
    out.push(b'\n');
    out
}
