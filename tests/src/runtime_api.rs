//! The Lambda service's side of the Runtime API (`2018-06-01`), on 127.0.0.1, for booting a
//! function's real `bootstrap` binary the way Lambda does: the process is started with
//! `AWS_LAMBDA_RUNTIME_API` pointing here, long-polls `invocation/next`, and posts each answer to
//! `invocation/{id}/response` (or `/error`); a failed init posts to `init/error`.
//!
//! One [`RuntimeApi`] serves one process: it records when that process first asked for work (the
//! end of its init) and hands it the events [`RuntimeApi::invoke`] queues, one at a time.
//! [`http_api_event`] builds API Gateway HTTP API (payload format 2.0) events and
//! [`HttpApiResponse::parse`] reads the function's answer the way API Gateway does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use serde_norway::Value as Yaml;
use tokio::sync::{mpsc, oneshot};

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`: the payload.
    Response(Vec<u8>),
    /// `POST /runtime/invocation/{id}/error` (or `/init/error`): the error document.
    Error {
        error_type: Option<String>,
        body: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the Runtime API stand-in stopped")]
    Stopped,
}

struct Pending {
    request_id: String,
    payload: Vec<u8>,
    deadline: SystemTime,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: Mutex<Option<Instant>>,
    next_requests: Mutex<usize>,
    init_error: Mutex<Option<Outcome>>,
    function_arn: String,
}

/// The Runtime API for one function process.
pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    sender: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Listens on a free 127.0.0.1 port.
    pub async fn start(function_name: &str) -> std::io::Result<RuntimeApi> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            first_next: Mutex::new(None),
            next_requests: Mutex::new(0),
            init_error: Mutex::new(None),
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
        });
        let router = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(RuntimeApi {
            address,
            sender,
            shared,
            server,
        })
    }

    /// When the process first asked for an invocation: the end of its init.
    pub fn first_next_at(&self) -> Option<Instant> {
        *lock(&self.shared.first_next)
    }

    /// How many `invocation/next` requests arrived so far.
    pub fn next_requests(&self) -> usize {
        *lock(&self.shared.next_requests)
    }

    /// What the process posted to `init/error`, if anything.
    pub fn init_error(&self) -> Option<Outcome> {
        lock(&self.shared.init_error).clone()
    }

    /// Waits (up to `limit`) for the first `invocation/next` or an `init/error`.
    pub async fn wait_for_init(&self, limit: Duration) -> Option<Instant> {
        let give_up = Instant::now() + limit;
        while Instant::now() < give_up {
            if let Some(at) = self.first_next_at() {
                return Some(at);
            }
            if self.init_error().is_some() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }

    /// Queues `event` for the function and waits up to `limit` for its answer.
    pub async fn invoke(&self, event: &Value, limit: Duration) -> Result<Outcome, InvokeError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload: event.to_string().into_bytes(),
            deadline: SystemTime::now() + limit,
            reply,
        };
        self.sender
            .send(pending)
            .map_err(|_| InvokeError::Stopped)?;
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(InvokeError::Stopped),
            Err(_) => Err(InvokeError::Timeout(limit)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    {
        let mut first = lock(&shared.first_next);
        first.get_or_insert_with(Instant::now);
        *lock(&shared.next_requests) += 1;
    }
    let Some(pending) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    lock(&shared.waiting).insert(pending.request_id.clone(), pending.reply);
    let deadline_ms = pending
        .deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    (
        StatusCode::OK,
        [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", pending.request_id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                shared.function_arn.clone(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
                    .to_owned(),
            ),
        ],
        pending.payload,
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn deliver(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    match lock(&shared.waiting).remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            accepted()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}),
            ),
        )
            .into_response(),
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    deliver(&shared, &id, Outcome::Response(body.to_vec()))
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = Outcome::Error {
        error_type: error_type(&headers),
        body: body.to_vec(),
    };
    deliver(&shared, &id, outcome)
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *lock(&shared.init_error) = Some(Outcome::Error {
        error_type: error_type(&headers),
        body: body.to_vec(),
    });
    accepted()
}

/// An API Gateway HTTP API (payload format 2.0) event, as API Gateway sends it for `route_key`
/// (`"GET /api/users/{id}"`): `raw_path` is the request path, `query` the raw query string.
pub fn http_api_event(
    route_key: &str,
    method: &str,
    raw_path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let mut header_map = serde_json::Map::new();
    header_map.insert(
        "host".into(),
        json!("abc123.execute-api.us-east-1.amazonaws.com"),
    );
    header_map.insert("user-agent".into(), json!("tollgate-runtime-api-test"));
    header_map.insert("x-forwarded-proto".into(), json!("https"));
    header_map.insert("x-forwarded-for".into(), json!("198.51.100.7"));
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), json!(value));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let mut query_parameters = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        query_parameters.insert(name.into_owned(), json!(value));
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.7",
                "userAgent": "tollgate-runtime-api-test"
            },
            "requestId": format!("req-{}", uuid::Uuid::new_v4().simple()),
            "routeKey": route_key,
            "stage": "$default",
            "time": "25/Nov/2026:06:30:00 +0000",
            "timeEpoch": now
        },
        "isBase64Encoded": false
    });
    if !query_parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(query_parameters);
    }
    if let Some(parameters) = path_parameters(route_key, raw_path) {
        event["pathParameters"] = parameters;
    }
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    event
}

/// `{id}` segments of the route key's path, read from the raw path.
fn path_parameters(route_key: &str, raw_path: &str) -> Option<Value> {
    let template = route_key.split_once(' ').map(|(_, path)| path)?;
    let mut parameters = serde_json::Map::new();
    for (segment, actual) in template.split('/').zip(raw_path.split('/')) {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            parameters.insert(name.to_owned(), json!(actual));
        }
    }
    (!parameters.is_empty()).then_some(Value::Object(parameters))
}

/// A payload 2.0 response as API Gateway reads it.
#[derive(Debug, Clone)]
pub struct HttpApiResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpApiResponse {
    pub fn parse(outcome: &Outcome) -> Result<HttpApiResponse, String> {
        let Outcome::Response(payload) = outcome else {
            return Err(format!("the function reported an error: {outcome:?}"));
        };
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("response payload is not JSON ({e}): {payload:?}"))?;
        let status = value["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("no statusCode in {value}"))?;
        let mut headers = HashMap::new();
        if let Some(map) = value["headers"].as_object() {
            for (name, v) in map {
                headers.insert(
                    name.to_ascii_lowercase(),
                    v.as_str().unwrap_or("").to_owned(),
                );
            }
        }
        if let Some(map) = value["multiValueHeaders"].as_object() {
            for (name, values) in map {
                if let Some(first) = values.as_array().and_then(|a| a.first()) {
                    headers
                        .entry(name.to_ascii_lowercase())
                        .or_insert_with(|| first.as_str().unwrap_or("").to_owned());
                }
            }
        }
        let raw = value["body"].as_str().unwrap_or("");
        let body = if value["isBase64Encoded"].as_bool() == Some(true) {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| format!("body is not base64: {e}"))?;
            String::from_utf8(bytes).map_err(|e| format!("body is not UTF-8: {e}"))?
        } else {
            raw.to_owned()
        };
        Ok(HttpApiResponse {
            status,
            headers,
            body,
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The environment Lambda gives every function process, for `function_name`, talking to `runtime`.
pub fn lambda_environment(function_name: &str, runtime: &RuntimeApi) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.address.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tollgate-test"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/25/[$LATEST]0123456789abcdef",
        ),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("_HANDLER", "bootstrap"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        // The execution role's temporary credentials (placeholders: every endpoint is local).
        ("AWS_ACCESS_KEY_ID", "ASIATESTTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret-access-key"),
        ("AWS_SESSION_TOKEN", "test-session-token"),
        ("TZ", ":UTC"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// A function binary started as Lambda starts it: only the given environment, output captured.
pub struct FunctionProcess {
    child: Child,
    /// When the process was spawned.
    pub started: Instant,
    output: Arc<Mutex<Vec<String>>>,
}

impl FunctionProcess {
    pub fn spawn(
        binary: &Path,
        environment: &[(String, String)],
    ) -> std::io::Result<FunctionProcess> {
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    lock(&output).push(line);
                }
            });
        }
        Ok(FunctionProcess {
            child,
            started,
            output,
        })
    }

    /// Every line the process wrote to stdout or stderr so far.
    pub fn output(&self) -> Vec<String> {
        lock(&self.output).clone()
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where `cargo build` put the function binaries: `TOLLGATE_FUNCTION_BIN_DIR`, else the
/// workspace's `target/debug` (or `$CARGO_TARGET_DIR/debug`).
pub fn function_binary_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOLLGATE_FUNCTION_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// `template.yaml` as YAML (CloudFormation's short-form tags kept as tagged values).
pub fn template() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml parses")
}

/// The environment `template.yaml` gives `binary` (Globals merged with the function's own),
/// with each `!Ref` resolved by `resolve` or, for a parameter, to its default.
pub fn template_environment(
    binary: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let template = template();
    let function = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .find(|resource| resource["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .unwrap_or_else(|| panic!("template.yaml has no function building {binary}"));
    let mut variables = Vec::new();
    for source in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &function["Properties"]["Environment"]["Variables"],
    ] {
        let Some(map) = source.as_mapping() else {
            continue;
        };
        for (name, value) in map {
            let name = name.as_str().expect("variable name").to_owned();
            let value = match value {
                Yaml::String(text) => text.clone(),
                Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
                    let target = tagged.value.as_str().expect("!Ref target");
                    resolve(target)
                        .or_else(|| {
                            template["Parameters"][target]["Default"]
                                .as_str()
                                .map(str::to_owned)
                        })
                        .unwrap_or_else(|| panic!("{name}: no local value for !Ref {target}"))
                }
                other => panic!("{name}: a value this test cannot resolve: {other:?}"),
            };
            variables.retain(|(existing, _): &(String, String)| existing != &name);
            variables.push((name, value));
        }
    }
    variables
}

/// An identity provider for function processes: serves `jwks` at `<issuer>.well-known/jwks.json`
/// on a free 127.0.0.1 port; returns the issuer URL (with its trailing slash).
pub async fn serve_jwks(jwks: String) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer_url = format!("http://{}/", listener.local_addr()?);
    let router = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let jwks = jwks.clone();
            async move { ([("content-type", "application/json")], jwks) }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((issuer_url, server))
}

/// A function process started on its own Runtime API, initialised and waiting for invocations.
pub struct Booted {
    pub binary: String,
    pub runtime: RuntimeApi,
    pub process: FunctionProcess,
}

impl Booted {
    /// Starts `binary` (from [`function_binary_dir`]) with Lambda's environment plus
    /// `environment`, and waits up to `init_limit` for its first `invocation/next`.
    ///
    /// # Panics
    /// When the binary is not built or does not finish its init (a test failure, with its output).
    pub async fn start(
        binary: &str,
        environment: Vec<(String, String)>,
        init_limit: Duration,
    ) -> Booted {
        let path = function_binary_dir().join(binary);
        assert!(
            path.is_file(),
            "{} is not built: `make test` builds the function binaries first (cargo build --bins)",
            path.display()
        );
        let runtime = RuntimeApi::start(binary).await.expect("Runtime API starts");
        let mut full = lambda_environment(binary, &runtime);
        full.extend(environment);
        let mut process = FunctionProcess::spawn(&path, &full).expect("the binary starts");
        if runtime.wait_for_init(init_limit).await.is_none() {
            let exited = process.exited();
            panic!(
                "{binary} did not ask for an invocation within {init_limit:?} (init error: {:?}, exit: {exited:?}); output:\n{}",
                runtime.init_error(),
                process.output().join("\n")
            );
        }
        Booted {
            binary: binary.to_owned(),
            runtime,
            process,
        }
    }

    /// Invokes the function with an HTTP API event for `route_key` (`"GET /api/users/{id}"`) at
    /// `path` (with its query) and reads the answer as API Gateway does.
    ///
    /// # Panics
    /// When the function does not answer within `limit` or answers with an invocation error.
    pub async fn call(
        &self,
        route_key: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
        limit: Duration,
    ) -> HttpApiResponse {
        self.call_traced(route_key, path, headers, body, limit)
            .await
            .0
    }

    /// As [`Booted::call`], also returning the event's request id (to find its log lines).
    pub async fn call_traced(
        &self,
        route_key: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
        limit: Duration,
    ) -> (HttpApiResponse, String) {
        let method = route_key.split(' ').next().unwrap_or("GET");
        let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
        let event = http_api_event(route_key, method, raw_path, query, headers, body);
        let request_id = event["requestContext"]["requestId"]
            .as_str()
            .expect("http_api_event sets a request id")
            .to_owned();
        let outcome = self
            .runtime
            .invoke(&event, limit)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "{} {route_key}: {error}; output:\n{}",
                    self.binary,
                    self.process.output().join("\n")
                )
            });
        let response = HttpApiResponse::parse(&outcome)
            .unwrap_or_else(|error| panic!("{} {route_key}: {error}", self.binary));
        (response, request_id)
    }
}
