//! The Kubernetes client: configuration lookup, timeouts, and one place where transient API
//! failures are retried (connection errors, timeouts, 429 with Retry-After, 5xx) within the
//! run's deadline. Steps above it see only answers that are final.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::{Body, ClientBuilder, DynBody};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::error::{Error, Result};

/// How the client finds its cluster and how long it may keep trying.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Time for the whole command; retries stop when it is spent.
    pub deadline: Duration,
    /// Time for one request and its response.
    pub request_timeout: Duration,
    /// How many times a request whose connection was refused (nothing listens: the cluster is
    /// hibernated or gone) is tried again; `None`: like any other transient failure, until the
    /// deadline. Many clusters at once use a small cap, so that a cluster that is not there does
    /// not hold its slot for the whole deadline.
    pub refused_retries: Option<u32>,
    /// How many requests may be in flight at once; `None`: no limit. HTTP/1 opens a connection
    /// (and a TLS handshake) per concurrent request, so many clusters at once cap each one.
    pub max_in_flight: Option<usize>,
    pub reads: Reads,
}

/// Where a client's GETs are answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reads {
    /// As of now, from etcd (the API server's default): every step, and status of one cluster.
    #[default]
    Consistent,
    /// From the API server's watch cache (`resourceVersion=0`): no etcd read, and at most the
    /// cache's lag behind (milliseconds on a healthy server). Only for GETs that name no
    /// version and are not paginated, whose answer is not a base for a write: status of many
    /// clusters, an overview polled while the module rolls out.
    FromCache,
}

/// Counts of what the client sent, for the closing log line and the benchmarks.
#[derive(Debug, Default)]
pub struct ApiStats {
    requests: AtomicU64,
    retries: AtomicU64,
}

impl ApiStats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Adds what another client sent (many clusters' clients, one closing line).
    pub fn add(&self, other: &ApiStats) {
        self.requests.fetch_add(other.requests(), Ordering::Relaxed);
        self.retries.fetch_add(other.retries(), Ordering::Relaxed);
    }
}

/// Builds a client: `--kubeconfig`/`--context` when given, else the usual lookup
/// (`KUBECONFIG`, several files merged as kubectl merges them; `~/.kube/config`; then the Pod's
/// ServiceAccount).
pub async fn build(opts: &ClientOptions, deadline: Instant) -> Result<(Client, Arc<ApiStats>)> {
    let kc_opts = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let from_env = match &opts.kubeconfig {
        Some(_) => None,
        None => kubeconfig_from_env()?,
    };
    let config = match (&opts.kubeconfig, from_env) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                Error::ClientConfig(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &kc_opts)
                .await
                .map_err(|e| e.to_string())
        }
        (None, Some(merged)) => Config::from_custom_kubeconfig(merged, &kc_opts)
            .await
            .map_err(|e| e.to_string()),
        (None, None) if opts.context.is_some() => Config::from_kubeconfig(&kc_opts)
            .await
            .map_err(|e| e.to_string()),
        (None, None) => Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(Error::ClientConfig)?;
    let stats = Arc::new(ApiStats::default());
    let client = from_config(config, opts, deadline, stats.clone())?;
    Ok((client, stats))
}

/// The files of `KUBECONFIG` merged as kubectl merges them: the first file to define a context,
/// cluster or user wins, and the first `current-context` set; empty entries and files that do
/// not exist are skipped (kubectl skips them too). `None` when `KUBECONFIG` names no file.
pub fn kubeconfig_from_env() -> Result<Option<Kubeconfig>> {
    let listed: Vec<PathBuf> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        return Ok(None);
    }
    let mut merged = Kubeconfig::default();
    let mut read = 0;
    for path in &listed {
        if !path.exists() {
            tracing::debug!(path = %path.display(), "a file of KUBECONFIG does not exist; skipped as kubectl skips it");
            continue;
        }
        let next = Kubeconfig::read_from(path).map_err(|e| {
            Error::ClientConfig(format!("reading kubeconfig {}: {e}", path.display()))
        })?;
        merged = merged.merge(next).map_err(|e| {
            Error::ClientConfig(format!("merging kubeconfig {}: {e}", path.display()))
        })?;
        read += 1;
    }
    if read == 0 {
        return Err(Error::ClientConfig(format!(
            "none of the {} files of KUBECONFIG exists",
            listed.len()
        )));
    }
    Ok(Some(merged))
}

/// A client for `config` with this tool's timeouts and retries (see [`build`]), counting what
/// it sends into `stats`.
pub fn from_config(
    mut config: Config,
    opts: &ClientOptions,
    deadline: Instant,
    stats: Arc<ApiStats>,
) -> Result<Client> {
    // Retries are ours (below): bounded by the deadline, and they include connection errors.
    config.default_retry = false;
    config.connect_timeout = Some(opts.request_timeout.min(Duration::from_secs(5)));
    config.read_timeout = Some(opts.request_timeout);
    config.write_timeout = Some(opts.request_timeout);
    let layer = RetryLayer {
        deadline,
        refused_retries: opts.refused_retries,
        in_flight: opts
            .max_in_flight
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        reads: opts.reads,
        stats,
    };
    let client = ClientBuilder::try_from(config)
        .map_err(|e| Error::ClientConfig(e.to_string()))?
        .with_layer(&layer)
        .build();
    Ok(client)
}

/// Parameters of every write: this tool's field manager, and server-side dry run when asked.
pub fn post_params(dry_run: bool) -> kube::api::PostParams {
    kube::api::PostParams {
        dry_run,
        field_manager: Some(crate::names::FIELD_MANAGER.into()),
    }
}

/// See [`post_params`].
pub fn patch_params(dry_run: bool) -> kube::api::PatchParams {
    kube::api::PatchParams {
        dry_run,
        field_manager: Some(crate::names::FIELD_MANAGER.into()),
        ..Default::default()
    }
}

struct RetryLayer {
    deadline: Instant,
    refused_retries: Option<u32>,
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
    reads: Reads,
    stats: Arc<ApiStats>,
}

impl<S> Layer<S> for RetryLayer
where
    S: Service<Request<Body>, Response = Response<Box<kube::client::DynBody>>, Error = BoxError>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Service = RetryService;

    fn layer(&self, inner: S) -> RetryService {
        // The stack below is not Clone; a buffer makes it shareable between retries.
        let inner = tower::buffer::Buffer::new(tower::util::BoxService::new(inner), 256);
        RetryService {
            inner,
            deadline: self.deadline,
            refused_retries: self.refused_retries,
            in_flight: self.in_flight.clone(),
            reads: self.reads,
            stats: self.stats.clone(),
        }
    }
}

type Inner = tower::buffer::Buffer<
    Request<Body>,
    <tower::util::BoxService<Request<Body>, Response<Box<kube::client::DynBody>>, BoxError> as Service<
        Request<Body>,
    >>::Future,
>;

#[derive(Clone)]
pub struct RetryService {
    inner: Inner,
    deadline: Instant,
    refused_retries: Option<u32>,
    /// One permit per request in flight, shared by every clone of this client.
    in_flight: Option<Arc<tokio::sync::Semaphore>>,
    reads: Reads,
    stats: Arc<ApiStats>,
}

fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Whether the connection was refused: nothing listens at the address (the TCP connect got a
/// reset). Found anywhere in the error's chain of sources.
fn is_connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        next = err.source();
    }
    false
}

fn retry_after<B>(resp: &Response<B>) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// 100 ms doubling to 3 s, with jitter so that concurrent runs do not retry in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(5))
        .min(Duration::from_secs(3));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

fn clone_request(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut out = Request::new(body);
    *out.method_mut() = req.method().clone();
    *out.uri_mut() = req.uri().clone();
    *out.version_mut() = req.version();
    *out.headers_mut() = req.headers().clone();
    *out.extensions_mut() = req.extensions().clone();
    Some(out)
}

impl Service<Request<Body>> for RetryService {
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Box<DynBody>>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let deadline = self.deadline;
        let refused_retries = self.refused_retries;
        let in_flight = self.in_flight.clone();
        let stats = self.stats.clone();
        if self.reads == Reads::FromCache
            && let Some(uri) = from_cache(req.method(), req.uri())
        {
            *req.uri_mut() = uri;
        }
        Box::pin(async move {
            let mut req = Some(req);
            let mut attempt = 0u32;
            let mut refused = 0u32;
            loop {
                let Some(original) = req.as_ref() else {
                    return Err("request body could not be replayed".into());
                };
                // A body that cannot be replayed is sent once, as it is.
                let this = match clone_request(original) {
                    Some(r) => r,
                    None => req.take().ok_or("request body could not be replayed")?,
                };
                let method = this.method().clone();
                let uri = this.uri().path().to_string();
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let outcome = {
                    // Held for the whole exchange, body included; not while backing off.
                    let _permit = match &in_flight {
                        Some(permits) => Some(permits.clone().acquire_owned().await?),
                        None => None,
                    };
                    send(inner.clone(), this).await
                };
                let (delay, why) = match &outcome {
                    Ok(resp) if is_transient(resp.status()) => (
                        retry_after(resp).unwrap_or_else(|| backoff(attempt)),
                        resp.status().to_string(),
                    ),
                    Ok(_) => return outcome,
                    Err(e) if is_connection_refused(e.as_ref()) => {
                        refused += 1;
                        if refused_retries.is_some_and(|cap| refused > cap) {
                            return outcome;
                        }
                        (backoff(attempt), e.to_string())
                    }
                    Err(e) => (backoff(attempt), e.to_string()),
                };
                if req.is_none() || Instant::now() + delay > deadline {
                    return outcome;
                }
                attempt += 1;
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%method, path = %uri, attempt, delay_ms = delay.as_millis() as u64, error = %why, "transient API failure, retrying");
                tokio::time::sleep(delay).await;
            }
        })
    }
}

/// Whether `uri` asks for a watch (`watch=true` or `watch=1`).
fn is_watch(uri: &http::Uri) -> bool {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| matches!(pair, "watch=true" | "watch=1"))
}

/// `uri` asking for any version the API server has (`resourceVersion=0`), when it is a GET of
/// the API that names no version and is not paginated or a watch; else `None`.
fn from_cache(method: &http::Method, uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path();
    if method != http::Method::GET || !(path.starts_with("/api/") || path.starts_with("/apis/")) {
        return None;
    }
    let query = uri.query().unwrap_or_default();
    let mut keys = query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or_default());
    if keys.any(|k| matches!(k, "resourceVersion" | "limit" | "continue" | "watch")) {
        return None;
    }
    let sep = if query.is_empty() { "?" } else { "&" };
    format!("{}{sep}resourceVersion=0", uri.path_and_query()?.as_str())
        .parse()
        .ok()
}

/// Sends one request and reads the whole response, so that a connection that breaks while the
/// body is still arriving is seen here (and retried) rather than by the caller. A watch is the
/// exception: its body is a stream of events, each wanted as it comes, so it is handed on as it
/// arrives and its caller handles a break.
async fn send(mut inner: Inner, req: Request<Body>) -> Result<Response<Box<DynBody>>, BoxError> {
    let watch = is_watch(req.uri());
    let resp = inner.ready().await?.call(req).await?;
    if watch {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let whole = http_body_util::Full::new(bytes).map_err(|never| -> BoxError { match never {} });
    Ok(Response::from_parts(parts, Box::new(whole) as Box<DynBody>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_told_from_its_query() {
        let uri = |s: &str| s.parse::<http::Uri>().expect("uri");
        assert!(is_watch(&uri("/apis/a/v1/x?fieldSelector=n&watch=true")));
        assert!(is_watch(&uri("/api/v1/x?watch=1&resourceVersion=5")));
        assert!(!is_watch(&uri("/api/v1/x?watch=false")));
        assert!(!is_watch(&uri("/api/v1/x?fieldSelector=watch%3Dtrue")));
        assert!(!is_watch(&uri("/api/v1/x")));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(100));
        assert!(backoff(0) >= Duration::from_millis(50));
        assert!(backoff(10) <= Duration::from_secs(3));
        assert!(backoff(10) >= Duration::from_millis(1500));
    }

    #[test]
    fn transient_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 201, 400, 401, 403, 404, 409, 422] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// An error that wraps another, as the connector's errors wrap the socket's.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<BoxError>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn wrapped(io: std::io::ErrorKind) -> BoxError {
        let inner: BoxError = Box::new(std::io::Error::new(io, "socket"));
        let connect: BoxError = Box::new(Wrapped("tcp connect error", Some(inner)));
        Box::new(Wrapped("client error (Connect)", Some(connect)))
    }

    #[test]
    fn a_refused_connection_is_told_from_other_transient_failures() {
        assert!(is_connection_refused(
            wrapped(std::io::ErrorKind::ConnectionRefused).as_ref()
        ));
        let plain: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_connection_refused(plain.as_ref()));
        for kind in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::BrokenPipe,
        ] {
            assert!(!is_connection_refused(wrapped(kind).as_ref()), "{kind:?}");
        }
        let no_io: BoxError = Box::new(Wrapped("operation timed out", None));
        assert!(!is_connection_refused(no_io.as_ref()));
    }

    /// A closed port: refused at once. With a cap of two, the request is sent three times and
    /// given up: the cap ends it, not the deadline (a minute, far from reached). Without a cap
    /// it is tried again until the deadline leaves no room for the next wait.
    #[tokio::test]
    async fn refused_connections_are_retried_at_most_the_cap() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().expect("uri");
        for (cap, deadline) in [
            (Some(2), Duration::from_secs(60)),
            (None, Duration::from_secs(2)),
        ] {
            let opts = ClientOptions {
                kubeconfig: None,
                context: None,
                deadline,
                request_timeout: Duration::from_secs(1),
                refused_retries: cap,
                max_in_flight: None,
                reads: Reads::Consistent,
            };
            let deadline = Instant::now() + deadline;
            let stats = Arc::new(ApiStats::default());
            let client = from_config(Config::new(url.clone()), &opts, deadline, stats.clone())
                .expect("client");
            let err = client
                .list_api_groups()
                .await
                .expect_err("nothing listens there");
            if cap.is_some() {
                assert_eq!(stats.requests(), 3, "{err}");
                assert_eq!(stats.retries(), 2, "{err}");
            } else {
                assert!(stats.requests() > 3, "{err}: {}", stats.requests());
                assert_eq!(stats.requests(), stats.retries() + 1, "{err}");
                // It stopped only when the longest wait the next retry could draw would have
                // passed the deadline (a slower machine only brings that moment closer).
                let next = u32::try_from(stats.retries()).expect("retries");
                let longest_wait = Duration::from_millis(100)
                    .saturating_mul(1 << next.min(5))
                    .min(Duration::from_secs(3));
                assert!(
                    Instant::now() + longest_wait > deadline,
                    "gave up after {} retries with the deadline still {:?} away",
                    stats.retries(),
                    deadline - Instant::now()
                );
            }
        }
    }

    #[test]
    fn only_unversioned_unpaginated_gets_of_the_api_are_read_from_the_cache() {
        let cached = |method: http::Method, uri: &str| {
            from_cache(&method, &uri.parse().expect("uri")).map(|u| u.to_string())
        };
        let get = |uri: &str| cached(http::Method::GET, uri);
        assert_eq!(
            get("/api/v1/namespaces/kyma-system/configmaps/connectivity-proxy").as_deref(),
            Some("/api/v1/namespaces/kyma-system/configmaps/connectivity-proxy?resourceVersion=0")
        );
        assert_eq!(
            get("/api/v1/namespaces/kyma-system/pods?labelSelector=app%3Dx").as_deref(),
            Some("/api/v1/namespaces/kyma-system/pods?labelSelector=app%3Dx&resourceVersion=0")
        );
        for unchanged in [
            "/apis/connectivityproxy.sap.com/v1/servicemappings?limit=500",
            "/apis/connectivityproxy.sap.com/v1/servicemappings?limit=500&continue=abc",
            "/api/v1/namespaces/kyma-system/pods?watch=true",
            "/api/v1/namespaces/kyma-system/configmaps/x?resourceVersion=12",
            "/apis",
            "/version",
        ] {
            assert_eq!(get(unchanged), None, "{unchanged}");
        }
        for method in [
            http::Method::PATCH,
            http::Method::POST,
            http::Method::DELETE,
        ] {
            assert_eq!(cached(method, "/api/v1/namespaces/x/configmaps/y"), None);
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let resp = Response::builder()
            .header("Retry-After", "2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(retry_after(&resp), Some(Duration::from_secs(2)));
        let resp = Response::builder()
            .header("Retry-After", "soon")
            .body(Body::empty())
            .unwrap();
        assert_eq!(retry_after(&resp), None);
    }
}
