//! The Lambda runtime loop of a batch function, with the invocation payload decoded straight from
//! the bytes the Runtime API delivered.
//!
//! `lambda_runtime` deserializes every event through serde_json; for [`KafkaBatch`] that means a
//! scan of the whole payload just to take it as one raw JSON text (about 2 ms per 6 MB batch),
//! before [`KafkaBatch`] reads it again. [`run`] adds a layer ([`DecodeLayer`]) that hands the
//! body to [`KafkaBatch::from_slice`] first: the runtime then deserializes a placeholder, and the
//! handler receives the batch decoded from the real bytes. A payload that is not a batch is left
//! alone, and the runtime reports it exactly as before.

use std::cell::RefCell;
use std::future::Future;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use event_decoding::{KafkaBatch, KafkaBatchResponse};
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, LambdaInvocation, Runtime, Service};
use serde::{Deserialize, Deserializer};

thread_local! {
    /// The batch [`DecodeService`] decoded, until the runtime deserializes the placeholder in
    /// the same call, on the same thread.
    static DECODED: RefCell<Option<KafkaBatch>> = const { RefCell::new(None) };
}

/// What the runtime is given to deserialize in place of a payload already decoded.
const PLACEHOLDER: &[u8] = br#"{"decodedBy":"lambda-kit"}"#;

/// Runs `handler` on the Lambda runtime with the default tracing layer, as
/// `lambda_runtime::run` does, and the payload decoded by [`DecodeLayer`].
///
/// ```no_run
/// # async fn handle(e: lambda_runtime::LambdaEvent<event_decoding::KafkaBatch>)
/// #     -> Result<event_decoding::KafkaBatchResponse, lambda_runtime::Error> { unimplemented!() }
/// # #[tokio::main] async fn main() -> Result<(), lambda_runtime::Error> {
/// lambda_kit::runtime::run(handle).await
/// # }
/// ```
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(LambdaEvent<KafkaBatch>) -> Fut,
    Fut: Future<Output = Result<KafkaBatchResponse, lambda_runtime::Error>>,
{
    let service = lambda_runtime::service_fn(move |event: LambdaEvent<BatchPayload>| {
        let (decoded, context) = event.into_parts();
        handler(LambdaEvent::new(decoded.0, context))
    });
    Runtime::new(service)
        .layer(TracingLayer::new())
        .layer(DecodeLayer)
        .run()
        .await
}

/// The payload the runtime deserializes for [`run`]'s handler (not the runner's per-record
/// `Decoded`): the [`KafkaBatch`] [`DecodeLayer`] decoded from the invocation's bytes, else (no
/// layer, or a payload it left alone) deserialized as usual.
#[derive(Debug)]
pub struct BatchPayload(pub KafkaBatch);

impl<'de> Deserialize<'de> for BatchPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match DECODED.with(|slot| slot.borrow_mut().take()) {
            Some(batch) => {
                serde::de::IgnoredAny::deserialize(d)?;
                Ok(BatchPayload(batch))
            }
            None => KafkaBatch::deserialize(d).map(BatchPayload),
        }
    }
}

/// Decodes an invocation's body into a [`KafkaBatch`] before the runtime deserializes it; see
/// the [module](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeLayer;

impl<S> Layer<S> for DecodeLayer {
    type Service = DecodeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeService { inner }
    }
}

/// The service of [`DecodeLayer`].
#[derive(Debug, Clone)]
pub struct DecodeService<S> {
    inner: S,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for DecodeService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: LambdaInvocation) -> Self::Future {
        let Ok(batch) = KafkaBatch::from_slice(&req.body) else {
            // Not a batch: the runtime's own deserialization names the problem.
            return self.inner.call(req);
        };
        DECODED.with(|slot| *slot.borrow_mut() = Some(batch));
        req.body = Bytes::from_static(PLACEHOLDER);
        // The runtime deserializes the event within this call (before it returns the future),
        // which takes the batch; whatever is left is not for the next invocation.
        let future = self.inner.call(req);
        DECODED.with(|slot| slot.borrow_mut().take());
        future
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body the runtime saw, and what it deserialized from it.
    type Seen = (Bytes, Result<KafkaBatch, String>);

    /// The runtime's side, as `lambda_runtime` does it: the body deserialized (through
    /// `serde_path_to_error` over serde_json) within `call`.
    fn runtime_like(req: LambdaInvocation) -> std::future::Ready<Result<Seen, String>> {
        let mut de = serde_json::Deserializer::from_slice(&req.body);
        let event = serde_path_to_error::deserialize::<_, BatchPayload>(&mut de)
            .map(|d| d.0)
            .map_err(|e| e.to_string());
        std::future::ready(Ok((req.body.clone(), event)))
    }

    fn invocation(body: &[u8]) -> LambdaInvocation {
        LambdaInvocation {
            parts: http::Response::new(()).into_parts().0,
            body: Bytes::copy_from_slice(body),
            context: lambda_runtime::Context::default(),
        }
    }

    #[tokio::test]
    async fn the_handler_gets_the_batch_decoded_from_the_bytes() {
        let payload = br#"{"eventSource":"aws:kafka","records":{"t-0":[{"topic":"t","partition":0,"offset":4,"timestamp":1,"value":"eyJhIjoxfQ=="}]}}"#;
        let mut service = DecodeLayer.layer(lambda_runtime::service_fn(runtime_like));
        let (seen, event) = service.call(invocation(payload)).await.unwrap();
        assert_eq!(&seen[..], PLACEHOLDER);
        assert_eq!(event.unwrap(), KafkaBatch::from_slice(payload).unwrap());
        // Nothing is left over for a later invocation.
        assert!(DECODED.with(|slot| slot.borrow().is_none()));
    }

    #[tokio::test]
    async fn a_payload_that_is_not_a_batch_reaches_the_runtime_as_it_came() {
        let payload = br#"{"records":{"t-0":[{"topic":"t","partition":0,"timestamp":1}]}}"#;
        let mut service = DecodeLayer.layer(lambda_runtime::service_fn(runtime_like));
        let (seen, event) = service.call(invocation(payload)).await.unwrap();
        assert_eq!(&seen[..], payload);
        let err = event.unwrap_err();
        assert!(
            err.contains("records.t-0[0]") && err.contains("offset"),
            "{err}"
        );
        // The placeholder alone (no layer before it) is no batch either.
        let (_, event) = runtime_like(invocation(PLACEHOLDER)).await.unwrap();
        assert!(event.is_err());
    }
}
