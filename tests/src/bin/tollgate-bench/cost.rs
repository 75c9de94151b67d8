//! DynamoDB cost per route: every route of `tollgate::routes::routes()` called through the dev
//! gateway (the router `tollgate-dev serve` runs) against DynamoDB Local, one request at a time,
//! recording for exactly that request the DynamoDB requests its store client sent and the capacity
//! they consumed.
//!
//! The store client carries [`CapacityRecorder`], an SDK interceptor that sets
//! `"ReturnConsumedCapacity": "TOTAL"` on every request body before SigV4 signs it and reads
//! `ConsumedCapacity` back from every response. DynamoDB Local's figures are first checked against
//! DynamoDB's published rules on probes of every operation type the routes use (the calibration
//! table): where DynamoDB Local returns no figure (failed conditional writes, cancelled
//! transactions) or a wrong one (multi-item `TransactWriteItems`), the table uses the figure
//! computed from the rules and the item sizes read from the table before and after the request,
//! marked as computed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnConsumedCapacity, TransactWriteItem, Update,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tollgate::auth::jwt::JwtConfig;
use tollgate::config::Config;
use tollgate::pipeline::AppState;
use tollgate::store::{Store, TenantId, schema};
use tollgate_dev::issuer::LocalIssuer;
use tollgate_tests::stripe_standin::{
    StripeStandIn, invoice_object, signed_event, subscription_object,
};

use crate::BenchResult;

#[derive(clap::Args)]
pub struct Args {
    /// Markdown section output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

const ISSUER: &str = "https://issuer.tollgate.test/";
const SERVICE_KEY: &str = "tgsk_bench_cost_0123456789abcdef_0123456789abcde";
const WEBHOOK_SECRET: &str = "whsec_bench_cost";
const ENCRYPTION_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const API_KEY_PEPPER: &str = "bench_cost_api_key_pepper_0123456789abcdef";

/// Operations whose request accepts `ReturnConsumedCapacity`.
const ACCEPTS_RETURN_CONSUMED_CAPACITY: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactGetItems",
    "TransactWriteItems",
];

// ---------------------------------------------------------------------------------------------
// The interceptor
// ---------------------------------------------------------------------------------------------

/// One DynamoDB request as sent and answered.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// `GetItem`, `TransactWriteItems` ... (from `x-amz-target`).
    pub operation: String,
    /// The JSON body as sent (with `ReturnConsumedCapacity`).
    pub request: Value,
    /// HTTP status of the answer (0: no answer).
    pub status: u16,
    /// The JSON body of the answer (`Null` when there was none).
    pub response: Value,
    /// Sum of `ConsumedCapacity.CapacityUnits` (an object, or an array for transactions and
    /// batches); `None` when the answer carried no `ConsumedCapacity`.
    pub reported: Option<f64>,
}

#[derive(Debug, Default)]
struct RecorderState {
    /// Sent, not yet answered: requests are matched to answers in order, which holds because this
    /// tool sends one gateway request at a time and the store awaits each DynamoDB call.
    pending: VecDeque<(String, Value)>,
    done: Vec<OpRecord>,
}

/// Asks DynamoDB for the consumed capacity of every request and records it.
#[derive(Debug, Default, Clone)]
pub struct CapacityRecorder(Arc<Mutex<RecorderState>>);

impl CapacityRecorder {
    pub fn take(&self) -> Vec<OpRecord> {
        let mut state = self.0.lock().expect("recorder lock");
        state.pending.clear();
        std::mem::take(&mut state.done)
    }
}

fn consumed_units(consumed: &Value) -> Option<f64> {
    match consumed {
        Value::Object(object) => object.get("CapacityUnits").and_then(Value::as_f64),
        Value::Array(entries) => entries.iter().map(consumed_units).sum(),
        _ => None,
    }
}

impl Intercept for CapacityRecorder {
    fn name(&self) -> &'static str {
        "CapacityRecorder"
    }

    /// Before signing, so SigV4 signs the body DynamoDB receives.
    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or("?")
            .to_owned();
        let operation = target.rsplit('.').next().unwrap_or(&target).to_owned();
        let mut body: Value = match request.body().bytes() {
            Some(bytes) if !bytes.is_empty() => serde_json::from_slice(bytes)?,
            _ => json!({}),
        };
        if ACCEPTS_RETURN_CONSUMED_CAPACITY.contains(&operation.as_str())
            && let Some(object) = body.as_object_mut()
        {
            object.insert("ReturnConsumedCapacity".to_owned(), json!("TOTAL"));
            let bytes = serde_json::to_vec(&body)?;
            request
                .headers_mut()
                .insert("content-length", bytes.len().to_string());
            *request.body_mut() = bytes.into();
        }
        self.0
            .lock()
            .expect("recorder lock")
            .pending
            .push_back((operation, body));
        Ok(())
    }

    /// After every attempt, answered or not (the body is in memory once deserialized).
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (status, response) = match context.response() {
            Some(response) => (
                response.status().as_u16(),
                response
                    .body()
                    .bytes()
                    .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
                    .unwrap_or(Value::Null),
            ),
            None => (0, Value::Null),
        };
        let reported = response.get("ConsumedCapacity").and_then(consumed_units);
        let mut state = self.0.lock().expect("recorder lock");
        if let Some((operation, request)) = state.pending.pop_front() {
            state.done.push(OpRecord {
                operation,
                request,
                status,
                response,
                reported,
            });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Item sizes and DynamoDB's capacity rules
// ---------------------------------------------------------------------------------------------

type Key = (String, String);
type Sizes = HashMap<Key, usize>;

/// DynamoDB's size of a number: about one byte per two significant digits, plus one.
fn number_size(text: &str) -> usize {
    let mantissa = text
        .trim_start_matches(['-', '+'])
        .split(['e', 'E'])
        .next()
        .unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

fn attribute_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(values) => values.iter().map(String::len).sum(),
        AttributeValue::Ns(values) => values.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(values) => values.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, value)| name.len() + attribute_size(value) + 1)
                .sum::<usize>()
        }
        AttributeValue::L(list) => 3 + list.iter().map(|v| attribute_size(v) + 1).sum::<usize>(),
        _ => 0,
    }
}

fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + attribute_size(value))
        .sum()
}

/// The same sizes for DynamoDB's JSON form (`{"S": "..."}`, `{"M": {...}}` ...).
fn json_attribute_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let text = |v: &Value| v.as_str().map_or(0, str::len);
    let blob = |v: &Value| v.as_str().map_or(0, |s| s.len() * 3 / 4);
    let each = |v: &Value, size: &dyn Fn(&Value) -> usize| {
        v.as_array()
            .map_or(0, |a| a.iter().map(size).sum::<usize>())
    };
    match kind.as_str() {
        "S" => text(inner),
        "N" => number_size(inner.as_str().unwrap_or("0")),
        "B" => blob(inner),
        "BOOL" | "NULL" => 1,
        "SS" => each(inner, &text),
        "NS" => each(inner, &|v| number_size(v.as_str().unwrap_or("0"))),
        "BS" => each(inner, &blob),
        "M" => {
            3 + inner.as_object().map_or(0, |map| {
                map.iter()
                    .map(|(name, value)| name.len() + json_attribute_size(value) + 1)
                    .sum()
            })
        }
        "L" => 3 + each(inner, &|v| json_attribute_size(v) + 1),
        _ => 0,
    }
}

fn json_item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |map| {
        map.iter()
            .map(|(name, value)| name.len() + json_attribute_size(value))
            .sum()
    })
}

fn json_key(value: &Value) -> Option<Key> {
    Some((
        value.get("PK")?.get("S")?.as_str()?.to_owned(),
        value.get("SK")?.get("S")?.as_str()?.to_owned(),
    ))
}

/// Every item's size, read with a client that records nothing.
async fn snapshot(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<Sizes, Error> {
    let mut sizes = Sizes::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in page.items.unwrap_or_default() {
            let key = match (item.get("PK"), item.get("SK")) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                    (pk.clone(), sk.clone())
                }
                _ => continue,
            };
            sizes.insert(key, item_size(&item));
        }
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return Ok(sizes),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Units {
    read: f64,
    write: f64,
}

impl Units {
    fn total(self) -> f64 {
        self.read + self.write
    }
}

/// 1 RCU per 4 KB (strongly consistent; half eventually consistent), at least one unit.
fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent { units } else { units / 2.0 }
}

/// 1 WCU per 1 KB, at least one unit.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn is_read(operation: &str) -> bool {
    matches!(
        operation,
        "GetItem" | "Query" | "Scan" | "BatchGetItem" | "TransactGetItems"
    )
}

/// The figure DynamoDB's published rules give for `op`, from the item sizes before and after the
/// request it belongs to. Writes: the larger of the item before and after (a failed conditional
/// write is charged the same way); transactions: twice each item, a `ConditionCheck` as a
/// transactional read of the checked item.
fn rule_units(op: &OpRecord, before: &Sizes, after: &Sizes) -> Option<Units> {
    let request = &op.request;
    let size_before = |key: &Option<Key>| key.as_ref().and_then(|k| before.get(k)).copied();
    let size_after = |key: &Option<Key>| key.as_ref().and_then(|k| after.get(k)).copied();
    let larger = |key: &Option<Key>, new: usize| {
        new.max(size_before(key).unwrap_or(0))
            .max(size_after(key).unwrap_or(0))
    };
    let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
    Some(match op.operation.as_str() {
        "GetItem" => {
            let key = json_key(&request["Key"]);
            let read = json_item_size(&op.response["Item"]).max(size_before(&key).unwrap_or(0));
            Units {
                read: read_units(read, consistent),
                write: 0.0,
            }
        }
        "Query" | "Scan" => {
            let bytes = op.response["Items"]
                .as_array()
                .map_or(0, |items| items.iter().map(json_item_size).sum());
            Units {
                read: read_units(bytes, consistent),
                write: 0.0,
            }
        }
        "PutItem" => {
            let item = &request["Item"];
            Units {
                read: 0.0,
                write: write_units(larger(&json_key(item), json_item_size(item))),
            }
        }
        "UpdateItem" | "DeleteItem" => Units {
            read: 0.0,
            write: write_units(larger(&json_key(&request["Key"]), 0)),
        },
        "TransactWriteItems" => {
            let mut units = Units::default();
            for action in request["TransactItems"].as_array()? {
                if let Some(put) = action.get("Put") {
                    let item = &put["Item"];
                    units.write += 2.0 * write_units(larger(&json_key(item), json_item_size(item)));
                } else if let Some(update) = action.get("Update").or_else(|| action.get("Delete")) {
                    units.write += 2.0 * write_units(larger(&json_key(&update["Key"]), 0));
                } else if let Some(check) = action.get("ConditionCheck") {
                    let key = json_key(&check["Key"]);
                    units.read += 2.0 * read_units(size_before(&key).unwrap_or(0), true);
                }
            }
            units
        }
        "TransactGetItems" => {
            let mut units = Units::default();
            for action in request["TransactItems"].as_array()? {
                let key = json_key(&action["Get"]["Key"]);
                units.read += 2.0 * read_units(size_before(&key).unwrap_or(0), true);
            }
            units
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Labels: what each request touched
// ---------------------------------------------------------------------------------------------

fn item_label(pk: &str, sk: &str) -> String {
    let after = |prefix: &str| pk.strip_prefix(prefix).unwrap_or(pk).to_owned();
    if pk.starts_with("RATE#") {
        let bucket = after("RATE#");
        let bucket = bucket.split('#').next().unwrap_or("?");
        return format!("rate-limit window ({bucket})");
    }
    let label = if pk.starts_with("USER#") {
        "user"
    } else if pk.starts_with("INVITEE#") {
        "invitee index"
    } else if pk.starts_with("STRIPE_CUSTOMER#") {
        "customer→organization"
    } else if pk.starts_with("STRIPE_EVENT#") {
        "event marker"
    } else if pk.starts_with("APIKEY#") {
        "API key look-up"
    } else if pk.starts_with("ORG#") {
        match sk.split('#').next().unwrap_or(sk) {
            "ORG" => "organization",
            "MEMBER" => "member",
            "INVITE" => "invitation",
            "CALL" => "call record",
            "USAGE" => "usage counter",
            "OVERAGE" => "overage marker",
            "INVOICE" => "invoice",
            "INTEGRATION" => "integration",
            "APIKEY" => "API key",
            "AUDIT" => "audit event",
            "WEBHOOK" => "webhook endpoint",
            _ => "organization item",
        }
    } else {
        "item"
    };
    label.to_owned()
}

fn key_label(key: &Value) -> String {
    match json_key(key) {
        Some((pk, sk)) => item_label(&pk, &sk),
        None => "?".to_owned(),
    }
}

fn op_label(op: &OpRecord) -> String {
    let request = &op.request;
    let failed = op.status != 200;
    let mut label = match op.operation.as_str() {
        "GetItem" | "UpdateItem" | "DeleteItem" => {
            format!("{} {}", op.operation, key_label(&request["Key"]))
        }
        "PutItem" => format!("PutItem {}", key_label(&request["Item"])),
        "Query" => {
            let values = &request["ExpressionAttributeValues"];
            let pk = values[":pk"]["S"].as_str().unwrap_or("");
            let what = if pk.starts_with("INVITEE#") {
                "invitations by email".to_owned()
            } else if values[":low"]["S"]
                .as_str()
                .is_some_and(|low| low.starts_with("AUDIT#"))
            {
                "organization partition, audit events, newest first".to_owned()
            } else {
                let prefix = values[":prefix"]["S"]
                    .as_str()
                    .or(values[":invoice"]["S"].as_str())
                    .map(|p| p.trim_end_matches('#').to_lowercase());
                match (prefix, values[":from"]["S"].as_str()) {
                    (Some(prefix), _) => format!("organization partition, {prefix} items"),
                    (None, Some(_)) => "organization partition, invitations + members".to_owned(),
                    (None, None) => "whole organization partition".to_owned(),
                }
            };
            let count = op.response["Count"].as_u64().unwrap_or(0);
            format!(
                "Query {what} ({count} item{})",
                if count == 1 { "" } else { "s" }
            )
        }
        "TransactWriteItems" => {
            let actions: Vec<String> = request["TransactItems"]
                .as_array()
                .map(|actions| {
                    actions
                        .iter()
                        .map(|action| {
                            let (kind, body) = action
                                .as_object()
                                .and_then(|o| o.iter().next())
                                .map(|(k, v)| (k.as_str(), v))
                                .unwrap_or(("?", &Value::Null));
                            let target = if kind == "Put" {
                                key_label(&body["Item"])
                            } else {
                                key_label(&body["Key"])
                            };
                            let kind = if kind == "ConditionCheck" {
                                "check"
                            } else {
                                kind
                            };
                            format!("{kind} {target}")
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!("TransactWriteItems[{}]", actions.join(", "))
        }
        other => other.to_owned(),
    };
    if failed {
        let kind = op.response["__type"]
            .as_str()
            .and_then(|t| t.rsplit('#').next())
            .unwrap_or("error");
        label.push_str(&format!(" ({kind})"));
    }
    label
}

/// The operations in order, runs of the same one shown once with a count.
fn operations_text(labels: &[String]) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for label in labels {
        match runs.last_mut() {
            Some((last, count)) if last == label => *count += 1,
            _ => runs.push((label.clone(), 1)),
        }
    }
    runs.into_iter()
        .map(|(label, count)| {
            if count == 1 {
                label
            } else {
                format!("{label} ×{count}")
            }
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

// ---------------------------------------------------------------------------------------------
// Calibration: what DynamoDB Local reports against the rules
// ---------------------------------------------------------------------------------------------

struct Probe {
    name: &'static str,
    operation: String,
    reported: Option<f64>,
    rule: Option<Units>,
}

impl Probe {
    fn agrees(&self) -> Option<bool> {
        match (self.reported, self.rule) {
            (Some(reported), Some(rule)) => Some((reported - rule.total()).abs() < 1e-9),
            _ => None,
        }
    }
}

/// Runs `f` and returns what it sent, with the item sizes before and after.
async fn observe<T, Fut>(
    raw: &aws_sdk_dynamodb::Client,
    table: &str,
    recorder: &CapacityRecorder,
    f: impl FnOnce() -> Fut,
) -> Result<(T, Vec<OpRecord>, Sizes, Sizes), Error>
where
    Fut: std::future::Future<Output = T>,
{
    let before = snapshot(raw, table).await?;
    recorder.take();
    let value = f().await;
    let ops = recorder.take();
    let after = snapshot(raw, table).await?;
    Ok((value, ops, before, after))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn probe_item(pk: &str, sk: &str, padding: usize) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".to_owned(), s(pk)),
        ("SK".to_owned(), s(sk)),
        ("data".to_owned(), s(&"x".repeat(padding))),
    ])
}

fn probe_key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))])
}

/// Every operation type the routes use, on a scratch table: DynamoDB Local's figure and the rule's.
async fn calibrate(endpoint: &str) -> Result<Vec<Probe>, Error> {
    let raw = tollgate::store::dynamodb_client(Some(endpoint)).await;
    let table = format!("bench-cost-calibration-{}", uuid::Uuid::new_v4().simple());
    schema::create_table(&raw, &table).await?;
    let recorder = CapacityRecorder::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        raw.config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let t = table.as_str();
    let mut probes = Vec::new();
    macro_rules! probe {
        ($name:expr, $call:expr) => {{
            let (_, ops, before, after) = observe(&raw, t, &recorder, || $call).await?;
            for op in &ops {
                probes.push(Probe {
                    name: $name,
                    operation: op.operation.clone(),
                    reported: op.reported,
                    rule: rule_units(op, &before, &after),
                });
            }
        }};
    }
    probe!(
        "PutItem, new 100 B item",
        client
            .put_item()
            .table_name(t)
            .set_item(Some(probe_item("P", "small", 80)))
            .send()
    );
    probe!(
        "PutItem, new 5 KB item",
        client
            .put_item()
            .table_name(t)
            .set_item(Some(probe_item("P", "large", 5000)))
            .send()
    );
    probe!(
        "GetItem strongly consistent, 5 KB item",
        client
            .get_item()
            .table_name(t)
            .set_key(Some(probe_key("P", "large")))
            .consistent_read(true)
            .send()
    );
    probe!(
        "GetItem eventually consistent, 5 KB item",
        client
            .get_item()
            .table_name(t)
            .set_key(Some(probe_key("P", "large")))
            .send()
    );
    probe!(
        "GetItem strongly consistent, missing item",
        client
            .get_item()
            .table_name(t)
            .set_key(Some(probe_key("P", "missing")))
            .consistent_read(true)
            .send()
    );
    probe!(
        "Query strongly consistent, 2 items (5.1 KB)",
        client
            .query()
            .table_name(t)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s("P"))
            .consistent_read(true)
            .send()
    );
    probe!(
        "Query eventually consistent, 2 items (5.1 KB)",
        client
            .query()
            .table_name(t)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s("P"))
            .send()
    );
    probe!(
        "Query strongly consistent, no items",
        client
            .query()
            .table_name(t)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s("nothing-here"))
            .consistent_read(true)
            .send()
    );
    probe!(
        "UpdateItem, 5 KB item",
        client
            .update_item()
            .table_name(t)
            .set_key(Some(probe_key("P", "large")))
            .update_expression("SET n = :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
    );
    probe!(
        "PutItem, condition fails on a 100 B item",
        client
            .put_item()
            .table_name(t)
            .set_item(Some(probe_item("P", "small", 80)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
    );
    probe!(
        "DeleteItem, 100 B item",
        client
            .delete_item()
            .table_name(t)
            .set_key(Some(probe_key("P", "small")))
            .send()
    );
    let put = |sk: &str, padding: usize| {
        Put::builder()
            .table_name(t)
            .set_item(Some(probe_item("T", sk, padding)))
            .build()
            .map(|put| TransactWriteItem::builder().put(put).build())
    };
    let three_puts = vec![put("a", 80)?, put("b", 80)?, put("c", 80)?];
    probe!(
        "TransactWriteItems, 3 new 100 B items",
        client
            .transact_write_items()
            .set_transact_items(Some(three_puts))
            .send()
    );
    let update = Update::builder()
        .table_name(t)
        .set_key(Some(probe_key("T", "a")))
        .update_expression("SET n = :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()?;
    let check = ConditionCheck::builder()
        .table_name(t)
        .set_key(Some(probe_key("T", "b")))
        .condition_expression("attribute_exists(PK)")
        .build()?;
    let mixed = vec![
        put("d", 80)?,
        TransactWriteItem::builder().update(update).build(),
        TransactWriteItem::builder().condition_check(check).build(),
    ];
    probe!(
        "TransactWriteItems, Put + Update + ConditionCheck (100 B items)",
        client
            .transact_write_items()
            .set_transact_items(Some(mixed))
            .send()
    );
    let conflicting = Put::builder()
        .table_name(t)
        .set_item(Some(probe_item("T", "a", 80)))
        .condition_expression("attribute_not_exists(PK)")
        .build()?;
    probe!(
        "TransactWriteItems, cancelled by its condition",
        client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(conflicting).build())
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
    );
    Ok(probes)
}

// ---------------------------------------------------------------------------------------------
// The gateway under measurement
// ---------------------------------------------------------------------------------------------

/// The dev gateway (as `TestApp::start_with` builds it) with [`CapacityRecorder`] on its store's
/// client, Stripe stood in, a service key, and an integration key ring.
struct Gateway {
    base_url: String,
    issuer: LocalIssuer,
    recorder: CapacityRecorder,
    /// The same table through a client that records nothing: fixtures and size snapshots.
    raw: aws_sdk_dynamodb::Client,
    store: Store,
    table: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Reply {
    status: u16,
    body: Value,
}

impl Gateway {
    async fn start(endpoint: &str, stripe: &StripeStandIn) -> Result<Gateway, Error> {
        let issuer = LocalIssuer::generate()?;
        let table = format!("bench-cost-{}", uuid::Uuid::new_v4().simple());
        let mut jwt = JwtConfig::new(ISSUER);
        jwt.inline_jwks = Some(issuer.jwks().to_string());
        jwt.jwks_url = Some("http://127.0.0.1:9/jwks.json".to_owned());
        let mut config = Config::from_lookup(|_| None)?;
        config.table_name = table.clone();
        config.dynamodb_endpoint = Some(endpoint.to_owned());
        config.jwt = Some(jwt);
        // The harness's limits (tests/src/lib.rs): high enough that nothing is limited here; the
        // limiter's window update still runs on every request, as in production.
        config.rate_limits.sensitive.max = 10_000;
        config.rate_limits.failed_auth.max = 10_000;
        config.rate_limits.anonymous.max = 10_000;
        config.rate_limits.user.max = 100_000;
        config.service_key_hashes = tollgate::auth::service_key::ServiceKeys::hash_hex(SERVICE_KEY);
        config.stripe_secret_key = Some("sk_test_tollgate_standin".to_owned());
        config.stripe_api_base = stripe.base_url.clone();
        config.stripe_webhook_secrets = WEBHOOK_SECRET.to_owned();
        config.app_url = "https://app.tollgate.test".to_owned();
        config.encryption_keys = Some(format!("k1:{ENCRYPTION_KEY}"));
        config.encryption_active_key = Some("k1".to_owned());
        config.api_key_pepper = Some(API_KEY_PEPPER.to_owned());

        let raw = tollgate::store::dynamodb_client(Some(endpoint)).await;
        schema::create_table(&raw, &table).await?;
        let recorder = CapacityRecorder::default();
        let client = aws_sdk_dynamodb::Client::from_conf(
            raw.config()
                .to_builder()
                .interceptor(recorder.clone())
                .build(),
        );
        let state = AppState::from_config(config, Store::new(client, &table)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let router = tollgate_dev::server::router(state, None);
        let server = tokio::spawn(async move {
            let _ = tollgate_dev::server::serve(listener, router).await;
        });
        tollgate::trust::install_ring_defaults();
        Ok(Gateway {
            base_url,
            issuer,
            recorder,
            store: Store::new(raw.clone(), &table),
            raw,
            table,
            http: reqwest::Client::new(),
            server,
        })
    }

    fn token(&self, sub: &str, email: Option<&str>, name: Option<&str>) -> Result<String, Error> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({
            "sub": sub, "iss": ISSUER, "iat": now, "nbf": now, "exp": now + 3600,
            "email": email, "email_verified": email.is_some(), "name": name,
        });
        Ok(self.issuer.sign(&claims)?)
    }

    async fn send(&self, call: &Call) -> Result<Reply, Error> {
        let mut request = self.http.request(
            call.method.clone(),
            format!("{}{}", self.base_url, call.path),
        );
        if let Some(bearer) = &call.bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        for (name, value) in &call.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &call.body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok(Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    /// An unmeasured fixture request that must answer `expected`.
    async fn fixture(&self, call: Call, expected: u16) -> Result<Value, Error> {
        let reply = self.send(&call).await?;
        if reply.status != expected {
            return Err(format!(
                "fixture {} {}: {} (expected {expected}): {}",
                call.method, call.path, reply.status, reply.body
            )
            .into());
        }
        Ok(reply.body)
    }

    async fn tenant(&self, sub: &str) -> Result<TenantId, Error> {
        self.store
            .get_user(sub)
            .await?
            .and_then(|u| u.tenant())
            .ok_or_else(|| format!("{sub} has no organization").into())
    }
}

#[derive(Clone)]
struct Call {
    method: reqwest::Method,
    path: String,
    bearer: Option<String>,
    body: Option<String>,
    headers: Vec<(String, String)>,
}

impl Call {
    fn new(method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>) -> Call {
        Call {
            method,
            path: path.to_owned(),
            bearer: Some(bearer.to_owned()),
            body: body.map(|b| b.to_string()),
            headers: Vec::new(),
        }
    }

    fn get(path: &str, bearer: &str) -> Call {
        Call::new(reqwest::Method::GET, path, bearer, None)
    }

    fn post(path: &str, bearer: &str, body: Value) -> Call {
        Call::new(reqwest::Method::POST, path, bearer, Some(body))
    }

    fn patch(path: &str, bearer: &str, body: Value) -> Call {
        Call::new(reqwest::Method::PATCH, path, bearer, Some(body))
    }

    fn delete(path: &str, bearer: &str) -> Call {
        Call::new(reqwest::Method::DELETE, path, bearer, None)
    }

    fn webhook((body, signature): (String, String)) -> Call {
        Call {
            method: reqwest::Method::POST,
            path: "/api/webhooks/stripe".to_owned(),
            bearer: None,
            body: Some(body),
            headers: vec![("stripe-signature".to_owned(), signature)],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

struct Row {
    /// Position of the route in `routes()`.
    route_index: usize,
    route: String,
    case: String,
    operations: Vec<String>,
    units: Units,
    read_computed: bool,
    write_computed: bool,
    notes: Vec<String>,
    why: String,
    /// Hot paths: `None` at the semantic minimum, else the requests above it.
    above_minimum: Option<Option<Vec<String>>>,
}

struct Meter<'a> {
    gateway: &'a Gateway,
    rows: Vec<Row>,
    /// Operations answered without `ConsumedCapacity`, by type.
    unreported: BTreeSet<String>,
    /// Operation types whose DynamoDB Local figure the table uses.
    used_local: BTreeSet<String>,
    /// Why figures were computed instead.
    computed: BTreeSet<String>,
    /// Product behaviour worth a line of its own.
    findings: Vec<String>,
}

impl Meter<'_> {
    /// Sends `call` alone, checks it answers `expected`, and records its DynamoDB requests.
    async fn measure(
        &mut self,
        case: &str,
        call: Call,
        expected: u16,
        why: &str,
    ) -> Result<Value, Error> {
        self.measure_hot(case, call, expected, why, None).await
    }

    /// As [`Meter::measure`] for a hot path: `minimum` is the semantic minimum, as operation
    /// labels in order; the row says whether the route is at it, or which requests it adds.
    async fn measure_hot(
        &mut self,
        case: &str,
        call: Call,
        expected: u16,
        why: &str,
        minimum: Option<&[&str]>,
    ) -> Result<Value, Error> {
        let gateway = self.gateway;
        let (reply, ops, before, after) =
            observe(&gateway.raw, &gateway.table, &gateway.recorder, || {
                gateway.send(&call)
            })
            .await?;
        let reply = reply?;
        if reply.status != expected {
            return Err(format!(
                "{} {} ({case}): answered {} instead of {expected}: {}",
                call.method, call.path, reply.status, reply.body
            )
            .into());
        }
        let route_index = match tollgate::routes::match_route(
            tollgate::routes::routes(),
            &call.method,
            call.path.split('?').next().unwrap_or(&call.path),
        ) {
            tollgate::routes::RouteMatch::Found(route, _) => tollgate::routes::routes()
                .iter()
                .position(|r| r == route)
                .unwrap_or(usize::MAX),
            _ => return Err(format!("{} {} matches no route", call.method, call.path).into()),
        };
        let route = &tollgate::routes::routes()[route_index];
        let mut row = Row {
            route_index,
            route: format!("`{} {}`", route.method, route.path),
            case: case.to_owned(),
            operations: Vec::new(),
            units: Units::default(),
            read_computed: false,
            write_computed: false,
            notes: Vec::new(),
            why: why.to_owned(),
            above_minimum: None,
        };
        for op in &ops {
            row.operations.push(op_label(op));
            let rule = rule_units(op, &before, &after);
            if op.reported.is_none() {
                self.unreported.insert(if op.status == 200 {
                    op.operation.clone()
                } else {
                    format!("{} (error answer)", op.operation)
                });
            }
            // DynamoDB Local's known deviations (see the calibration table): its multi-item
            // transaction figure, no figure on error answers, 0 for a Query that finds nothing.
            let empty_read = matches!(op.operation.as_str(), "Query" | "Scan")
                && op.response["Count"].as_u64() == Some(0);
            let local_wrong = op.operation == "TransactWriteItems" || empty_read;
            match (op.status == 200 && !local_wrong, op.reported, rule) {
                (true, Some(reported), rule) => {
                    self.used_local.insert(op.operation.clone());
                    if is_read(&op.operation) {
                        row.units.read += reported;
                    } else {
                        row.units.write += reported;
                    }
                    if let Some(rule) = rule
                        && (rule.total() - reported).abs() > 1e-9
                    {
                        row.notes.push(format!(
                            "{}: DynamoDB Local {reported}, rules {}",
                            op.operation,
                            rule.total()
                        ));
                    }
                }
                (_, reported, Some(rule)) => {
                    row.units.read += rule.read;
                    row.units.write += rule.write;
                    row.read_computed |= rule.read > 0.0;
                    row.write_computed |= rule.write > 0.0;
                    let local = match reported {
                        Some(reported) => format!("DynamoDB Local reports {}", number(reported)),
                        None => "DynamoDB Local reports nothing".to_owned(),
                    };
                    let (reason, note) = if op.status != 200 {
                        (
                            "error answers (no figure)",
                            format!(
                                "{} computed {} (error answer; {local})",
                                op.operation,
                                units_text(rule)
                            ),
                        )
                    } else if empty_read {
                        (
                            "a Query that finds nothing (DynamoDB Local reports 0; DynamoDB charges the minimum read)",
                            format!(
                                "{} computed {} (no items; {local})",
                                op.operation,
                                units_text(rule)
                            ),
                        )
                    } else {
                        (
                            "`TransactWriteItems` (DynamoDB Local's figure does not follow the rules for several items)",
                            format!("{} computed {}; {local}", op.operation, units_text(rule)),
                        )
                    };
                    self.computed.insert(reason.to_owned());
                    row.notes.push(note);
                }
                (_, Some(reported), None) => {
                    self.used_local.insert(op.operation.clone());
                    if is_read(&op.operation) {
                        row.units.read += reported;
                    } else {
                        row.units.write += reported;
                    }
                }
                (_, None, None) => row
                    .notes
                    .push(format!("{}: no figure (not computed)", op.operation)),
            }
        }
        if let Some(minimum) = minimum {
            let mut extra = Vec::new();
            let mut expected = minimum.iter().peekable();
            for label in &row.operations {
                match expected.peek() {
                    Some(next) if *next == label => {
                        expected.next();
                    }
                    _ => extra.push(label.clone()),
                }
            }
            if let Some(missing) = expected.next() {
                return Err(format!(
                    "{} {} ({case}): the semantic minimum expects {missing:?}, which was not sent: {:?}",
                    call.method, call.path, row.operations
                )
                .into());
            }
            row.above_minimum = Some((!extra.is_empty()).then_some(extra));
        }
        self.rows.push(row);
        Ok(reply.body)
    }
}

fn number(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn units_text(units: Units) -> String {
    match (units.read > 0.0, units.write > 0.0) {
        (true, true) => format!("{} RCU + {} WCU", number(units.read), number(units.write)),
        (true, false) => format!("{} RCU", number(units.read)),
        _ => format!("{} WCU", number(units.write)),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every route, in an order that builds what the next one needs.
async fn exercise(meter: &mut Meter<'_>) -> Result<(), Error> {
    let gateway = meter.gateway;
    let owner_sub = "auth0|cost-owner";
    let owner = gateway.token(owner_sub, Some("owner@example.com"), Some("Owner Person"))?;

    // Identity and onboarding.
    meter
        .measure(
            "first sign-in, no invitation",
            Call::get("/api/me", &owner),
            201,
            "Rate-limit window (1 WCU); the user read misses; the conditional put creates the user; one Query for invitations to this email, the only way to find them. Once per user.",
        )
        .await?;
    meter
        .measure(
            "onboarding",
            Call::post(
                "/api/organizations",
                &owner,
                json!({"name": "Cost Calls", "billingEmail": "billing@example.com"}),
            ),
            201,
            "Rate limit + user read (the pipeline), then one transaction: organization and membership created, user record pointed at it (all conditional, so concurrent onboarding makes one organization). Minimum for an atomic onboarding.",
        )
        .await?;
    meter
        .measure_hot(
            "returning member",
            Call::get("/api/me", &owner),
            200,
            "**Hot path.** Semantic minimum: the user (strongly consistent, so a role change or removal applies on the next request) and the organization it names (name, plan): two dependent point reads, plus the rate-limit window every user request pays (1 WCU). No invitation Query for a member, no other write.",
            Some(&[
                "UpdateItem rate-limit window (user)",
                "GetItem user",
                "GetItem organization",
            ]),
        )
        .await?;
    let loner = gateway.token("auth0|cost-loner", Some("loner@example.com"), Some("Loner"))?;
    gateway.fixture(Call::get("/api/me", &loner), 201).await?;
    meter
        .measure(
            "returning, no organization",
            Call::get("/api/me", &loner),
            200,
            "Rate limit + user read, and the invitations-by-email Query again: a user outside any organization with a verified email is shown the invitations to it, so they are looked for on every call until they belong somewhere (1 RCU while there are none).",
        )
        .await?;

    // Permissions.
    meter
        .measure_hot(
            "permissions only",
            Call::post(
                "/api/permissions/check",
                &owner,
                json!({"permissions": ["users:read", "billing:update", "calls:read"]}),
            ),
            200,
            "**Hot path.** Semantic minimum: the caller's role, read fresh (one point read), plus the rate-limit window (1 WCU). The decision is computed in memory from the role table; the organization is read only when features are asked.",
            Some(&["UpdateItem rate-limit window (user)", "GetItem user"]),
        )
        .await?;
    meter
        .measure(
            "with plan features",
            Call::post(
                "/api/permissions/check",
                &owner,
                json!({"permissions": ["billing:read"], "features": ["apiAccess", "advancedAnalytics"]}),
            ),
            200,
            "As above plus the organization (its plan decides features): one more point read, only when features are asked. At the minimum.",
        )
        .await?;

    // The organization.
    meter
        .measure(
            "read",
            Call::get("/api/organization", &owner),
            200,
            "Rate limit + user read (tenant and role) + the organization item. Minimum.",
        )
        .await?;
    meter
        .measure(
            "rename",
            Call::patch("/api/organization", &owner, json!({"name": "Cost Calls Ltd"})),
            200,
            "Rate limit + user read + the organization (its former name, for the audit event), then one transaction: the update conditioned on that name, and the audit event. Minimum for an audited rename (the read and the transaction's double rate are the audit's price).",
        )
        .await?;

    // Billing through the Stripe stand-in.
    meter
        .measure(
            "first checkout",
            Call::post(
                "/api/billing/checkout",
                &owner,
                json!({"plan": "PROFESSIONAL", "interval": "monthly"}),
            ),
            200,
            "Two rate-limit windows (user and sensitive), user read, organization read (subscription state, customer id), then — first checkout only — a transaction storing the Stripe customer on the organization and its customer→organization look-up item (both conditional: concurrent first checkouts keep one customer). Later checkouts skip the transaction.",
        )
        .await?;
    meter
        .measure(
            "portal session",
            Call::post("/api/billing/portal", &owner, json!({})),
            200,
            "Two rate-limit windows, user read, organization read (the customer id). Minimum.",
        )
        .await?;
    let tenant = gateway.tenant(owner_sub).await?;
    let customer = gateway
        .store
        .get_organization(&tenant)
        .await?
        .and_then(|o| o.stripe_customer_id)
        .ok_or("checkout stored no customer")?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let period = (now - 86_400, now + 29 * 86_400);
    let created = now - 3_600;
    let subscription_created = signed_event(
        WEBHOOK_SECRET,
        "customer.subscription.created",
        "evt_cost_sub_created",
        created,
        subscription_object("sub_cost", &customer, "active", "price_pro_monthly", period),
    );
    let body = meter
        .measure(
            "subscription.created",
            Call::webhook(subscription_created.clone()),
            200,
            "No rate limit or user (Stripe is verified by signature). Event-marker read (projection, the cheap early answer to redeliveries), customer→organization look-up, organization read (billing version), then one transaction: event marker + billing state, conditional on the version read (exactly once, in any order). Minimum.",
        )
        .await?;
    if body["outcome"] != "processed" {
        return Err(format!("subscription.created not processed: {body}").into());
    }
    let body = meter
        .measure(
            "redelivery",
            Call::webhook(subscription_created),
            200,
            "The event-marker read answers it: one point read, nothing written. Minimum.",
        )
        .await?;
    if body["outcome"] != "duplicate" {
        return Err(format!("redelivery not a duplicate: {body}").into());
    }
    meter
        .measure(
            "read",
            Call::get("/api/billing/subscription", &owner),
            200,
            "Rate limit + user read + the organization item, which holds the billing state. Minimum.",
        )
        .await?;
    // The team (the plan now allows 5 seats).
    let invited = meter
        .measure(
            "invite",
            Call::post(
                "/api/users",
                &owner,
                json!({"email": "member@example.com", "role": "MANAGER"}),
            ),
            201,
            "Two rate-limit windows, user read, organization read (plan → seat limit), a Query of **every** member (to refuse inviting an existing member's email), a Query of the invitations (each expired one gives its seat back in its own transaction first), then one transaction: seat counter (conditional on a free seat), invitation, invitee index, inviter still holding their role. The member Query grows with the team (1 RCU per 4 KB of members); the rest is the minimum.",
        )
        .await?;
    meter
        .measure(
            "list",
            Call::get("/api/users", &owner),
            200,
            "Rate limit + user read + a Query of the pending invitations, then (while the page has room) a Query of the members. Two prefix queries rather than one key range, because invoices sort between the two prefixes; the second costs 1 RCU. Minimum for that key layout.",
        )
        .await?;
    let member = gateway.token(
        "auth0|cost-member",
        Some("member@example.com"),
        Some("Member Person"),
    )?;
    meter
        .measure(
            "first sign-in, lists an invitation",
            Call::get("/api/me", &member),
            201,
            "First sign-in as above; the invitations-by-email Query finds one, and its organization is read for its name (one GetItem per listed invitation).",
        )
        .await?;
    let invitation_id = invited["id"]
        .as_str()
        .ok_or("invitation has no id")?
        .to_owned();
    let joined = meter
        .measure(
            "accept an invitation",
            Call::post(
                &format!("/api/me/invitations/{invitation_id}/accept"),
                &member,
                json!({}),
            ),
            200,
            "Rate limit + user read, the invitations-by-email Query (finds the invitation by id among those addressed to the verified email), the organization (plan → seat limit), then one transaction: invitee index and invitation deleted (unexpired), membership put, user pointed at the organization, organization counters (member count under the seat limit). Once per invited user.",
        )
        .await?;
    let member_id = joined["user"]["id"]
        .as_str()
        .ok_or("joined member has no id")?
        .to_owned();
    meter
        .measure(
            "change role",
            Call::patch(
                &format!("/api/users/{member_id}"),
                &owner,
                json!({"role": "VIEWER"}),
            ),
            200,
            "Rate limit + user read + the target member + the organization (owner count for the last-owner guard), then one transaction: member role, user role, organization owner count, actor still holding their role. The organization read duplicates the transaction's own `ownerCount` condition (it only lets the guard answer before the write): one read above the minimum.",
        )
        .await?;
    meter
        .measure(
            "remove member",
            Call::delete(&format!("/api/users/{member_id}"), &owner),
            200,
            "As for a role change: member read, organization read for the owner-count guard (again duplicated by the transaction's condition), one transaction: member deleted, user detached, organization counters, actor check.",
        )
        .await?;
    let second = gateway
        .fixture(
            Call::post(
                "/api/users",
                &owner,
                json!({"email": "second@example.com", "role": "VIEWER"}),
            ),
            201,
        )
        .await?;
    let invitation_id = second["id"]
        .as_str()
        .ok_or("invitation has no id")?
        .to_owned();
    meter
        .measure(
            "revoke",
            Call::delete(&format!("/api/users/invitations/{invitation_id}"), &owner),
            200,
            "Rate limit + user read + the invitation (its email names the invitee index item; its role decides who may revoke it), then one transaction: invitation and invitee index deleted, seat freed, actor still holding their role. Minimum.",
        )
        .await?;
    let third = gateway
        .fixture(
            Call::post(
                "/api/users",
                &owner,
                json!({"email": "third@example.com", "role": "VIEWER"}),
            ),
            201,
        )
        .await?;
    let third_id = third["id"]
        .as_str()
        .ok_or("invitation has no id")?
        .to_owned();
    meter
        .measure(
            "resend",
            Call::post(
                &format!("/api/users/invitations/{third_id}/resend"),
                &owner,
                json!({}),
            ),
            200,
            "Rate limit + user read + the invitation (role, email), then one transaction: new `expiresAt` on the invitation and its invitee index item, actor still holding their role. Minimum.",
        )
        .await?;
    let invitee = gateway.token("auth0|cost-third", Some("third@example.com"), None)?;
    gateway.fixture(Call::get("/api/me", &invitee), 201).await?;
    meter
        .measure(
            "decline",
            Call::post(
                &format!("/api/me/invitations/{third_id}/decline"),
                &invitee,
                json!({}),
            ),
            200,
            "Rate limit + user read + the invitations-by-email Query (the invitation is found among those addressed to the verified email), then one transaction: invitee index and invitation deleted, seat freed. Minimum.",
        )
        .await?;
    let leaver_invitation = gateway
        .fixture(
            Call::post(
                "/api/users",
                &owner,
                json!({"email": "leaver@example.com", "role": "VIEWER"}),
            ),
            201,
        )
        .await?;
    let leaver_invitation = leaver_invitation["id"]
        .as_str()
        .ok_or("invitation has no id")?
        .to_owned();
    let leaver = gateway.token("auth0|cost-leaver", Some("leaver@example.com"), None)?;
    gateway.fixture(Call::get("/api/me", &leaver), 201).await?;
    gateway
        .fixture(
            Call::post(
                &format!("/api/me/invitations/{leaver_invitation}/accept"),
                &leaver,
                json!({}),
            ),
            200,
        )
        .await?;
    meter
        .measure(
            "leave",
            Call::delete("/api/me/organization", &leaver),
            200,
            "Rate limit + user read + the organization (owner count for the last-owner guard) + the caller's membership, then one transaction: member deleted, user detached, organization counters (owner count conditional when an owner leaves). The organization read duplicates the transaction's condition, as for a removal.",
        )
        .await?;

    gateway
        .fixture(
            Call::webhook(signed_event(
                WEBHOOK_SECRET,
                "invoice.paid",
                "evt_cost_invoice_paid",
                created + 60,
                invoice_object("in_cost_1", &customer, "sub_cost", "paid", created + 30),
            )),
            200,
        )
        .await?;
    meter
        .measure(
            "first page (1 invoice)",
            Call::get("/api/billing/invoices", &owner),
            200,
            "Rate limit + user read + one Query of the organization's invoices, newest first, one page. The Query is eventually consistent (0.5 RCU per 4 KB), unlike the store's other reads. Minimum.",
        )
        .await?;

    // GET /api/users once the organization has an invoice (it was listed above before any).
    let relisted = gateway.send(&Call::get("/api/users", &owner)).await?;
    // (A key-range Query once read `INVOICE#…` items as invitations here and answered 500.)
    if relisted.status != 200 {
        return Err(format!(
            "GET /api/users answers {} once the organization has an invoice: {}",
            relisted.status, relisted.body
        )
        .into());
    }

    // Integrations.
    let integration = meter
        .measure(
            "create",
            Call::post(
                "/api/integrations",
                &owner,
                json!({"type": "twilio", "name": "Main line", "credentials": {"accountSid": "AC1", "authToken": "secret-token"}}),
            ),
            201,
            "Two rate-limit windows, user read, one transaction: the encrypted credentials (conditional on absence) and the audit event. Minimum for an audited write.",
        )
        .await?;
    let integration_id = integration["id"]
        .as_str()
        .ok_or("integration has no id")?
        .to_owned();
    meter
        .measure(
            "list (1 integration)",
            Call::get("/api/integrations", &owner),
            200,
            "Rate limit + user read + one Query of the organization's integrations (all pages). Minimum.",
        )
        .await?;
    meter
        .measure(
            "delete",
            Call::delete(&format!("/api/integrations/{integration_id}"), &owner),
            200,
            "Rate limit + user read + one transaction: the conditional delete (404 when absent, no read first) and the audit event. Minimum for an audited delete.",
        )
        .await?;

    // Outbound webhook endpoints.
    let endpoint = meter
        .measure(
            "create",
            Call::post(
                "/api/webhooks/endpoints",
                &owner,
                json!({"url": "https://hooks.example.com/tollgate", "eventTypes": ["member.joined", "api_key.created"]}),
            ),
            201,
            "Two rate-limit windows, user read, one transaction: the organization's endpoint counter (conditional on fewer than 10, so concurrent creates cannot pass the limit), the endpoint with its encrypted signing secret (conditional on absence) and the audit event. Minimum for an audited write under a per-organization limit.",
        )
        .await?;
    let endpoint_id = endpoint["id"]
        .as_str()
        .ok_or("webhook endpoint has no id")?
        .to_owned();
    meter
        .measure(
            "list (1 endpoint)",
            Call::get("/api/webhooks/endpoints", &owner),
            200,
            "Rate limit + user read + one Query of the organization's endpoints (at most 10, one page). Minimum.",
        )
        .await?;
    meter
        .measure(
            "delete",
            Call::delete(&format!("/api/webhooks/endpoints/{endpoint_id}"), &owner),
            204,
            "Rate limit + user read + one transaction: the conditional delete (404 when absent, no read first), the counter decrement and the audit event. Minimum for an audited delete under a counter.",
        )
        .await?;

    // Usage.
    let organization_id = tenant.as_str().to_owned();
    let ended = rfc3339(tollgate_tests::recent_call_end(time::Duration::minutes(3)));
    let call_body = json!({"organizationId": organization_id, "callId": "cost-call-1",
        "durationSeconds": 125, "endedAt": ended});
    meter
        .measure_hot(
            "new call",
            Call::post("/api/usage/calls", SERVICE_KEY, call_body.clone()),
            201,
            "**Hot path.** Semantic minimum: the organization (existence → 404, billing-period anchor, overage freeze) and one transaction: the call record put only if new (idempotency per callId), the period counter ADD, the organization re-checked (not deleted, period not billed), so a call is never lost or counted twice. No rate limit (service key). The counter read after the transaction serves only the 80 %/100 % alerts (each fired once per period; skipped when the plan includes no minutes).",
            Some(&[
                "GetItem organization",
                "TransactWriteItems[Put call record, Update usage counter, check organization]",
            ]),
        )
        .await?;
    meter
        .measure(
            "same call again (replay)",
            Call::post("/api/usage/calls", SERVICE_KEY, call_body),
            200,
            "Organization read, the transaction cancelled by the call record's condition (nothing written), then the original record read to answer with it (and to tell a replay from a conflicting one). Minimum for idempotency without a read before every write.",
        )
        .await?;
    meter
        .measure_hot(
            "current period",
            Call::get("/api/billing/usage", &owner),
            200,
            "**Hot path.** Semantic minimum: user (tenant, role), organization (plan, period anchor) and the period counter: three dependent point reads whatever the number of calls, plus the rate-limit window. The calls themselves are never read.",
            Some(&[
                "UpdateItem rate-limit window (user)",
                "GetItem user",
                "GetItem organization",
                "GetItem usage counter",
            ]),
        )
        .await?;

    // Organization API keys: a second organization, on BUSINESS (keys need apiAccess).
    let key_owner_sub = "auth0|cost-key-owner";
    let key_owner = gateway.token(
        key_owner_sub,
        Some("key-owner@example.com"),
        Some("Key Owner"),
    )?;
    gateway
        .fixture(Call::get("/api/me", &key_owner), 201)
        .await?;
    gateway
        .fixture(
            Call::post(
                "/api/organizations",
                &key_owner,
                json!({"name": "Cost Keys"}),
            ),
            201,
        )
        .await?;
    let key_tenant = gateway.tenant(key_owner_sub).await?;
    gateway
        .store
        .set_organization_plan(
            &key_tenant,
            Some(tollgate::pricing::Plan::Business),
            tollgate::store::PlanStatus::Active,
        )
        .await?;
    let created_key = meter
        .measure(
            "create",
            Call::post(
                "/api/api-keys",
                &key_owner,
                json!({"name": "CRM sync", "role": "VIEWER"}),
            ),
            201,
            "Two rate-limit windows (user, sensitive), user read, organization read (apiAccess), one transaction putting the key item and its look-up item (both conditional on absence). Minimum for a key findable by id and listable by organization.",
        )
        .await?;
    let api_key = created_key["key"]
        .as_str()
        .ok_or("the created key has no key")?
        .to_owned();
    let api_key_id = created_key["id"]
        .as_str()
        .ok_or("the created key has no id")?
        .to_owned();
    meter
        .measure(
            "list (1 key)",
            Call::get("/api/api-keys", &key_owner),
            200,
            "Rate limit + user read + one Query of the organization's keys. Minimum.",
        )
        .await?;
    meter
        .measure(
            "by API key, first use in a minute",
            Call::get("/api/organization", &api_key),
            200,
            "A request authenticated by an API key whose last use was recorded over a minute ago (here: never): as the row below, plus the `lastUsedAt` writes, conditional on the look-up item (so concurrent requests write once) and then copied to the key item the listing reads. At most once a minute per key.",
        )
        .await?;
    meter
        .measure_hot(
            "by API key",
            Call::get("/api/organization", &api_key),
            200,
            "**Hot path** (every request authenticated by an API key). Semantic minimum: the key's look-up item by id (strongly consistent, so a revoked key is refused at once; the HMAC compare is in memory), the per-key rate-limit window, the organization (apiAccess of its entitlement), which the handler answers with (no second read).",
            Some(&[
                "GetItem API key look-up",
                "UpdateItem rate-limit window (api_key)",
                "GetItem organization",
            ]),
        )
        .await?;
    meter
        .measure(
            "revoke",
            Call::delete(&format!("/api/api-keys/{api_key_id}"), &key_owner),
            200,
            "Rate limit + user read + one transaction deleting the key item (conditional on this organization's key) and its look-up item. Minimum.",
        )
        .await?;

    // The audit log: the events the changes above wrote.
    meter
        .measure(
            "first page",
            Call::get("/api/audit?limit=50", &owner),
            200,
            "Rate limit + user read + one Query of the organization's audit events, newest first (a key range on the time-ordered sort key, eventually consistent: half the RCU of a strongly consistent read; an event written a moment ago may show on the next read). Minimum: one Query per page.",
        )
        .await?;

    // Deleting the organization (the subscription canceled first: live ones block deletion).
    gateway
        .fixture(
            Call::webhook(signed_event(
                WEBHOOK_SECRET,
                "customer.subscription.deleted",
                "evt_cost_sub_deleted",
                created + 300,
                subscription_object(
                    "sub_cost",
                    &customer,
                    "canceled",
                    "price_pro_monthly",
                    period,
                ),
            )),
            200,
        )
        .await?;
    let partition = gateway
        .raw
        .query()
        .table_name(&gateway.table)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", s(&format!("ORG#{organization_id}")))
        .consistent_read(true)
        .send()
        .await?
        .count;
    meter
        .measure(
            &format!("delete ({partition} items in the partition)"),
            Call::delete("/api/organization", &owner),
            202,
            "Rate limit + user read + the organization's deletion state (live subscription? already deleted?) + the conditional mark that also starts the deletion job. Does not grow with the partition: the job (org-cleanup, from the table's stream) does the rest, about one WCU per item plus one per step of 200 (see Organization deletion).",
        )
        .await?;
    Ok(())
}

pub async fn run(_args: Args) -> BenchResult {
    let endpoint = tollgate_tests::dynamodb_endpoint();
    let probes = calibrate(&endpoint).await?;
    let stripe = StripeStandIn::start().await;
    let gateway = Gateway::start(&endpoint, &stripe).await?;
    let mut meter = Meter {
        gateway: &gateway,
        rows: Vec::new(),
        unreported: BTreeSet::new(),
        used_local: BTreeSet::new(),
        computed: BTreeSet::new(),
        findings: Vec::new(),
    };
    exercise(&mut meter).await?;

    let measured: BTreeSet<usize> = meter.rows.iter().map(|r| r.route_index).collect();
    let missing: Vec<String> = tollgate::routes::routes()
        .iter()
        .enumerate()
        .filter(|(i, _)| !measured.contains(i))
        .map(|(_, r)| format!("{} {}", r.method, r.path))
        .collect();
    if !missing.is_empty() {
        return Err(format!("routes not measured: {}", missing.join(", ")).into());
    }
    Ok(report(&endpoint, &probes, meter))
}

fn report(endpoint: &str, probes: &[Probe], meter: Meter) -> String {
    let mut out = String::new();
    out.push_str("## DynamoDB cost per route\n\n");
    out.push_str(&format!(
        "Every route of the route table through the dev gateway against DynamoDB Local ({endpoint}), one request at a time, with an SDK interceptor on the store's client that sets `ReturnConsumedCapacity: TOTAL` on every request (before signing) and reads `ConsumedCapacity` from every answer. \
Each row is exactly one request: its DynamoDB requests in order, and their read (RCU) and write (WCU) capacity units. Items are small (well under 1 KB), so a point read is 1 RCU and a write 1 WCU unless noted.\n\n"
    ));
    out.push_str("| route | case | DynamoDB requests (in order) | RCU | WCU | why this is the minimum / notes |\n");
    out.push_str("|---|---|---|---:|---:|---|\n");
    let mut rows = meter.rows;
    rows.sort_by_key(|r| r.route_index);
    for row in &rows {
        let mut why = row.why.clone();
        match &row.above_minimum {
            Some(None) => why.push_str(" **At the minimum.**"),
            Some(Some(extra)) => {
                why.push_str(&format!(" **Above the minimum by:** {}.", extra.join(", ")))
            }
            None => {}
        }
        if !row.notes.is_empty() {
            why.push_str(&format!(" <br>_{}._", row.notes.join("; ")));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {}{} | {}{} | {} |\n",
            row.route,
            row.case,
            operations_text(&row.operations),
            number(row.units.read),
            if row.read_computed { "*" } else { "" },
            number(row.units.write),
            if row.write_computed { "*" } else { "" },
            why.replace('|', "\\|"),
        ));
    }
    out.push_str(
        "\n\\* includes figures computed from DynamoDB's published rules (1 RCU per 4 KB strongly consistent, 0.5 eventually consistent; 1 WCU per 1 KB, the larger of the item before and after, also for a failed conditional write; transactions twice that per item, a `ConditionCheck` counted as a transactional read of its item; a cancelled transaction counted as if it had run, an upper bound) with the item sizes read from the table before and after the request — where DynamoDB Local gives no figure or a wrong one (below).\n\n",
    );
    let verdicts: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let verdict = match row.above_minimum.as_ref()? {
                None => "at its semantic minimum".to_owned(),
                Some(extra) => format!("above it by {}", extra.join(", ")),
            };
            Some(format!("{} ({}) {verdict}", row.route, row.case))
        })
        .collect();
    out.push_str(&format!(
        "Hot paths: {}. Every user request also pays the rate limiter's window update (1 WCU; 2 on the sensitive routes): the price of counting limits in DynamoDB, not of the route.\n\n",
        verdicts.join("; ")
    ));

    if !meter.findings.is_empty() {
        out.push_str("Found while measuring:\n\n");
        for finding in &meter.findings {
            out.push_str(&format!("- {finding}\n"));
        }
        out.push('\n');
    }
    out.push_str("### What DynamoDB Local reports\n\n");
    out.push_str(
        "Each operation type the routes use, probed on a scratch table before the run:\n\n",
    );
    out.push_str(
        "| probe | operation | DynamoDB Local's ConsumedCapacity | DynamoDB's rules | agrees |\n",
    );
    out.push_str("|---|---|---:|---:|---|\n");
    for probe in probes {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            probe.name,
            probe.operation,
            probe.reported.map_or("none".to_owned(), number),
            probe.rule.map_or("—".to_owned(), units_text),
            match probe.agrees() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "no figure",
            }
        ));
    }
    out.push_str(&format!(
        "\nDynamoDB Local returns `ConsumedCapacity` as `CapacityUnits` only (no read/write split) and only on successful answers. The table uses its figure for {} (each agreed with the rules on the probes, and the rules are recomputed for every request as a check: any disagreement is noted in the row). It uses computed figures for {}.\n",
        if meter.used_local.is_empty() {
            "no operation".to_owned()
        } else {
            meter
                .used_local
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if meter.computed.is_empty() {
            "nothing".to_owned()
        } else {
            meter.computed.iter().cloned().collect::<Vec<_>>().join("; ")
        },
    ));
    if !meter.unreported.is_empty() {
        out.push_str(&format!(
            "During the routes' requests, answers without `ConsumedCapacity`: {}.\n",
            meter
                .unreported
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push_str(
        "\nCommands:\n\n```sh\nDYNAMODB_ENDPOINT=\"$(infra/scripts/dynamodb-local.sh start bench)\"\nexport DYNAMODB_ENDPOINT\ntollgate-bench cost\ninfra/scripts/dynamodb-local.sh stop bench\n```\n",
    );
    out
}
