//! `template.yaml` deploys what the code expects: the same routes as the route table, one function
//! per binary, and the same table definition `tollgate-dev create-table` builds locally.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_norway::Value;
use tollgate::routes::{Function, routes};
use tollgate::store::schema::{self, TABLE};

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml parses")
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(name, resource)| (name.as_str().expect("logical id"), resource))
        .collect()
}

/// (binary, method, path) for every HttpApi event in the template.
fn template_routes(template: &Value) -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for (_, function) in resources_of_type(template, "AWS::Serverless::Function") {
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("Binary");
        let Some(events) = function["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            assert_eq!(
                event["Type"].as_str(),
                Some("HttpApi"),
                "only HttpApi events: {event:?}"
            );
            let properties = &event["Properties"];
            routes.insert((
                binary.to_owned(),
                properties["Method"]
                    .as_str()
                    .expect("literal Method")
                    .to_owned(),
                properties["Path"]
                    .as_str()
                    .expect("literal Path")
                    .to_owned(),
            ));
        }
    }
    routes
}

#[test]
fn template_routes_equal_the_route_table() {
    let expected: BTreeSet<_> = routes()
        .iter()
        .map(|r| {
            (
                r.function.name().to_owned(),
                r.method.as_str().to_owned(),
                r.path.to_owned(),
            )
        })
        .collect();
    assert_eq!(template_routes(&template()), expected);
}

#[test]
fn every_function_is_built_from_its_own_binary_for_arm64() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    let mut binaries = BTreeSet::new();
    for (name, function) in resources_of_type(&template, "AWS::Serverless::Function") {
        assert_eq!(
            function["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        binaries.insert(
            function["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let expected: BTreeSet<_> = Function::ALL
        .iter()
        .map(|f| f.name())
        .chain(tollgate::routes::MAINTENANCE_BINARIES)
        .map(str::to_owned)
        .collect();
    assert_eq!(binaries, expected);
    for binary in &expected {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/").to_owned()
            + binary
            + "/Cargo.toml";
        assert!(
            std::path::Path::new(&manifest).exists(),
            "functions/{binary} crate"
        );
    }
}

#[test]
fn the_deployed_table_matches_the_local_definition() {
    let template = template();
    let tables = resources_of_type(&template, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "one table");
    let (name, table) = tables[0];
    assert_eq!(name, "TollgateTable");
    let properties = &table["Properties"];
    let keys: Vec<(String, String)> = properties["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (TABLE.partition_key.to_owned(), "HASH".to_owned()),
            (TABLE.sort_key.to_owned(), "RANGE".to_owned())
        ]
    );
    let attributes: BTreeSet<(String, String)> = properties["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        attributes,
        BTreeSet::from([
            (TABLE.partition_key.to_owned(), "S".to_owned()),
            (TABLE.sort_key.to_owned(), "S".to_owned())
        ])
    );
    assert!(
        properties["GlobalSecondaryIndexes"].is_null(),
        "no GSIs: look-ups are items"
    );
    assert_eq!(properties["BillingMode"].as_str(), Some(TABLE.billing_mode));
    assert_eq!(
        properties["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TABLE.ttl_attribute)
    );
    assert_eq!(
        properties["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        properties["StreamSpecification"]["StreamViewType"].as_str(),
        Some(TABLE.stream_view_type)
    );
}

#[tokio::test]
async fn the_local_table_is_created_from_the_same_definition() {
    let client = tollgate::store::dynamodb_client(Some(&tollgate_tests::dynamodb_endpoint())).await;
    let name = format!("schema-{}", uuid::Uuid::new_v4().simple());
    assert!(
        schema::create_table(&client, &name).await.unwrap(),
        "created"
    );
    assert!(
        !schema::create_table(&client, &name).await.unwrap(),
        "second run leaves it"
    );
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let table = described.table().unwrap();
    let keys: Vec<(String, String)> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("PK".to_owned(), "HASH".to_owned()),
            ("SK".to_owned(), "RANGE".to_owned())
        ]
    );
    assert_eq!(
        table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str()),
        Some(TABLE.billing_mode)
    );
    assert!(table.global_secondary_indexes().is_empty());
    let ttl = client
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some(TABLE.ttl_attribute));
    let stream = table.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        Some(TABLE.stream_view_type)
    );
}

#[tokio::test]
async fn a_kept_table_without_a_stream_gets_one() {
    let client = tollgate::store::dynamodb_client(Some(&tollgate_tests::dynamodb_endpoint())).await;
    let name = format!("kept-{}", uuid::Uuid::new_v4().simple());
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .unwrap()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        .attribute_definitions(attribute("PK"))
        .attribute_definitions(attribute("SK"))
        .send()
        .await
        .unwrap();
    assert!(
        !schema::create_table(&client, &name).await.unwrap(),
        "the table was kept"
    );
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let stream = described.table().and_then(|t| t.stream_specification());
    assert!(stream.is_some_and(|s| s.stream_enabled()), "{stream:?}");
}

/// Whether `value` matches an event filter `pattern` of exact values (Lambda's filter syntax:
/// every leaf of the pattern is a list of accepted values; a field the pattern names must exist).
fn filter_matches(pattern: &serde_json::Value, value: &serde_json::Value) -> bool {
    match pattern {
        serde_json::Value::Object(fields) => fields
            .iter()
            .all(|(name, inner)| value.get(name).is_some_and(|v| filter_matches(inner, v))),
        serde_json::Value::Array(accepted) => accepted.contains(value),
        _ => false,
    }
}

/// The template's event filter passes exactly the stream records the org-cleanup handler acts
/// on (so Lambda neither drops a job's change nor invokes it for every write of the table).
#[test]
fn the_deletion_stream_filter_passes_exactly_the_records_org_cleanup_acts_on() {
    let template = template();
    let mapping = &template["Resources"]["OrgCleanupStreamMapping"]["Properties"];
    let filters = mapping["FilterCriteria"]["Filters"].as_sequence().unwrap();
    assert_eq!(filters.len(), 1);
    let pattern: serde_json::Value =
        serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../events/org-cleanup-stream.json")).unwrap();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(sample.clone()).unwrap();
    let mut passed = 0;
    for (raw, record) in sample["Records"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&event.records)
    {
        let filtered = filter_matches(&pattern, raw);
        assert_eq!(
            filtered,
            org_cleanup::running_deletion(record).is_some(),
            "{raw}"
        );
        passed += usize::from(filtered);
    }
    assert_eq!(passed, 1, "the sample holds one job's change");
    assert_eq!(
        mapping["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures"),
        "failed jobs are reported by record"
    );
}
