//! One line for an AWS SDK error, for people and for the error texts
//! keyfleet's libraries carry: the service's code and message (`AccessDenied:
//! User: ... is not authorized ...`), or what kept the request from an
//! answer (`could not reach the endpoint: ... Connection refused`, `timed
//! out`, the credential provider's reason). Never the SDK's `Debug` dump,
//! which `DisplayErrorContext` appends after the causes and which the
//! command line must not show (see its `errors`).

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::error::Error;

/// `e` in one line: `Code: message` for an error the service answered,
/// the chain of causes for the others (see the module doc).
pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    if let SdkError::ServiceError(s) = e {
        let err = s.err();
        return match (err.code(), err.message()) {
            (Some(code), Some(message)) if !message.is_empty() => {
                one_line(&format!("{code}: {message}"))
            }
            (Some(code), _) => code.to_string(),
            // A response without a body (S3 answers a HEAD so): its status
            // is all there is, and the SDK's text of it is a Debug dump.
            _ => match s.raw().status().as_u16() {
                403 => "HTTP 403 Forbidden (access denied; the response has no body)".into(),
                404 => "HTTP 404 Not Found (the response has no body)".into(),
                status => format!("HTTP {status} without an error code"),
            },
        };
    }
    // The SDK's own words first ("dispatch failure", "io error"), then the
    // cause that says what happened.
    let why = causes(e);
    match e {
        SdkError::DispatchFailure(d) if d.is_io() => format!("could not reach the endpoint: {why}"),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            format!("timed out reaching the endpoint: {why}")
        }
        _ => why,
    }
}

/// The Display of `e` and of each of its sources, joined by `: `, on one
/// line (a credential chain's reason spans several), a cause that repeats
/// its predecessor's text left out.
pub fn causes(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = one_line(&err.to_string());
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// `s` with every run of whitespace (line breaks included) made one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn causes_are_one_line_without_repeats_or_debug() {
        let e = Layer(
            "dispatch failure",
            Some(Box::new(Layer(
                "io error",
                Some(Box::new(Layer(
                    "tcp connect error:\n  Connection refused (os error 111)",
                    Some(Box::new(Layer("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        assert_eq!(
            causes(&e),
            "dispatch failure: io error: tcp connect error: Connection refused (os error 111)"
        );
        assert!(!causes(&e).contains("Layer("));
    }
}
