//! The operator console: web pages on their own listener (loopback by default) for watching
//! Sentinel, investigating clusters, undoing actions, notifying targets, checking the evidence
//! log and exporting cases.
//!
//! Server-rendered with minijinja templates (autoescaped); one small script (confirmations and
//! the overview's refresh). Every page needs an operator's session; every form carries the
//! session's CSRF token, and a request from another site is refused before its form is read.
//! Logins are braked per address and per name, and password checks run off the async workers,
//! two at a time.

pub mod activity;
pub mod auth;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequest, FromRequestParts, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use rampart_core::AccountId;
use rampart_sentinel::Ranges;
use rampart_store::SightingQuery;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::case_export;
use crate::investigation::{self, ClusterReport, Scope};
use crate::state::{Shared, now_ms};
use auth::{LoginBrake, Session, Sessions};

const SESSION_COOKIE: &str = "rampart_console";
const LOGIN_COOKIE: &str = "rampart_login";
/// Password checks at once, at most (each takes ~19 MiB and tens of milliseconds).
const CONCURRENT_HASHES: usize = 2;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Sign-ins that may wait for a password check at once.
const MAX_WAITING_SIGN_INS: usize = 16;
/// Largest request body the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's state, shared by its handlers.
pub struct Console {
    shared: Arc<Shared>,
    templates: Environment<'static>,
    sessions: Sessions,
    brake: LoginBrake,
    hashing: Semaphore,
    operators: PathBuf,
    hosting: Ranges,
    /// Mark cookies `Secure` (the console is reached through a TLS proxy).
    secure_cookies: bool,
    /// The overview's cluster count and when it was counted: the overview refreshes itself,
    /// and an investigation reads the store, so it is counted at most every half minute.
    cluster_count: std::sync::Mutex<Option<(Instant, usize)>>,
    /// Sign-ins waiting for a password check now.
    waiting: std::sync::atomic::AtomicUsize,
    /// The evidence key's public half, hex (read once: the log's lock is not for page loads).
    evidence_key: Option<String>,
}

/// Counts a sign-in as waiting while it lives.
struct WaitingGuard<'a> {
    counter: &'a std::sync::atomic::AtomicUsize,
    count: usize,
}

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        let count = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Self { counter, count }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("operators", &self.operators).finish_non_exhaustive()
    }
}

fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("clusters.html", include_str!("templates/clusters.html")),
        ("cluster.html", include_str!("templates/cluster.html")),
        ("account.html", include_str!("templates/account.html")),
        ("actions.html", include_str!("templates/actions.html")),
        ("evidence.html", include_str!("templates/evidence.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        env.add_template(name, source)?;
    }
    // Operators read times in UTC, to the second.
    env.add_filter("time", |ms: u64| {
        let text = case_export::rfc3339(ms).replace('T', " ");
        format!("{} UTC", text.split('.').next().unwrap_or_default())
    });
    Ok(env)
}

impl Console {
    pub fn new(shared: Arc<Shared>) -> Result<Self, String> {
        let config = &shared.config;
        let hosting = crate::sentinel_service::hosting_ranges(&config.sentinel)?;
        Ok(Self {
            templates: templates().map_err(|e| format!("console templates: {e}"))?,
            sessions: Sessions::default(),
            brake: LoginBrake::default(),
            hashing: Semaphore::new(CONCURRENT_HASHES),
            operators: auth::operators_path(&config.data_dir),
            hosting,
            secure_cookies: config.console.allow_remote,
            cluster_count: std::sync::Mutex::new(None),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            evidence_key: shared.evidence.as_ref().map(|log| {
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                hex::encode(log.public_key().as_bytes())
            }),
            shared,
        })
    }

    fn render(&self, name: &str, ctx: Value) -> Response {
        match self.templates.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => page(StatusCode::OK, html),
            Err(e) => {
                warn!(error = %e, template = name, "console: a page did not render");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The page could not be drawn; the server log says why.".into(),
                )
            }
        }
    }

    fn message(&self, status: StatusCode, op: Option<&Operator>, title: &str, text: &str) -> Response {
        let mut response = self.render(
            "message.html",
            context! { title, text, operator => op.map(|o| o.session.operator.clone()), csrf => op.map(|o| o.session.csrf.clone()) },
        );
        *response.status_mut() = status;
        response
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age_secs: Option<u64>) -> HeaderValue {
        let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
        if let Some(age) = max_age_secs {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure_cookies {
            cookie.push_str("; Secure");
        }
        HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// How exports name this server: by its evidence key, which investigators check it with.
    fn server_name(&self) -> String {
        self.evidence_key.as_deref().map_or_else(|| "rampart".to_owned(), case_export::server_name)
    }

    async fn cluster_count(&self) -> usize {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(30);
        let cached = *self.cluster_count.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, count)) = cached
            && at.elapsed() < FRESH
        {
            return count;
        }
        let count = self.clusters().await.map(|list| list.len()).unwrap_or(0);
        *self.cluster_count.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), count));
        count
    }

    async fn clusters(&self) -> Result<Vec<ClusterReport>, rampart_store::StoreError> {
        let days = self.shared.config.sentinel.metadata_retention_days;
        let scope =
            Scope { since_ms: now_ms().saturating_sub(days.saturating_mul(DAY_MS)), hosting: &self.hosting };
        investigation::investigate(self.shared.store.as_ref(), scope).await
    }
}

/// An HTML page with the headers every console page carries.
fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Same-origin: nothing leaks to other sites, and the console's own forms carry their Origin.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A signed-in operator: extracting one redirects to the login page when there is none.
pub struct Operator {
    session: Session,
    token: String,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the session's cookie or CSRF token.
        f.debug_struct("Operator").field("name", &self.session.operator).finish_non_exhaustive()
    }
}

impl FromRequestParts<Arc<Console>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let token = cookie_value(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?.to_owned();
        let session = console.sessions.get(&token, Instant::now()).ok_or_else(to_login)?;
        // An operator removed from the file, or given a new password, is signed out at their
        // next request.
        let still_there = auth::read_operators(&console.operators)
            .map(|ops| {
                ops.iter().any(|(name, hash)| {
                    *name == session.operator && auth::credential_tag(hash) == session.credential
                })
            })
            .unwrap_or(false);
        if !still_there {
            console.sessions.end(&token);
            return Err(to_login());
        }
        Ok(Self { session, token })
    }
}

/// Refuse what another site makes a browser send: a state-changing request must come from the
/// console's own pages (same origin), whatever cookies it carries.
async fn same_origin_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let headers = request.headers();
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| site != "same-origin" && site != "none");
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        // "null" is what browsers send when they will not say (privacy settings, sandboxes):
        // Sec-Fetch-Site and the CSRF token decide then.
        let foreign_origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|origin| *origin != "null")
            .is_some_and(|origin| {
                let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
                Some(origin_host) != host
            });
        if cross_site || foreign_origin {
            warn!("console: refused a cross-site request");
            let mut response =
                (StatusCode::FORBIDDEN, "Refused: this request came from another site.\n").into_response();
            secure_headers(response.headers_mut());
            return response;
        }
    }
    next.run(request).await
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/clusters", get(clusters_page))
        .route("/clusters/{id}", get(cluster_page))
        .route("/clusters/{id}/notify", post(notify))
        .route("/clusters/{id}/case.json", get(case_file))
        .route("/clusters/{id}/stix.json", get(stix_file))
        .route("/accounts/{subject}", get(account_page))
        .route("/actions", get(actions_page))
        .route("/actions/lift", post(lift))
        .route("/evidence", get(evidence_page))
        .route("/evidence/verify", post(verify_evidence))
        .route("/static/console.css", get(|| async { asset("text/css", include_str!("static/console.css")) }))
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript", include_str!("static/console.js")) }),
        )
        .layer(axum::middleware::from_fn(same_origin_only))
        // The largest form is a notice (2 KiB): nothing bigger is read.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(console)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure_headers(response.headers_mut());
    response
}

/// Serve the console until the server shuts down.
pub async fn serve(console: Arc<Console>, listener: TcpListener) {
    let shutdown = console.shared.shutdown.clone();
    let app = router(console).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) =
        axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
    {
        warn!(error = %e, "console: the listener stopped");
    }
}

// ------------------------------------------------------------------------------- login

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

async fn login_page(State(c): State<Arc<Console>>) -> Response {
    // Login CSRF: the form's token must match a cookie only this site could have set.
    let token = auth::random_token();
    let mut response = c.render("login.html", context! { csrf => token.clone(), error => None::<String> });
    response.headers_mut().append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, &token, "/login", Some(600)));
    response
}

async fn login(
    State(c): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let refuse = |status: StatusCode, error: String| {
        let token = auth::random_token();
        let mut response = c.render("login.html", context! { csrf => token.clone(), error });
        *response.status_mut() = status;
        response
            .headers_mut()
            .append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, &token, "/login", Some(600)));
        response
    };
    let expected = cookie_value(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !auth::same_token(expected, &form.csrf) {
        return refuse(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this page; try again.".into(),
        );
    }
    let ip: IpAddr = peer.ip();
    let now = Instant::now();
    // What the brake keys on and the log shows: a valid name, or one word for all others (a
    // name is typed by anyone, so its length and characters are not the log's to carry).
    let shown = if auth::valid_name(&form.name) { form.name.as_str() } else { "(not an operator name)" };
    if let Err(wait) = c.brake.attempt(ip, shown, now) {
        warn!(operator = %shown, "console: login braked after repeated failures");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed logins. Try again in {} minutes.", wait.as_secs().div_ceil(60)),
        );
    }
    let operators = match auth::read_operators(&c.operators) {
        Ok(ops) => ops,
        Err(e) => {
            warn!(error = %e, "console: cannot read the operators file");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The operators file cannot be read; see the server log.".into(),
            );
        }
    };
    // Sign-ins waiting for a password check, at most: past that, say so instead of queueing.
    let waiting = WaitingGuard::enter(&c.waiting);
    if waiting.count > MAX_WAITING_SIGN_INS {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins at once; try again shortly.".into(),
        );
    }
    let Ok(_permit) = c.hashing.acquire().await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "The server is stopping.".into());
    };
    drop(waiting);
    let credential =
        operators.iter().find(|(n, _)| *n == form.name).map(|(_, hash)| auth::credential_tag(hash));
    let name = form.name.clone();
    let password = zeroize::Zeroizing::new(form.password);
    let ok = tokio::task::spawn_blocking(move || auth::check_password(&operators, &name, &password))
        .await
        .unwrap_or(false);
    let (true, Some(credential)) = (ok, credential) else {
        // The attempt was counted as failed when it began.
        c.shared.metrics.console_login("failed");
        warn!(operator = %shown, "console: failed login");
        return refuse(StatusCode::UNAUTHORIZED, "Wrong name or password.".into());
    };
    c.brake.succeeded(ip, shown, now);
    c.shared.metrics.console_login("ok");
    info!(operator = %form.name, "console: operator signed in");
    let session = c.sessions.start(&form.name, credential, now);
    let mut response = Redirect::to("/").into_response();
    let cookies = response.headers_mut();
    cookies.append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, &session, "/", None));
    cookies.append(header::SET_COOKIE, c.cookie(LOGIN_COOKIE, "", "/login", Some(0)));
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

impl CarriesToken for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A form that carries the session's CSRF token.
trait CarriesToken {
    fn csrf(&self) -> &str;
}

/// A form posted by a signed-in operator, with its CSRF token checked: every state-changing
/// handler takes its form this way, so none can forget the check.
struct CheckedForm<T> {
    op: Operator,
    form: T,
}

impl<T> FromRequest<Arc<Console>> for CheckedForm<T>
where
    T: serde::de::DeserializeOwned + CarriesToken + Send,
{
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, console: &Arc<Console>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let op = Operator::from_request_parts(&mut parts, console).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let Form(form) =
            Form::<T>::from_request(request, console).await.map_err(IntoResponse::into_response)?;
        if !auth::same_token(&op.session.csrf, form.csrf()) {
            return Err(console.message(
                StatusCode::FORBIDDEN,
                Some(&op),
                "Refused",
                "The form's token did not match your session.",
            ));
        }
        Ok(Self { op, form })
    }
}

async fn logout(State(c): State<Arc<Console>>, CheckedForm { op, .. }: CheckedForm<CsrfForm>) -> Response {
    c.sessions.end(&op.token);
    info!(operator = %op.session.operator, "console: operator signed out");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, c.cookie(SESSION_COOKIE, "", "/", Some(0)));
    response
}

// ------------------------------------------------------------------------------- pages

/// A bar chart as inline SVG markup (numbers only: nothing in it comes from users).
fn bar_chart(values: &[u64], label: &str) -> String {
    const W: u64 = 600;
    const H: u64 = 120;
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1) as u64;
    let bar = W / n;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{label}\"><text x=\"0\" y=\"12\">{label} (max {max})</text>",
        H + 20
    );
    for (i, v) in values.iter().enumerate() {
        let h = v * H / max;
        svg.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\"><title>{v}</title></rect>",
            i as u64 * bar,
            20 + H - h,
            bar.saturating_sub(1).max(1)
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn base_ctx(op: &Operator) -> (String, String) {
    (op.session.operator.clone(), op.session.csrf.clone())
}

async fn overview(State(c): State<Arc<Console>>, op: Operator) -> Response {
    let now = now_ms();
    let actions = match c.shared.store.sentinel_actions(1_000).await {
        Ok(a) => a,
        Err(e) => return store_failed(&c, &op, e),
    };
    let in_force = actions.iter().filter(|a| a.lifted_at.is_none() && a.until > now).count();
    // Actions per hour over the last day, oldest first.
    let mut per_hour = vec![0u64; 24];
    for a in &actions {
        let age = now.saturating_sub(a.created_at) / 3_600_000;
        if let Some(count) = 23usize.checked_sub(age as usize).and_then(|slot| per_hour.get_mut(slot)) {
            *count += 1;
        }
    }
    let series = c.shared.activity.series(now);
    let mut charts: Vec<Value> = activity::SERIES
        .iter()
        .zip(series.iter())
        .map(|(name, values)| {
            Value::from_safe_string(bar_chart(values, &format!("{name} per minute, last hour")))
        })
        .collect();
    charts.push(Value::from_safe_string(bar_chart(&per_hour, "Sentinel actions per hour, last day")));
    let totals: BTreeMap<&str, u64> = activity::SERIES
        .iter()
        .zip(series.iter())
        .map(|(name, values)| (*name, values.iter().sum()))
        .collect();
    let clusters = c.cluster_count().await;
    let (operator, csrf) = base_ctx(&op);
    c.render(
        "overview.html",
        context! {
            operator, csrf, charts, totals, in_force, clusters,
            connected => c.shared.hub.attached_devices().len(),
            sentinel_on => c.shared.sentinel.is_some(),
            recent => Value::from(Serde(actions.iter().take(10).map(crate::investigation::ActionReport::from).collect::<Vec<_>>())),
            now,
        },
    )
}

fn store_failed(c: &Console, op: &Operator, e: rampart_store::StoreError) -> Response {
    warn!(error = %e, "console: the store failed");
    c.message(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(op),
        "The store is not answering",
        "Try again in a moment; the server log says why.",
    )
}

async fn clusters_page(State(c): State<Arc<Console>>, op: Operator) -> Response {
    let clusters = match c.clusters().await {
        Ok(list) => list,
        Err(e) => return store_failed(&c, &op, e),
    };
    let (operator, csrf) = base_ctx(&op);
    c.render("clusters.html", context! { operator, csrf, clusters => Value::from(Serde(&clusters)) })
}

async fn find_cluster(c: &Console, op: &Operator, id: &str) -> Result<ClusterReport, Response> {
    let clusters = c.clusters().await.map_err(|e| store_failed(c, op, e))?;
    clusters.into_iter().find(|cl| cl.id == id).ok_or_else(|| {
        c.message(
            StatusCode::NOT_FOUND,
            Some(op),
            "No such cluster",
            "It may have aged out of the metadata retention.",
        )
    })
}

async fn cluster_page(State(c): State<Arc<Console>>, op: Operator, Path(id): Path<String>) -> Response {
    match find_cluster(&c, &op, &id).await {
        Ok(cluster) => {
            let (operator, csrf) = base_ctx(&op);
            c.render("cluster.html", context! { operator, csrf, cluster => Value::from(Serde(&cluster)), notice => None::<String> })
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct NotifyForm {
    csrf: String,
    message: String,
}

impl CarriesToken for NotifyForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn notify(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
    CheckedForm { op, form }: CheckedForm<NotifyForm>,
) -> Response {
    let cluster = match find_cluster(&c, &op, &id).await {
        Ok(cluster) => cluster,
        Err(response) => return response,
    };
    // Browsers send newlines as CR LF; the notice allows only LF.
    let text = form.message.replace("\r\n", "\n");
    if let Err(e) = rampart_proto::server_notice(text.as_bytes().to_vec()) {
        return c.message(StatusCode::BAD_REQUEST, Some(&op), "The notice cannot be sent", &e.to_string());
    }
    let mut devices = 0;
    for target in &cluster.targets {
        match investigation::send_notice(
            c.shared.store.as_ref(),
            &c.shared.config,
            AccountId(target.account),
            &text,
            now_ms(),
        )
        .await
        {
            Ok(stored) => {
                devices += stored.len();
                for message in stored {
                    c.shared.hub.push_message(message);
                }
            }
            Err(e) => warn!(error = %e, account = target.account, "console: a notice was not queued"),
        }
    }
    info!(operator = %op.session.operator, cluster = %id, targets = cluster.targets.len(), "console: targets notified");
    crate::sentinel_service::append_evidence(
        &c.shared,
        vec![rampart_sentinel::Record {
            decision: "notify_targets".into(),
            subject: id.clone(),
            by: format!("operator {}", op.session.operator),
            reason: format!("a notice to the {} targets of cluster {id}", cluster.targets.len()),
            signals: BTreeMap::from([
                ("targets".to_owned(), cluster.targets.len() as u64),
                ("devices".to_owned(), devices as u64),
            ]),
            until_ms: None,
        }],
    )
    .await;
    let (operator, csrf) = base_ctx(&op);
    let notice = format!("Notice queued for {} targets ({devices} devices).", cluster.targets.len());
    c.render("cluster.html", context! { operator, csrf, cluster => Value::from(Serde(&cluster)), notice })
}

fn json_download(name: &str, value: &serde_json::Value) -> Response {
    let body = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(headers);
    response
}

async fn case_file(State(c): State<Arc<Console>>, op: Operator, Path(id): Path<String>) -> Response {
    let cluster = match find_cluster(&c, &op, &id).await {
        Ok(cluster) => cluster,
        Err(response) => return response,
    };
    let Some(log) = c.shared.evidence.clone() else {
        return c.message(StatusCode::NOT_FOUND, Some(&op), "No evidence log", "This server keeps none.");
    };
    let subjects = case_export::evidence_subjects(&cluster);
    let operator = op.session.operator.clone();
    let server = c.server_name();
    let signed = tokio::task::spawn_blocking(move || {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        let excerpt =
            log.excerpt(|r| case_export::names_one_of(&r.subject, &subjects)).map_err(|e| e.to_string())?;
        log.sign_case(case_export::case(&cluster, excerpt, &server, now_ms())).map_err(|e| e.to_string())
    })
    .await;
    match signed {
        Ok(Ok(file)) => {
            info!(operator = %operator, cluster = %id, "console: case exported");
            json_download(&format!("{id}.case.json"), &file)
        }
        Ok(Err(why)) => {
            c.message(StatusCode::INTERNAL_SERVER_ERROR, Some(&op), "The case could not be made", &why)
        }
        Err(_) => c.message(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(&op),
            "The case could not be made",
            "the export stopped",
        ),
    }
}

async fn stix_file(State(c): State<Arc<Console>>, op: Operator, Path(id): Path<String>) -> Response {
    let cluster = match find_cluster(&c, &op, &id).await {
        Ok(cluster) => cluster,
        Err(response) => return response,
    };
    let server = c.server_name();
    json_download(&format!("{id}.stix.json"), &case_export::stix_bundle(&cluster, &server, now_ms()))
}

async fn account_page(State(c): State<Arc<Console>>, op: Operator, Path(subject): Path<String>) -> Response {
    let Some(account) = investigation::account_of_subject(&subject) else {
        return c.message(
            StatusCode::NOT_FOUND,
            Some(&op),
            "No such account",
            "Accounts are named a1, a2, ...",
        );
    };
    let days = c.shared.config.sentinel.metadata_retention_days;
    let since = now_ms().saturating_sub(days.saturating_mul(DAY_MS));
    let sightings = match c
        .shared
        .store
        .sentinel_sightings(SightingQuery {
            accounts: vec![account],
            since,
            limit: 2_000,
            ..Default::default()
        })
        .await
    {
        Ok(s) => s,
        Err(e) => return store_failed(&c, &op, e),
    };
    let actions = match c.shared.store.sentinel_actions(10_000).await {
        Ok(a) => a,
        Err(e) => return store_failed(&c, &op, e),
    };
    let now = now_ms();
    let actions: Vec<_> = actions
        .iter()
        .filter(|a| a.subject == subject)
        .map(|a| (crate::investigation::ActionReport::from(a), a.lifted_at.is_none() && a.until > now))
        .map(|(a, in_force)| context! { a => Value::from(Serde(&a)), in_force })
        .collect();
    let seen: Vec<_> = sightings
        .iter()
        .map(|s| {
            context! {
                at_ms => s.at, kind => s.kind.as_str(), peer => s.peer.map(|p| p.0),
                network => s.network.clone(), address => s.address.clone(), client => s.client.clone(),
            }
        })
        .collect();
    let (operator, csrf) = base_ctx(&op);
    c.render("account.html", context! { operator, csrf, subject, seen, actions })
}

async fn actions_page(State(c): State<Arc<Console>>, op: Operator) -> Response {
    render_actions(&c, &op, None).await
}

async fn render_actions(c: &Console, op: &Operator, notice: Option<String>) -> Response {
    let now = now_ms();
    let actions = match c.shared.store.sentinel_actions(500).await {
        Ok(a) => a,
        Err(e) => return store_failed(c, op, e),
    };
    let actions: Vec<_> = actions
        .iter()
        .map(|a| (crate::investigation::ActionReport::from(a), a.lifted_at.is_none() && a.until > now))
        .map(|(a, in_force)| context! { a => Value::from(Serde(&a)), in_force })
        .collect();
    let (operator, csrf) = base_ctx(op);
    c.render("actions.html", context! { operator, csrf, actions, notice })
}

#[derive(Deserialize)]
struct LiftForm {
    csrf: String,
    subject: String,
}

impl CarriesToken for LiftForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn lift(State(c): State<Arc<Console>>, CheckedForm { op, form }: CheckedForm<LiftForm>) -> Response {
    let by = format!("console:{}", op.session.operator);
    let lifted = match c.shared.store.lift_sentinel_actions(&form.subject, &by, now_ms()).await {
        Ok(lifted) => lifted,
        Err(rampart_store::StoreError::Forbidden(why)) => {
            return c.message(StatusCode::BAD_REQUEST, Some(&op), "Cannot lift that", &why);
        }
        Err(e) => return store_failed(&c, &op, e),
    };
    info!(operator = %op.session.operator, subject = %form.subject, count = lifted.len(), "console: actions lifted");
    // The evidence log and Sentinel hear of it at once, not at the next round.
    crate::sentinel_service::note_lifts(&c.shared).await;
    let notice = if lifted.is_empty() {
        format!("Nothing was in force on {}.", form.subject)
    } else {
        format!("Lifted {} action(s) on {}.", lifted.len(), form.subject)
    };
    render_actions(&c, &op, Some(notice)).await
}

async fn evidence_page(State(c): State<Arc<Console>>, op: Operator) -> Response {
    render_evidence(&c, &op, None).await
}

async fn render_evidence(c: &Console, op: &Operator, result: Option<Value>) -> Response {
    let key = c.evidence_key.clone();
    let (operator, csrf) = base_ctx(op);
    c.render("evidence.html", context! { operator, csrf, key, result })
}

async fn verify_evidence(
    State(c): State<Arc<Console>>,
    CheckedForm { op, .. }: CheckedForm<CsrfForm>,
) -> Response {
    let Some(log) = c.shared.evidence.clone() else {
        return c.message(StatusCode::NOT_FOUND, Some(&op), "No evidence log", "This server keeps none.");
    };
    let checked =
        tokio::task::spawn_blocking(move || log.lock().unwrap_or_else(|p| p.into_inner()).verify_now()).await;
    let result = match checked {
        Ok(Ok(v)) => context! {
            ok => true,
            entries => v.entries.len(),
            first_seq => v.head.first_seq,
            next_seq => v.head.next_seq,
            last_hash => hex::encode(v.head.last_hash),
            newest_at_ms => v.entries.last().map(|e| e.at_ms),
        },
        Ok(Err(e)) => context! { ok => false, error => e.to_string() },
        Err(_) => context! { ok => false, error => "the check stopped" },
    };
    render_evidence(&c, &op, Some(result)).await
}
