//! `--otlp`: the spans of calls made and served, sent to an OpenTelemetry collector over
//! OTLP/HTTP (protobuf) by the ecosystem's exporter (`opentelemetry-otlp`, on hyper).
//!
//! The spans are the ones `exorun_core::trace` already keeps: their ids are the ones call
//! frames carry, so a trace crossing runtimes arrives at the collector whole, each process
//! sending its own spans. (`tracing-opentelemetry` would draw ids of its own, not the ones on
//! the wire.) A finished span is queued without blocking the call; one task sends them in
//! batches of at most [`BATCH_SPANS`], at least every [`BATCH_WAIT`]. The queue holds
//! [`QUEUE_SPANS`]; past that, spans are dropped and counted (`exorun_spans_dropped_total`),
//! never waited for: a slow collector costs spans, not calls.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanContext;
use opentelemetry::trace::SpanId;
use opentelemetry::trace::SpanKind;
use opentelemetry::trace::Status;
use opentelemetry::trace::TraceFlags;
use opentelemetry::trace::TraceId;
use opentelemetry::trace::TraceState;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::trace::SpanExporter;
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use exorun_core::trace;

/// Spans waiting to be sent; more are dropped (and counted).
pub const QUEUE_SPANS: usize = 4096;

/// The most spans in one export request.
pub const BATCH_SPANS: usize = 512;

/// How long a span waits for its batch to fill before the batch is sent anyway.
pub const BATCH_WAIT: Duration = Duration::from_millis(500);

/// How long one export request may take (connect, send, the collector's answer).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping runtime waits for its last spans to be sent.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--otlp` is not an http:// URL.
    #[error(
        "--otlp `{endpoint}`: give the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318"
    )]
    Endpoint {
        /// What was given.
        endpoint: String,
    },
    /// `--otlp-sample` is not a ratio from 0 to 1.
    #[error("--otlp-sample {given}: give a ratio from 0 to 1")]
    Ratio {
        /// What was given.
        given: f64,
    },
    /// An `OTEL_EXPORTER_OTLP_…` variable names something other than an http:// URL.
    #[error("{name}=`{value}`: only an http:// collector URL is supported (OTLP/HTTP)")]
    Environment {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Another exporter was installed in this process before.
    #[error("a span exporter is installed already")]
    Installed,
}

/// Where spans go: a collector's base URL (`/v1/traces` is added, as for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`), or the standard variables when none is given.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--otlp URL`; `None` reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, and exports nothing when neither is set.
    pub endpoint: Option<String>,
    /// The share of new traces sampled (0 to 1).
    pub sample: f64,
}

/// A running export: [`Exporting::flush`] sends what is queued before the process ends.
#[derive(Debug)]
pub struct Exporting {
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

/// Starts exporting spans as `settings` says; `None` when no endpoint is configured (then
/// nothing about spans is built or sent). Must run inside the tokio runtime.
pub fn start(settings: &Settings) -> Result<Option<Exporting>, Error> {
    if !(0.0..=1.0).contains(&settings.sample) {
        return Err(Error::Ratio {
            given: settings.sample,
        });
    }
    let from_environment = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .into_iter()
    .find_map(|name| {
        let value = std::env::var(name).ok().filter(|value| !value.is_empty());
        value.map(|value| (name, value))
    });
    if let Some((name, value)) = &from_environment
        && settings.endpoint.is_none()
        && !value.starts_with("http://")
    {
        let value = value.clone();
        return Err(Error::Environment { name, value });
    }
    let from_environment = from_environment.is_some();
    let endpoint = match &settings.endpoint {
        Some(base) => Some(traces_url(base)?),
        None if from_environment => None,
        None => return Ok(None),
    };
    let client =
        opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None);
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let mut exporter = builder.build()?;
    exporter.set_resource(&resource());
    let (spans, queued) = mpsc::channel(QUEUE_SPANS);
    let queue = Queue {
        spans,
        scope: opentelemetry::InstrumentationScope::builder("exorun")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    if !trace::set_exporter(Box::new(queue)) {
        return Err(Error::Installed);
    }
    trace::set_sampling(settings.sample);
    let (flushes, flush_asked) = mpsc::channel(1);
    tokio::spawn(send_batches(exporter, queued, flush_asked));
    Ok(Some(Exporting { flushes }))
}

impl Exporting {
    /// Sends every span queued so far, waiting at most [`FLUSH_TIMEOUT`].
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.flushes.send(done).await.is_err() {
            return;
        }
        if tokio::time::timeout(FLUSH_TIMEOUT, sent).await.is_err() {
            tracing::warn!("the last spans were not sent within {FLUSH_TIMEOUT:?}");
        }
    }
}

/// The collector's traces URL from its base URL.
fn traces_url(base: &str) -> Result<String, Error> {
    let invalid = || Error::Endpoint {
        endpoint: base.to_owned(),
    };
    let Some(rest) = base.strip_prefix("http://") else {
        return Err(invalid());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid());
    }
    let trimmed = base.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        return Ok(trimmed.to_owned());
    }
    Ok(format!("{trimmed}/v1/traces"))
}

/// The resource every span is sent with: `service.name` from `OTEL_SERVICE_NAME`, else
/// `exorun`.
fn resource() -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|name| !name.is_empty());
    if named {
        return builder.build();
    }
    builder.with_service_name("exorun").build()
}

/// The exporter `exorun_core::trace` calls: turns each span into OpenTelemetry's shape and
/// queues it.
struct Queue {
    spans: mpsc::Sender<SpanData>,
    scope: opentelemetry::InstrumentationScope,
}

impl trace::Exporter for Queue {
    fn export(&self, finished: &trace::Finished<'_>) {
        let span = &finished.span;
        let context = SpanContext::new(
            TraceId::from_bytes(span.trace_id),
            SpanId::from_bytes(span.span_id),
            TraceFlags::new(span.flags),
            false,
            TraceState::default(),
        );
        let (kind, parent_is_remote) = match finished.kind {
            trace::Kind::Client => (SpanKind::Client, false),
            // A served call's parent is its caller's span, in another runtime.
            trace::Kind::Server => (SpanKind::Server, span.parent_id != [0; 8]),
        };
        let mut attributes: Vec<KeyValue> = finished
            .attributes
            .iter()
            .map(|(key, value)| KeyValue::new(*key, (*value).to_owned()))
            .collect();
        attributes.push(KeyValue::new("exorun.outcome", finished.outcome.to_owned()));
        let status = match finished.outcome {
            "ok" => Status::Ok,
            outcome => Status::error(outcome.to_owned()),
        };
        let data = SpanData {
            span_context: context,
            parent_span_id: SpanId::from_bytes(span.parent_id),
            parent_span_is_remote: parent_is_remote,
            span_kind: kind,
            name: Cow::Borrowed(finished.name),
            start_time: finished.started,
            end_time: finished.started + finished.elapsed,
            attributes,
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        };
        // Looked up at each drop, not kept: the exporter starts before the metrics recorder
        // is installed, and a counter taken then would count nowhere for good.
        if self.spans.try_send(data).is_err() {
            metrics::counter!("exorun_spans_dropped_total").increment(1);
        }
    }
}

/// Sends queued spans in batches until the queue's sender is gone (never, in a process: the
/// exporter is installed for good), answering flush requests in between.
async fn send_batches(
    exporter: opentelemetry_otlp::SpanExporter,
    mut queued: mpsc::Receiver<SpanData>,
    mut flush_asked: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH_SPANS);
    loop {
        let flushing = tokio::select! {
            span = queued.recv() => {
                let Some(span) = span else {
                    return;
                };
                batch.push(span);
                None
            }
            done = flush_asked.recv() => done,
        };
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while flushing.is_none() && batch.len() < BATCH_SPANS {
            let Ok(Some(span)) = tokio::time::timeout_at(deadline, queued.recv()).await else {
                break;
            };
            batch.push(span);
        }
        while flushing.is_some() && batch.len() < QUEUE_SPANS {
            let Ok(span) = queued.try_recv() else {
                break;
            };
            batch.push(span);
        }
        send(&exporter, &mut batch).await;
        if let Some(done) = flushing {
            let _asker_gone = done.send(());
        }
    }
}

/// Sends `batch` (in requests of at most [`BATCH_SPANS`]) and empties it; a failed request is
/// logged and its spans dropped (counted).
async fn send(exporter: &opentelemetry_otlp::SpanExporter, batch: &mut Vec<SpanData>) {
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(BATCH_SPANS));
        let request = std::mem::replace(batch, rest);
        let count = u64::try_from(request.len()).unwrap_or(u64::MAX);
        // The exporter's own retries would each get the whole timeout: one bound for all.
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(request)).await;
        let failed = match sent {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {EXPORT_TIMEOUT:?}"),
        };
        metrics::counter!("exorun_spans_dropped_total").increment(count);
        tracing::warn!("cannot send {count} spans to the OTLP collector: {failed}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_adds_the_signal_path_once() {
        let url = |base: &str| traces_url(base).map_err(|error| error.to_string());
        assert_eq!(
            url("http://127.0.0.1:4318"),
            Ok("http://127.0.0.1:4318/v1/traces".to_owned())
        );
        assert_eq!(
            url("http://collector:4318/"),
            Ok("http://collector:4318/v1/traces".to_owned())
        );
        assert_eq!(
            url("http://collector:4318/v1/traces"),
            Ok("http://collector:4318/v1/traces".to_owned())
        );
        assert!(matches!(
            traces_url("https://collector:4318"),
            Err(Error::Endpoint { .. })
        ));
        assert!(matches!(traces_url("http://"), Err(Error::Endpoint { .. })));
        assert!(matches!(
            traces_url("collector:4318"),
            Err(Error::Endpoint { .. })
        ));
    }
}
