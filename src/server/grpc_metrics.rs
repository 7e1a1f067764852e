//! A tower layer around every gRPC service that counts and times requests by method and status
//! code, into the process's metrics ([`crate::metrics`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::metrics::metrics;

/// A tower layer that counts and times every gRPC request.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // "/etcdserverpb.KV/Range" -> "etcdserverpb.KV/Range"
        let method = request.uri().path().trim_start_matches('/').to_string();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // tonic puts an error's status in the headers (a trailers-only response); a
            // success carries grpc-status 0 in the trailers.
            let code = match &response {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => tonic::Code::Unknown as i32,
            };
            let metrics = metrics();
            metrics
                .grpc_requests
                .with_label_values(&[
                    method.as_str(),
                    &format!("{:?}", tonic::Code::from_i32(code)),
                ])
                .inc();
            metrics
                .grpc_seconds
                .with_label_values(&[method.as_str()])
                .observe(started.elapsed().as_secs_f64());
            response
        })
    }
}
