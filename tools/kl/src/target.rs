//! Where a replay sends its events: a function on this machine (a binary driven through
//! esm-local's emulated Lambda Runtime API, or a `cargo lambda watch` invoke URL), or a deployed
//! function through Lambda's `Invoke` API.

use std::collections::{HashMap, HashSet};

use aws_sdk_lambda::primitives::Blob;
use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeError, InvokeOutcome, Invoker};
use esm_local::kafka::TopicPartition;
use esm_local::payload::{BatchVerdict, parse_response};

/// What the function answered for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its response body (a partial batch response, or empty for "all processed").
    Response(Vec<u8>),
    /// The whole event failed: function error, crash, timeout. Every record of it is failed.
    Failed(String),
}

/// Faults that stop the replay (nothing more can be sent): the binary does not start, the
/// Invoke API refuses the call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The local function could not be run at all.
    #[error(transparent)]
    Local(InvokeError),
    /// Lambda's Invoke API refused or could not be reached.
    #[error("lambda Invoke of `{function}`: {message}")]
    Aws {
        /// Function name or ARN.
        function: String,
        /// The SDK's description (never a credential).
        message: String,
    },
}

/// The function a replay invokes.
#[derive(Debug)]
pub enum Target {
    /// A binary (started on first use, and again after a crash or timeout) or an invoke URL.
    Local(Invoker),
    /// A deployed function.
    Aws {
        /// The Lambda client.
        client: aws_sdk_lambda::Client,
        /// Function name, ARN, or `name:alias`.
        function: String,
    },
}

impl Target {
    /// A local binary run as `spec` describes.
    pub fn local(spec: FunctionSpec) -> Self {
        Self::Local(Invoker::Process(Box::new(FunctionProcess::new(spec))))
    }

    /// A deployed function reached with the default AWS configuration chain (profile, region
    /// and credentials from the environment; `AWS_ENDPOINT_URL_LAMBDA` honoured).
    pub async fn aws(function: impl Into<String>) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::aws_with(aws_sdk_lambda::Client::new(&config), function)
    }

    /// A deployed function through `client`.
    pub fn aws_with(client: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        Self::Aws {
            client,
            function: function.into(),
        }
    }

    /// Invokes the function synchronously with `payload` (an ESM event).
    pub async fn invoke(&mut self, payload: Vec<u8>) -> Result<Answer, TargetError> {
        match self {
            Self::Local(process) => match process.invoke(payload).await {
                Ok(InvokeOutcome::Response(body)) => Ok(Answer::Response(body)),
                Ok(InvokeOutcome::FunctionError(e)) => Ok(Answer::Failed(e)),
                Err(e) if e.is_transient() => Ok(Answer::Failed(e.to_string())),
                Err(e) => Err(TargetError::Local(e)),
            },
            Self::Aws { client, function } => {
                let out = client
                    .invoke()
                    .function_name(function.as_str())
                    .payload(Blob::new(payload))
                    .send()
                    .await
                    .map_err(|e| TargetError::Aws {
                        function: function.clone(),
                        message: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
                    })?;
                let body = out
                    .payload()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default();
                Ok(match out.function_error() {
                    Some(kind) => Answer::Failed(format!(
                        "{kind}: {}",
                        String::from_utf8_lossy(&body)
                            .chars()
                            .take(500)
                            .collect::<String>()
                    )),
                    None => Answer::Response(body),
                })
            }
        }
    }
}

impl Answer {
    /// The records of `sent` (topic-partition and offset, as in the event) the function reported
    /// for redelivery: those named in a partial batch response (each partition from its first
    /// failed offset on, as the ESM reads it), or all of them when the whole event failed.
    pub fn failed(&self, sent: &[(TopicPartition, i64)]) -> HashSet<(TopicPartition, i64)> {
        let all = || sent.iter().cloned().collect();
        let body = match self {
            Answer::Response(body) => body,
            Answer::Failed(why) => {
                tracing::warn!(records = sent.len(), error = %why, "the function failed the event");
                return all();
            }
        };
        let mut in_batch: HashMap<String, (TopicPartition, Vec<i64>)> = HashMap::new();
        for (tp, offset) in sent {
            in_batch
                .entry(tp.to_string())
                .or_insert_with(|| (tp.clone(), Vec::new()))
                .1
                .push(*offset);
        }
        match parse_response(body, &in_batch) {
            BatchVerdict::AllProcessed => HashSet::new(),
            BatchVerdict::PartialFailure(first) => sent
                .iter()
                .filter(|(tp, offset)| first.get(tp).is_some_and(|f| offset >= f))
                .cloned()
                .collect(),
            BatchVerdict::AllFailed(why) => {
                tracing::warn!(records = sent.len(), error = %why, "the function's response fails the whole event");
                all()
            }
        }
    }
}
