//! What a function's real binary asks of AWS, and whether its IAM policy in `template.yaml` allows
//! exactly that.
//!
//! [`AwsRecorder`] is an HTTP proxy on 127.0.0.1 that a function process uses as its
//! `DYNAMODB_ENDPOINT` and `SECRETS_MANAGER_ENDPOINT`: it records each request's `X-Amz-Target`
//! and JSON body and forwards it unchanged to DynamoDB Local or moto (neither checks the SigV4
//! signature, so the changed host does not matter). [`iam_accesses`] maps a recorded request to
//! the IAM actions and resources AWS authorizes it by; [`template_policy`] reads a function's
//! inline policy; [`compare`] lists what is used but not granted and what is granted but unused.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use serde_norway::Value as Yaml;

/// Region and account the recorded requests are authorized in (those of the local endpoints'
/// placeholder credentials and of `runtime_api::lambda_environment`).
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// One AWS API request a function sent.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsRequest {
    /// `X-Amz-Target`, e.g. `DynamoDB_20120810.GetItem` or `secretsmanager.GetSecretValue`.
    pub target: String,
    pub body: Value,
}

struct Upstreams {
    dynamodb: String,
    secrets_manager: String,
    client: reqwest::Client,
    requests: Mutex<Vec<AwsRequest>>,
}

/// A recording proxy in front of DynamoDB Local and moto's Secrets Manager.
pub struct AwsRecorder {
    /// `http://127.0.0.1:<port>`: the value of `DYNAMODB_ENDPOINT` and `SECRETS_MANAGER_ENDPOINT`.
    pub endpoint: String,
    upstreams: Arc<Upstreams>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AwsRecorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AwsRecorder {
    /// Listens on a free 127.0.0.1 port, forwarding DynamoDB requests to `dynamodb` and Secrets
    /// Manager requests to `secrets_manager` (both `http://host:port`).
    pub async fn start(dynamodb: &str, secrets_manager: &str) -> std::io::Result<AwsRecorder> {
        tollgate::trust::install_ring_defaults();
        let upstreams = Arc::new(Upstreams {
            dynamodb: dynamodb.trim_end_matches('/').to_owned(),
            secrets_manager: secrets_manager.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .fallback(forward)
            .with_state(upstreams.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(AwsRecorder {
            endpoint,
            upstreams,
            server,
        })
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<AwsRequest> {
        self.upstreams
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Headers the proxy sets itself (hop-by-hop, or recomputed for the new connection).
const NOT_FORWARDED: [&str; 4] = ["host", "content-length", "connection", "transfer-encoding"];

async fn forward(
    State(upstreams): State<Arc<Upstreams>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    upstreams
        .requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(AwsRequest {
            target: target.clone(),
            body: parsed,
        });
    let base = if target.starts_with("DynamoDB_") {
        &upstreams.dynamodb
    } else if target.starts_with("secretsmanager.") || target.starts_with("AmazonSQS.") {
        // moto serves Secrets Manager and SQS on one endpoint.
        &upstreams.secrets_manager
    } else {
        return (
            StatusCode::BAD_REQUEST,
            format!("the recorder does not forward X-Amz-Target {target:?}"),
        )
            .into_response();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = upstreams
        .client
        .request(method, format!("{base}{path}"))
        .body(body);
    for (name, value) in &headers {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let mut reply_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            reply_headers.append(name, value.clone());
        }
    }
    match answer.bytes().await {
        Ok(bytes) => (status, reply_headers, bytes).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// One IAM authorization: an action (`dynamodb:PutItem`) on a resource ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub action: String,
    pub resource: String,
}

fn table_arn(table: &str) -> String {
    // TableName may itself be an ARN.
    if table.starts_with("arn:") {
        table.to_owned()
    } else {
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
    }
}

fn text<'a>(value: &'a Value, field: &str, target: &str) -> Result<&'a str, String> {
    value[field]
        .as_str()
        .ok_or_else(|| format!("{target}: no {field} in {value}"))
}

/// The IAM authorizations `request` needs, by IAM's rules for each operation:
///
/// - a single-item operation, `Query` and `Scan`: `dynamodb:<Operation>` on the table, or on
///   `table/<t>/index/<i>` when `IndexName` is set;
/// - `TransactWriteItems`: each item by its own action, `Put` → `dynamodb:PutItem`, `Update` →
///   `UpdateItem`, `Delete` → `DeleteItem`, `ConditionCheck` → `dynamodb:ConditionCheckItem`
///   ("Using IAM with DynamoDB transactions"; there is no `dynamodb:TransactWriteItems` action);
///   `TransactGetItems`: `dynamodb:GetItem` per item;
/// - `BatchGetItem` / `BatchWriteItem`: the action of that name on each table named;
/// - `secretsmanager:GetSecretValue` on the `SecretId` ARN;
/// - SQS (the JSON protocol, `AmazonSQS.<Operation>`): `sqs:<Operation>` on the queue of
///   `QueueUrl` (`https://sqs.<region>.amazonaws.com/<account>/<name>` is
///   `arn:aws:sqs:<region>:<account>:<name>`), where a batch operation is authorized as its single
///   one (`SendMessageBatch` → `sqs:SendMessage`, "Amazon SQS API permissions").
pub fn iam_accesses(request: &AwsRequest) -> Result<Vec<Access>, String> {
    let target = request.target.as_str();
    let body = &request.body;
    let access = |action: &str, resource: String| Access {
        action: action.to_owned(),
        resource,
    };
    if let Some(operation) = target.strip_prefix("DynamoDB_20120810.") {
        return match operation {
            "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" | "DescribeTable" => {
                Ok(vec![access(
                    &format!("dynamodb:{operation}"),
                    table_arn(text(body, "TableName", target)?),
                )])
            }
            "Query" | "Scan" => {
                let table = table_arn(text(body, "TableName", target)?);
                let resource = match body["IndexName"].as_str() {
                    Some(index) => format!("{table}/index/{index}"),
                    None => table,
                };
                Ok(vec![access(&format!("dynamodb:{operation}"), resource)])
            }
            "TransactWriteItems" | "TransactGetItems" => {
                let items = body["TransactItems"]
                    .as_array()
                    .ok_or_else(|| format!("{target}: no TransactItems in {body}"))?;
                items
                    .iter()
                    .map(|item| {
                        let (kind, action) = [
                            ("Put", "dynamodb:PutItem"),
                            ("Update", "dynamodb:UpdateItem"),
                            ("Delete", "dynamodb:DeleteItem"),
                            ("ConditionCheck", "dynamodb:ConditionCheckItem"),
                            ("Get", "dynamodb:GetItem"),
                        ]
                        .into_iter()
                        .find(|(kind, _)| item.get(kind).is_some())
                        .ok_or_else(|| format!("{target}: an item of no known kind: {item}"))?;
                        Ok(access(
                            action,
                            table_arn(text(&item[kind], "TableName", target)?),
                        ))
                    })
                    .collect()
            }
            "BatchGetItem" | "BatchWriteItem" => {
                let tables = body["RequestItems"]
                    .as_object()
                    .ok_or_else(|| format!("{target}: no RequestItems in {body}"))?;
                Ok(tables
                    .keys()
                    .map(|table| access(&format!("dynamodb:{operation}"), table_arn(table)))
                    .collect())
            }
            other => Err(format!(
                "{target}: the IAM mapping of DynamoDB {other} is not written down here yet"
            )),
        };
    }
    match target {
        "secretsmanager.GetSecretValue" => {
            let secret = text(body, "SecretId", target)?;
            if !secret.starts_with("arn:") {
                return Err(format!(
                    "{target}: SecretId {secret:?} is a name; IAM authorizes the ARN (SECRETS_ARN holds the ARN)"
                ));
            }
            Ok(vec![access(
                "secretsmanager:GetSecretValue",
                secret.to_owned(),
            )])
        }
        other => match other.strip_prefix("AmazonSQS.") {
            Some(operation) => {
                let action = match operation {
                    "SendMessage" | "SendMessageBatch" => "sqs:SendMessage",
                    "DeleteMessage" | "DeleteMessageBatch" => "sqs:DeleteMessage",
                    "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => {
                        "sqs:ChangeMessageVisibility"
                    }
                    "ReceiveMessage" => "sqs:ReceiveMessage",
                    "GetQueueAttributes" => "sqs:GetQueueAttributes",
                    other => {
                        return Err(format!(
                            "{target}: the IAM mapping of SQS {other} is not written down here yet"
                        ));
                    }
                };
                Ok(vec![access(
                    action,
                    queue_arn(text(body, "QueueUrl", target)?)?,
                )])
            }
            None => Err(format!("no IAM mapping for X-Amz-Target {other:?}")),
        },
    }
}

/// The ARN of the queue at `url`: its path is `/<account>/<name>` (moto keeps AWS's form).
pub fn queue_arn(url: &str) -> Result<String, String> {
    let mut segments = url.trim_end_matches('/').rsplit('/');
    match (segments.next(), segments.next()) {
        (Some(name), Some(account))
            if !name.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(format!("arn:aws:sqs:{REGION}:{account}:{name}"))
        }
        _ => Err(format!("{url:?} is not a queue URL")),
    }
}

/// One `Allow` statement of a policy, its resources resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// The inline policy statements `template` (`runtime_api::template()`) gives the function that builds `binary`. `resolve`
/// answers `!Ref X` (`"X"`) and `!GetAtt X.Arn` (`"X.Arn"`), also inside `!Sub`.
pub fn template_policy(
    template: &Yaml,
    binary: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Statement>, String> {
    let function = template["Resources"]
        .as_mapping()
        .ok_or("template.yaml has no Resources")?
        .values()
        .find(|resource| resource["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .ok_or_else(|| format!("template.yaml has no function building {binary}"))?;
    let policies = function["Properties"]["Policies"]
        .as_sequence()
        .ok_or_else(|| format!("{binary}: Policies is not a list of policy documents"))?;
    let mut statements = Vec::new();
    for policy in policies {
        let list = policy["Statement"].as_sequence().ok_or_else(|| {
            format!("{binary}: a policy this test cannot read (only inline documents): {policy:?}")
        })?;
        for statement in list {
            if statement["Effect"].as_str() != Some("Allow") {
                return Err(format!(
                    "{binary}: only Allow statements are modelled: {statement:?}"
                ));
            }
            for unsupported in ["Condition", "NotAction", "NotResource"] {
                if !statement[unsupported].is_null() {
                    return Err(format!(
                        "{binary}: {unsupported} is not modelled: {statement:?}"
                    ));
                }
            }
            let actions = one_or_many(&statement["Action"])
                .iter()
                .map(|action| {
                    action
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{binary}: an Action that is not text: {action:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let resources = one_or_many(&statement["Resource"])
                .iter()
                .map(|resource| resolve_resource(resource, resolve))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("{binary}: {error}"))?;
            if actions.is_empty() || resources.is_empty() {
                return Err(format!("{binary}: a statement without Action or Resource"));
            }
            statements.push(Statement { actions, resources });
        }
    }
    Ok(statements)
}

fn one_or_many(value: &Yaml) -> Vec<&Yaml> {
    match value {
        Yaml::Sequence(items) => items.iter().collect(),
        Yaml::Null => Vec::new(),
        other => vec![other],
    }
}

fn resolve_resource(
    value: &Yaml,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let lookup = |name: &str| {
        resolve(name).ok_or_else(|| format!("no local value for {name} (in {value:?})"))
    };
    match value {
        Yaml::String(text) => Ok(text.clone()),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
            lookup(tagged.value.as_str().ok_or("!Ref of a non-string")?)
        }
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => {
            let name = match &tagged.value {
                Yaml::String(dotted) => dotted.clone(),
                Yaml::Sequence(parts) => parts
                    .iter()
                    .filter_map(Yaml::as_str)
                    .collect::<Vec<_>>()
                    .join("."),
                other => return Err(format!("!GetAtt of {other:?}")),
            };
            lookup(&name)
        }
        Yaml::Tagged(tagged) if tagged.tag == "Sub" => {
            let template = tagged
                .value
                .as_str()
                .ok_or("!Sub with a variable map is not modelled")?;
            let mut out = String::new();
            let mut rest = template;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in !Sub {template:?}"))?;
                let name = &rest[start + 2..start + end];
                out.push_str(&match name {
                    "AWS::Region" => REGION.to_owned(),
                    "AWS::AccountId" => ACCOUNT.to_owned(),
                    "AWS::Partition" => "aws".to_owned(),
                    other => lookup(other)?,
                });
                rest = &rest[start + end + 1..];
            }
            out.push_str(rest);
            Ok(out)
        }
        other => Err(format!("a Resource this test cannot resolve: {other:?}")),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer glob match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Actions are case-insensitive in IAM; resource ARNs are not.
fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

fn grants(statement: &Statement, access: &Access) -> bool {
    statement
        .actions
        .iter()
        .any(|a| action_matches(a, &access.action))
        && statement
            .resources
            .iter()
            .any(|r| wildcard_match(r, &access.resource))
}

/// What is wrong with `policy` for a function that made exactly the requests `used`: each access
/// no statement grants, and each action or resource of a statement no access needs. Empty when
/// the policy is exactly what the code uses.
pub fn compare(function: &str, used: &BTreeSet<Access>, policy: &[Statement]) -> Vec<String> {
    let mut findings = Vec::new();
    for access in used {
        if !policy.iter().any(|statement| grants(statement, access)) {
            findings.push(format!(
                "{function}: {} on {} is used by the code but not granted in template.yaml",
                access.action, access.resource
            ));
        }
    }
    for statement in policy {
        for action in &statement.actions {
            let needed = used.iter().any(|access| {
                action_matches(action, &access.action)
                    && statement
                        .resources
                        .iter()
                        .any(|r| wildcard_match(r, &access.resource))
            });
            if !needed {
                findings.push(format!(
                    "{function}: template.yaml grants {action} on {} but no recorded request uses it",
                    statement.resources.join(", ")
                ));
            }
        }
        for resource in &statement.resources {
            let needed = used.iter().any(|access| {
                wildcard_match(resource, &access.resource)
                    && statement
                        .actions
                        .iter()
                        .any(|a| action_matches(a, &access.action))
            });
            if !needed {
                findings.push(format!(
                    "{function}: template.yaml grants {} on {resource} but no recorded request uses that resource",
                    statement.actions.join(", ")
                ));
            }
        }
    }
    findings
}

/// What Lambda's event source mappings of `binary`'s function ask of its role, by AWS's rules
/// ("Lambda execution role permissions" for DynamoDB streams): a mapping reading a table's stream
/// needs `dynamodb:DescribeStream`, `GetRecords` and `GetShardIterator` on the stream and
/// `dynamodb:ListStreams` (which IAM authorizes on `*` only); an `OnFailure` destination that is
/// an SQS queue needs `sqs:SendMessage` on it; a mapping reading an SQS queue needs
/// `sqs:ReceiveMessage`, `DeleteMessage` and `GetQueueAttributes` on it. These requests are
/// Lambda's, not the code's, so no recorder sees them.
pub fn event_source_mapping_accesses(
    template: &Yaml,
    binary: &str,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeSet<Access>, String> {
    let resources = template["Resources"]
        .as_mapping()
        .ok_or("template.yaml has no Resources")?;
    let function = resources
        .iter()
        .find(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .and_then(|(name, _)| name.as_str())
        .ok_or_else(|| format!("template.yaml has no function building {binary}"))?;
    let access = |action: &str, resource: String| Access {
        action: action.to_owned(),
        resource,
    };
    let mut accesses = BTreeSet::new();
    for mapping in resources.values() {
        if mapping["Type"].as_str() != Some("AWS::Lambda::EventSourceMapping") {
            continue;
        }
        let properties = &mapping["Properties"];
        let target = match &properties["FunctionName"] {
            Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
            _ => None,
        };
        if target != Some(function) {
            continue;
        }
        let source = resolve_resource(&properties["EventSourceArn"], resolve)?;
        // An SQS queue: what Lambda's SQS poller does as the function's role ("Using Lambda
        // with Amazon SQS", execution role permissions).
        if source.starts_with("arn:aws:sqs:") {
            for action in [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
            ] {
                accesses.insert(access(action, source.clone()));
            }
            continue;
        }
        if !source.starts_with("arn:aws:dynamodb:") || !source.contains("/stream/") {
            return Err(format!(
                "{binary}: the permissions of an event source mapping from {source} are not modelled"
            ));
        }
        for action in [
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
        ] {
            accesses.insert(access(action, source.clone()));
        }
        accesses.insert(access("dynamodb:ListStreams", "*".to_owned()));
        let on_failure = &properties["DestinationConfig"]["OnFailure"]["Destination"];
        if !on_failure.is_null() {
            let destination = resolve_resource(on_failure, resolve)?;
            if !destination.starts_with("arn:aws:sqs:") {
                return Err(format!(
                    "{binary}: an OnFailure destination other than SQS is not modelled: {destination}"
                ));
            }
            accesses.insert(access("sqs:SendMessage", destination));
        }
    }
    Ok(accesses)
}

/// The set of IAM authorizations behind `requests`.
pub fn accesses_of(requests: &[AwsRequest]) -> Result<BTreeSet<Access>, String> {
    let mut all = BTreeSet::new();
    for request in requests {
        all.extend(iam_accesses(request)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/t";

    fn request(target: &str, body: Value) -> AwsRequest {
        AwsRequest {
            target: target.to_owned(),
            body,
        }
    }

    fn access(action: &str, resource: &str) -> Access {
        Access {
            action: action.to_owned(),
            resource: resource.to_owned(),
        }
    }

    #[test]
    fn sqs_batches_are_authorized_as_their_single_operation_on_the_queue() {
        let queue = "arn:aws:sqs:us-east-1:123456789012:deliveries";
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries";
        for (operation, action) in [
            ("SendMessage", "sqs:SendMessage"),
            ("SendMessageBatch", "sqs:SendMessage"),
            ("ChangeMessageVisibility", "sqs:ChangeMessageVisibility"),
            ("DeleteMessageBatch", "sqs:DeleteMessage"),
            ("ReceiveMessage", "sqs:ReceiveMessage"),
        ] {
            let sent = request(&format!("AmazonSQS.{operation}"), json!({"QueueUrl": url}));
            assert_eq!(iam_accesses(&sent).unwrap(), vec![access(action, queue)]);
        }
        assert_eq!(
            queue_arn("http://127.0.0.1:5000/123456789012/deliveries").unwrap(),
            queue,
            "moto's URLs too"
        );
        assert!(queue_arn("http://127.0.0.1:5000/deliveries").is_err());
        assert!(iam_accesses(&request("AmazonSQS.PurgeQueue", json!({"QueueUrl": url}))).is_err());
    }

    #[test]
    fn a_transaction_is_authorized_item_by_item() {
        let transaction = request(
            "DynamoDB_20120810.TransactWriteItems",
            json!({"TransactItems": [
                {"Put": {"TableName": "t", "Item": {}}},
                {"Update": {"TableName": "t", "Key": {}}},
                {"Delete": {"TableName": "t", "Key": {}}},
                {"ConditionCheck": {"TableName": "t", "Key": {}}},
            ]}),
        );
        assert_eq!(
            iam_accesses(&transaction).unwrap(),
            vec![
                access("dynamodb:PutItem", TABLE),
                access("dynamodb:UpdateItem", TABLE),
                access("dynamodb:DeleteItem", TABLE),
                access("dynamodb:ConditionCheckItem", TABLE),
            ]
        );
    }

    #[test]
    fn a_query_on_an_index_needs_the_index_arn_and_a_secret_its_arn() {
        let query = request(
            "DynamoDB_20120810.Query",
            json!({"TableName": "t", "IndexName": "byEmail"}),
        );
        assert_eq!(
            iam_accesses(&query).unwrap(),
            vec![access("dynamodb:Query", &format!("{TABLE}/index/byEmail"))]
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-AbCdEf";
        let secret = request("secretsmanager.GetSecretValue", json!({"SecretId": arn}));
        assert_eq!(
            iam_accesses(&secret).unwrap(),
            vec![access("secretsmanager:GetSecretValue", arn)]
        );
        let by_name = request("secretsmanager.GetSecretValue", json!({"SecretId": "s"}));
        assert!(iam_accesses(&by_name).is_err());
        assert!(iam_accesses(&request("DynamoDB_20120810.ExecuteStatement", json!({}))).is_err());
    }

    #[test]
    fn compare_reports_missing_and_unused_grants_by_name() {
        let used = BTreeSet::from([
            access("dynamodb:GetItem", TABLE),
            access("dynamodb:UpdateItem", TABLE),
        ]);
        let exact = vec![Statement {
            actions: vec!["dynamodb:GetItem".into(), "dynamodb:updateitem".into()],
            resources: vec![TABLE.into()],
        }];
        assert_eq!(compare("f", &used, &exact), Vec::<String>::new());

        let missing = vec![Statement {
            actions: vec!["dynamodb:GetItem".into()],
            resources: vec![TABLE.into()],
        }];
        let findings = compare("f", &used, &missing);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].contains(
                "f: dynamodb:UpdateItem on arn:aws:dynamodb:us-east-1:123456789012:table/t is used"
            ),
            "{findings:?}"
        );

        let extra = vec![Statement {
            actions: vec![
                "dynamodb:GetItem".into(),
                "dynamodb:UpdateItem".into(),
                "dynamodb:TransactWriteItems".into(),
            ],
            resources: vec![TABLE.into(), format!("{TABLE}/index/*")],
        }];
        let findings = compare("f", &used, &extra);
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings[0].contains("grants dynamodb:TransactWriteItems"));
        assert!(findings[1].contains("on arn:aws:dynamodb:us-east-1:123456789012:table/t/index/*"));

        let wildcard = vec![Statement {
            actions: vec!["dynamodb:*".into()],
            resources: vec!["arn:aws:dynamodb:*:*:table/*".into()],
        }];
        assert_eq!(compare("f", &used, &wildcard), Vec::<String>::new());
    }

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "abbc"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("table/t", "table/t/index/i"));
        assert!(wildcard_match("table/t*", "table/t/index/i"));
    }

    #[test]
    fn policies_are_read_with_their_intrinsics_resolved() {
        let template: Yaml = serde_norway::from_str(
            r#"
Resources:
  F:
    Metadata: {BuildProperties: {Binary: f}}
    Properties:
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:Query]
              Resource:
                - !GetAtt Table.Arn
                - !Sub "${Table.Arn}/index/*"
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Ref Secret
"#,
        )
        .unwrap();
        let resolve = |name: &str| match name {
            "Table.Arn" => Some(TABLE.to_owned()),
            "Secret" => Some("arn:secret".to_owned()),
            _ => None,
        };
        let policy = template_policy(&template, "f", &resolve).unwrap();
        assert_eq!(
            policy,
            vec![
                Statement {
                    actions: vec!["dynamodb:GetItem".into(), "dynamodb:Query".into()],
                    resources: vec![TABLE.into(), format!("{TABLE}/index/*")],
                },
                Statement {
                    actions: vec!["secretsmanager:GetSecretValue".into()],
                    resources: vec!["arn:secret".into()],
                },
            ]
        );
        assert!(template_policy(&template, "g", &resolve).is_err());
        assert!(template_policy(&template, "f", &|_| None).is_err());
    }
}
