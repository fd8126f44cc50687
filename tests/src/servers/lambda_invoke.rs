//! Lambda's `Invoke` API (`POST /2015-03-31/functions/{FunctionName}/invocations`, synchronous
//! `RequestResponse`) on loopback, running a real function binary through esm-local's Runtime
//! API: what `kl dead-letters replay --aws-function` talks to, without an AWS account. As the
//! API documents, a function error is a 200 with `X-Amz-Function-Error: Unhandled` and the
//! error document as the payload.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use esm_local::invoke::{FunctionProcess, FunctionSpec, InvokeOutcome};

use crate::servers::serve::{Server, header_pairs, json_reply, read_request};

/// What the server received: path and `Authorization` header of each call.
pub type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// A running Invoke API; stops (and kills the function) when dropped.
#[derive(Debug)]
pub struct LambdaInvokeServer {
    /// The loopback server.
    pub server: Server,
    /// Calls seen so far.
    pub calls: Calls,
}

impl LambdaInvokeServer {
    /// Serves `spec`'s binary as the only function.
    pub async fn start(spec: FunctionSpec) -> Self {
        let process = Arc::new(tokio::sync::Mutex::new(FunctionProcess::new(spec)));
        let calls: Calls = Arc::default();
        let seen = Arc::clone(&calls);
        let server = Server::start(move |req| {
            let (process, seen) = (Arc::clone(&process), Arc::clone(&seen));
            async move {
                let (parts, body) = read_request(req).await;
                let auth = header_pairs(&parts)
                    .into_iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let path = parts.uri.path().to_owned();
                seen.lock().unwrap().push((path.clone(), auth));
                if parts.method != hyper::Method::POST || !path.ends_with("/invocations") {
                    return json_reply(404, &[], Bytes::from_static(b"{\"Message\":\"not found\"}"));
                }
                let executed = ("x-amz-executed-version", "$LATEST".to_owned());
                match process.lock().await.invoke(body.to_vec()).await {
                    Ok(InvokeOutcome::Response(b)) => json_reply(200, &[executed], Bytes::from(b)),
                    Ok(InvokeOutcome::FunctionError(e)) => json_reply(
                        200,
                        &[executed, ("x-amz-function-error", "Unhandled".into())],
                        Bytes::from(e),
                    ),
                    Err(e) => json_reply(
                        200,
                        &[executed, ("x-amz-function-error", "Unhandled".into())],
                        Bytes::from(
                            serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": e.to_string()})
                                .to_string(),
                        ),
                    ),
                }
            }
        })
        .await;
        Self { server, calls }
    }
}
