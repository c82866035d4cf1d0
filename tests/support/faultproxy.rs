//! A fault-injecting HTTP proxy between the tool and the real API server, for the reliability
//! tests. The tool talks plain HTTP to it on 127.0.0.1 (a kubeconfig without credentials); it
//! forwards every request once, over TLS with the cluster's admin certificate, to the real API
//! server. It counts requests, can SIGKILL the tool right after the k-th request was answered
//! by the real server (before the answer is relayed), and can inject faults on a seeded
//! schedule, and can add a fixed delay each way to every request (a distant API server, for the
//! latency benchmark). The proxy runs on its own thread and runtime, so a test may block while
//! it works.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use kube::Client;

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: 1`; the request does not reach the server.
    TooManyRequests,
    /// 500; the request does not reach the server.
    InternalError,
    /// 503; the request does not reach the server.
    Unavailable,
    /// The connection is closed after the request was read, before it is forwarded.
    ResetBeforeForward,
    /// The request is forwarded and executed; the connection breaks halfway through the
    /// response body, so the client does not learn the outcome.
    ResetMidResponse,
    /// The request is forwarded and executed; its response is held back for the schedule's
    /// hold time (longer than the client's request timeout), then sent.
    Hold,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::TooManyRequests,
        Fault::InternalError,
        Fault::Unavailable,
        Fault::ResetBeforeForward,
        Fault::ResetMidResponse,
        Fault::Hold,
    ];
}

/// Which requests fail.
#[derive(Debug, Clone, Default)]
pub enum Schedule {
    #[default]
    None,
    /// Request number n fails with probability `rate`, with a fault kind picked uniformly from
    /// `kinds`; both come from a hash of (seed, n), so a seed names one schedule.
    Seeded {
        seed: u64,
        rate: f64,
        kinds: Vec<Fault>,
        hold: Duration,
    },
    /// Every request fails with this fault (a full outage).
    Outage(Fault),
    /// Requests up to `after` pass; every later one fails with `fault` (an outage mid-run).
    OutageAfter { after: u64, fault: Fault },
}

impl Schedule {
    fn fault_for(&self, seq: u64) -> Option<Fault> {
        match self {
            Schedule::None => None,
            Schedule::Outage(f) => Some(*f),
            Schedule::OutageAfter { after, fault } => (seq > *after).then_some(*fault),
            Schedule::Seeded {
                seed, rate, kinds, ..
            } => {
                let r = splitmix64(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
                if unit < *rate && !kinds.is_empty() {
                    let pick = splitmix64(r) % kinds.len() as u64;
                    Some(kinds[pick as usize])
                } else {
                    None
                }
            }
        }
    }

    fn hold(&self) -> Duration {
        match self {
            Schedule::Seeded { hold, .. } => *hold,
            _ => Duration::from_secs(3),
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What the proxy saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// 1-based, in the order requests arrived.
    pub seq: u64,
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// The real server's status, when the request was forwarded.
    pub upstream_status: Option<u16>,
    pub fault: Option<Fault>,
    /// Not forwarded because the tool had been killed (or was being killed).
    pub dropped_after_kill: bool,
}

/// Runs after the real server answered a forwarded request and before the answer is relayed;
/// returns the work to do there (e.g. a foreign write through the admin client), if any.
pub type Hook = Arc<dyn Fn(&Seen, &Client) -> Option<BoxFuture<'static, ()>> + Send + Sync>;

/// A hook that holds each answer until `n` answers are held at once, or until it has waited
/// `patience`: requests that the client sends together are then in flight together however
/// slow the machine, so that the most in flight at once ([`FaultProxy::max_in_flight`]) is the
/// client's own limit, not an accident of timing. `n` one above a limit the client must keep
/// makes every answer wait its patience; a client that sends more than its limit is caught with
/// the extra request in flight.
pub fn gather(n: usize, patience: Duration) -> Hook {
    // (answers held in this round, the round); a round ends when `n` are held.
    let held = Arc::new(Mutex::new((0usize, 0u64)));
    let (release, _) = tokio::sync::watch::channel(0u64);
    let release = Arc::new(release);
    Arc::new(move |_: &Seen, _: &Client| {
        let mut state = held.lock().expect("gather");
        state.0 += 1;
        if state.0 >= n {
            *state = (0, state.1 + 1);
            release.send_replace(state.1);
            return None;
        }
        let round = state.1;
        // Subscribed while the lock is held: a release after it is seen.
        let mut released = release.subscribe();
        drop(state);
        let held = held.clone();
        Some(Box::pin(async move {
            if tokio::time::timeout(patience, released.changed())
                .await
                .is_err()
            {
                // Gave up waiting: it no longer counts as held in this round.
                let mut state = held.lock().expect("gather");
                if state.1 == round {
                    state.0 -= 1;
                }
            }
        }))
    })
}

#[derive(Default)]
struct Control {
    schedule: Schedule,
    /// Kill the process after this request was answered by the server.
    kill_after: Option<u64>,
    pid: Option<u32>,
    killed_at: Option<u64>,
    hook: Option<Hook>,
    /// Added before a request is handled and again before its answer is relayed.
    delay_each_way: Duration,
    /// How many more list requests that carry a continue token are answered 410 Gone.
    expire_continue: u64,
}

struct Shared {
    seq: AtomicU64,
    control: Mutex<Control>,
    log: Mutex<Vec<Seen>>,
    /// When each request arrived and when its answer left, delays included.
    spans: Mutex<Vec<(Instant, Instant)>>,
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    kubeconfig: PathBuf,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type RespBody = BoxBody<Bytes, std::io::Error>;

impl FaultProxy {
    /// Starts a proxy in front of the cluster of `cluster_kubeconfig` and writes the tool's
    /// kubeconfig for it into `dir`.
    pub fn start(cluster_kubeconfig: &Path, dir: &Path) -> FaultProxy {
        let shared = Arc::new(Shared {
            seq: AtomicU64::new(0),
            control: Mutex::new(Control::default()),
            log: Mutex::new(Vec::new()),
            spans: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let kc = cluster_kubeconfig.to_path_buf();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("faultproxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(serve(kc, thread_shared, ready_tx, stop_rx));
                // Connections still open (a held response) must not keep the thread alive.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn proxy thread");
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("proxy did not start");
        let kubeconfig = dir.join(format!("kubeconfig-proxy-{}", addr.port()));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://{addr}\nusers:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: anonymous\ncurrent-context: proxy\n"
            ),
        )
        .expect("write proxy kubeconfig");
        FaultProxy {
            addr,
            kubeconfig,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The kubeconfig that points the tool at this proxy (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.shared.control.lock().expect("proxy control")
    }

    /// Requests received since the start or the last [`FaultProxy::reset`].
    pub fn requests(&self) -> u64 {
        self.shared.seq.load(Ordering::SeqCst)
    }

    /// Starts counting afresh: request numbers, the log, the kill; schedule and hook stay.
    pub fn reset(&self) {
        let mut c = self.control();
        c.kill_after = None;
        c.pid = None;
        c.killed_at = None;
        self.shared.seq.store(0, Ordering::SeqCst);
        self.shared.log.lock().expect("log").clear();
        self.shared.spans.lock().expect("spans").clear();
    }

    /// The longest chain of requests each of which arrived after the answer to the one before
    /// it had left: the round trips the client made in sequence, as the network saw them.
    pub fn round_trips_in_sequence(&self) -> usize {
        let mut spans = self.shared.spans.lock().expect("spans").clone();
        spans.sort();
        let mut chain: Vec<usize> = Vec::with_capacity(spans.len());
        for (i, (arrived, _)) in spans.iter().enumerate() {
            let before = spans[..i]
                .iter()
                .zip(&chain)
                .filter(|((_, answered), _)| answered <= arrived)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            chain.push(before + 1);
        }
        chain.into_iter().max().unwrap_or(0)
    }

    /// The most requests that were in flight at once (arrived, their answer not yet left).
    pub fn max_in_flight(&self) -> usize {
        let spans = self.shared.spans.lock().expect("spans").clone();
        // +1 at each arrival, -1 at each departure; a departure at the same instant goes first.
        let mut events: Vec<(Instant, i32)> = spans
            .iter()
            .flat_map(|(arrived, left)| [(*arrived, 1), (*left, -1)])
            .collect();
        events.sort();
        let mut now = 0i32;
        let mut most = 0i32;
        for (_, step) in events {
            now += step;
            most = most.max(now);
        }
        most.max(0) as usize
    }

    pub fn set_schedule(&self, schedule: Schedule) {
        self.control().schedule = schedule;
    }

    /// Adds `delay` before each request is handled and again before its answer goes back, so
    /// that every request costs at least twice `delay` more (default: none).
    pub fn set_delay_each_way(&self, delay: Duration) {
        self.control().delay_each_way = delay;
    }

    /// The next `n` list requests that carry a continue token are answered 410 Gone, as the
    /// server answers a token that expired (compaction) during a long list; not forwarded.
    pub fn expire_continue_tokens(&self, n: u64) {
        self.control().expire_continue = n;
    }

    pub fn set_hook(&self, hook: Option<Hook>) {
        self.control().hook = hook;
    }

    /// Arms the kill: after request `k` was answered by the server, the process `set_pid`
    /// names is killed with SIGKILL and the answer is not relayed; no later request is
    /// forwarded. Arm it before starting the process, then give the pid.
    pub fn kill_after(&self, k: u64) {
        let mut c = self.control();
        c.kill_after = Some(k);
        c.killed_at = None;
    }

    pub fn set_pid(&self, pid: u32) {
        self.control().pid = Some(pid);
    }

    /// The request after which the process was killed, if it was.
    pub fn killed_at(&self) -> Option<u64> {
        self.control().killed_at
    }

    pub fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().expect("log").clone()
    }
}

async fn serve(
    cluster_kubeconfig: PathBuf,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<SocketAddr>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let upstream = upstream_client(&cluster_kubeconfig).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    ready
        .send(listener.local_addr().expect("proxy address"))
        .expect("report proxy address");
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(shared.clone(), upstream.clone(), req)
            });
            // Errors here are the faults this proxy injects, or the client going away.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The admin client that forwards: exactly once per request (no retries of its own).
async fn upstream_client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("cluster kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("cluster config");
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(60));
    Client::try_from(config).expect("upstream client")
}

fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn io_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, what.to_string())
}

/// Headers that belong to one connection, not to the request or response.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if [
            header::HOST,
            header::CONNECTION,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
        ]
        .contains(name)
            || name.as_str() == "keep-alive"
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

fn status_response(code: StatusCode, retry_after: Option<u64>) -> Response<RespBody> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": format!("injected by the fault proxy: {code}"),
        "reason": code.canonical_reason().unwrap_or("Failure"),
        "code": code.as_u16(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(s) = retry_after {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_str(&s.to_string()).expect("header"),
        );
    }
    resp
}

/// [`handle_now`], with the configured delay on the way in and on the way out (faults too).
async fn handle(
    shared: Arc<Shared>,
    upstream: Client,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, std::io::Error> {
    let arrived = Instant::now();
    let delay = shared.control.lock().expect("proxy control").delay_each_way;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let answer = handle_now(shared.clone(), upstream, req).await;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared
        .spans
        .lock()
        .expect("spans")
        .push((arrived, Instant::now()));
    answer
}

async fn handle_now(
    shared: Arc<Shared>,
    upstream: Client,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, std::io::Error> {
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut seen = Seen {
        seq,
        method: parts.method.clone(),
        path: path.clone(),
        upstream_status: None,
        fault: None,
        dropped_after_kill: false,
    };
    let (kill_after, fault, hold, hook, expire) = {
        let mut c = shared.control.lock().expect("proxy control");
        let expire = c.expire_continue > 0 && path.contains("continue=");
        if expire {
            c.expire_continue -= 1;
        }
        (
            c.kill_after,
            c.schedule.fault_for(seq),
            c.schedule.hold(),
            c.hook.clone(),
            expire,
        )
    };
    let record = |seen: &Seen| shared.log.lock().expect("log").push(seen.clone());

    // After the k-th request the process is dead or dying: nothing later reaches the server.
    if kill_after.is_some_and(|k| seq > k) {
        seen.dropped_after_kill = true;
        record(&seen);
        return Err(io_error("process killed"));
    }
    let bytes = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();

    if expire {
        record(&seen);
        return Ok(status_response(StatusCode::GONE, None));
    }
    seen.fault = fault;
    match fault {
        Some(Fault::TooManyRequests) => {
            record(&seen);
            return Ok(status_response(StatusCode::TOO_MANY_REQUESTS, Some(1)));
        }
        Some(Fault::InternalError) => {
            record(&seen);
            return Ok(status_response(StatusCode::INTERNAL_SERVER_ERROR, None));
        }
        Some(Fault::Unavailable) => {
            record(&seen);
            return Ok(status_response(StatusCode::SERVICE_UNAVAILABLE, None));
        }
        Some(Fault::ResetBeforeForward) => {
            record(&seen);
            return Err(io_error("injected reset before forwarding"));
        }
        _ => {}
    }

    let mut up = Request::new(kube::client::Body::from(bytes.to_vec()));
    *up.method_mut() = parts.method.clone();
    *up.uri_mut() = path.parse().expect("path and query");
    copy_headers(&parts.headers, up.headers_mut());
    let resp = match upstream.send(up).await {
        Ok(r) => r,
        Err(_) if kill_after == Some(seq) => return killed_without_answer(&shared, seen).await,
        Err(e) => {
            record(&seen);
            let mut r = status_response(StatusCode::BAD_GATEWAY, None);
            *r.body_mut() = full(format!("fault proxy: upstream failed: {e}"));
            return Ok(r);
        }
    };
    let (rparts, rbody) = resp.into_parts();
    let rbytes = match rbody.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) if kill_after == Some(seq) => return killed_without_answer(&shared, seen).await,
        Err(e) => return Err(std::io::Error::other(e)),
    };
    seen.upstream_status = Some(rparts.status.as_u16());

    if kill_after == Some(seq) {
        kill_process(&shared, seq).await;
        record(&seen);
        return Err(io_error("process killed"));
    }
    if let Some(hook) = hook
        && let Some(work) = hook(&seen, &upstream)
    {
        work.await;
    }
    record(&seen);

    let mut out_headers = HeaderMap::new();
    copy_headers(&rparts.headers, &mut out_headers);
    let body = match fault {
        Some(Fault::Hold) => {
            tokio::time::sleep(hold).await;
            full(rbytes)
        }
        Some(Fault::ResetMidResponse) => {
            // Announce the whole length, send half, then break the connection.
            out_headers.insert(
                header::CONTENT_LENGTH,
                header::HeaderValue::from(rbytes.len()),
            );
            let half = rbytes.slice(..rbytes.len() / 2);
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
                Ok(Frame::data(half)),
                Err(io_error("injected reset mid-response")),
            ];
            StreamBody::new(futures::stream::iter(frames)).boxed()
        }
        _ => full(rbytes),
    };
    let mut out = Response::new(body);
    *out.status_mut() = rparts.status;
    *out.headers_mut() = out_headers;
    Ok(out)
}

/// The crash point's request, when the server's answer was lost on the way (a busy machine):
/// the tool is killed there all the same, not knowing whether the request was executed.
async fn killed_without_answer(
    shared: &Shared,
    seen: Seen,
) -> Result<Response<RespBody>, std::io::Error> {
    kill_process(shared, seen.seq).await;
    shared.log.lock().expect("log").push(seen);
    Err(io_error("process killed"))
}

/// SIGKILL to the tool, once its pid is known (it is given right after the spawn).
async fn kill_process(shared: &Shared, seq: u64) {
    loop {
        let pid = {
            let mut c = shared.control.lock().expect("proxy control");
            if let Some(pid) = c.pid {
                // SAFETY: kill(2) on a pid of a child this test spawned and has not reaped.
                let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
                c.killed_at = Some(seq);
                Some(pid)
            } else {
                None
            }
        };
        if pid.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
