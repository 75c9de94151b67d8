//! `sam local` as docs/sam-local.md runs it, checked without Docker: SAM's `--env-vars` only
//! overrides variables a function declares, so every variable the code reads must be declared in
//! `template.yaml` for every function, with an empty default that the code reads as unset; every
//! key of `env.example.json` must be declared for each function it names; `samconfig.toml`'s local
//! sections must point at files that exist; the example events must be HTTP API (payload 2.0)
//! events of a route in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use tollgate::config::Config;
use tollgate::routes::{RouteMatch, match_route, routes};
use tollgate::secrets::SecretValues;
use tollgate_tests::runtime_api::template_environment;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn template() -> Yaml {
    serde_norway::from_str(&read("template.yaml")).expect("template.yaml parses")
}

fn env_example() -> serde_json::Map<String, Json> {
    match serde_json::from_str(&read("env.example.json")).expect("env.example.json parses") {
        Json::Object(map) => map,
        other => panic!("env.example.json is not an object: {other}"),
    }
}

struct TemplateFunction {
    logical_id: String,
    binary: String,
    /// Globals' variables and the function's own: what SAM lets `--env-vars` override.
    declared: BTreeSet<String>,
}

fn variable_names(variables: &Yaml) -> BTreeSet<String> {
    variables
        .as_mapping()
        .map(|map| {
            map.keys()
                .map(|name| name.as_str().expect("variable name").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn functions(template: &Yaml) -> Vec<TemplateFunction> {
    let globals = variable_names(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let functions: Vec<_> = template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, resource)| TemplateFunction {
            logical_id: id.as_str().expect("logical id").to_owned(),
            binary: resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("Binary")
                .to_owned(),
            declared: globals
                .iter()
                .cloned()
                .chain(variable_names(
                    &resource["Properties"]["Environment"]["Variables"],
                ))
                .collect(),
        })
        .collect();
    assert!(
        functions.len() >= 10,
        "functions found: {}",
        functions.len()
    );
    functions
}

/// Every variable name the functions' configuration asks for: `Config::from_lookup` (with an
/// issuer, so the JWT settings are read too) and the local secret values, recorded as they are
/// looked up.
fn names_the_configuration_reads() -> BTreeSet<String> {
    let asked = Mutex::new(BTreeSet::new());
    let lookup = |name: &str| {
        asked.lock().expect("lock").insert(name.to_owned());
        match name {
            "JWT_ISSUER" => Some("https://issuer.example.com/".to_owned()),
            "JWT_AUDIENCE" => Some("https://api.example.com".to_owned()),
            _ => None,
        }
    };
    Config::from_lookup(lookup).expect("configuration with only an issuer and an audience");
    SecretValues::from_lookup(lookup).expect("no secret values");
    asked.into_inner().expect("lock")
}

#[test]
fn every_variable_the_configuration_reads_is_declared_for_every_function() {
    let read = names_the_configuration_reads();
    for expected in [
        "DYNAMODB_ENDPOINT",
        "JWT_JWKS_URL",
        "STRIPE_API_BASE",
        "SERVICE_KEY_HASHES",
        "RATE_LIMIT_USER_PER_HOUR",
        "STRIPE_PRICE_BUSINESS_YEARLY",
    ] {
        assert!(read.contains(expected), "{expected} not recorded: {read:?}");
    }
    let template = template();
    for function in functions(&template) {
        // The logging filter reads RUST_LOG outside Config.
        let missing: Vec<_> = read
            .iter()
            .map(String::as_str)
            .chain(["RUST_LOG"])
            .filter(|name| !function.declared.contains(*name))
            .collect();
        assert!(
            missing.is_empty(),
            "{} does not declare {missing:?}: `sam local --env-vars` could not set them",
            function.logical_id
        );
    }
}

/// `var("NAME")` / `var_os("NAME")` reads (`std::env`, or a lookup closure) in the functions' code (shared/src and
/// functions/*/src), outside `Config`.
fn direct_environment_reads() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                for call in ["var(\"", "var_os(\""] {
                    for (at, _) in text.match_indices(call) {
                        let rest = &text[at + call.len()..];
                        if let Some(end) = rest.find('"') {
                            found.insert(rest[..end].to_owned());
                        }
                    }
                }
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(&root().join("shared/src"), &mut found);
    for entry in std::fs::read_dir(root().join("functions")).expect("functions/") {
        walk(&entry.expect("entry").path().join("src"), &mut found);
    }
    found
}

#[test]
fn variables_read_outside_the_configuration_are_declared_or_set_by_lambda() {
    let reads = direct_environment_reads();
    // The scan sees the reads it must see (or it would check nothing).
    for known in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_ACCESS_KEY_ID"] {
        assert!(reads.contains(known), "{known} not found in {reads:?}");
    }
    let template = template();
    let functions = functions(&template);
    for name in &reads {
        // Lambda's reserved variables, set by Lambda (and by sam local) in every function.
        let set_by_lambda = name.starts_with("AWS_") || name.starts_with("LAMBDA_");
        // Picks JSON logs outside Lambda; under Lambda logs are JSON already.
        let local_only = name == "TOLLGATE_LOG_JSON";
        if set_by_lambda || local_only {
            continue;
        }
        for function in &functions {
            assert!(
                function.declared.contains(name),
                "{} reads {name}, which {} does not declare",
                function.binary,
                function.logical_id
            );
        }
    }
}

/// A function's environment as `sam local` gives it with `SECRETS_ARN` set to "" and nothing
/// else overridden: the template's values, parameters at their defaults.
fn local_environment(binary: &str) -> Vec<(String, String)> {
    template_environment(binary, &|target| match target {
        "TollgateTable" => Some("tollgate".to_owned()),
        "TollgateSecret" => Some(String::new()),
        "JwtIssuer" => Some("tollgate-dev".to_owned()),
        "JwtAudience" => Some("tollgate-dev-api".to_owned()),
        "WebhookDeliveryQueue" => {
            Some("http://127.0.0.1:9324/000000000000/tollgate-webhook-deliveries".to_owned())
        }
        _ => None,
    })
}

#[test]
fn the_templates_empty_values_read_as_unset() {
    let template = template();
    for function in functions(&template) {
        let environment = local_environment(&function.binary);
        let empty: Vec<&str> = environment
            .iter()
            .filter(|(_, value)| value.is_empty())
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            empty.contains(&"DYNAMODB_ENDPOINT") && empty.contains(&"SECRETS_ARN"),
            "{}: empty values {empty:?}",
            function.logical_id
        );
        let with_empty: BTreeMap<String, String> = environment.iter().cloned().collect();
        let without_empty: BTreeMap<String, String> = environment
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        let config = Config::from_lookup(|name| with_empty.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", function.logical_id));
        let unset = Config::from_lookup(|name| without_empty.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", function.logical_id));
        assert_eq!(
            format!("{config:?}"),
            format!("{unset:?}"),
            "{}: an empty variable is read differently from an unset one",
            function.logical_id
        );
        assert_eq!(config.secrets_arn, None);
        assert_eq!(config.dynamodb_endpoint, None);
        assert_eq!(config.secrets_manager_endpoint, None);
        assert_eq!(
            config.stripe_api_base,
            tollgate::config::DEFAULT_STRIPE_API_BASE
        );
        assert_eq!(
            config.rate_limits,
            tollgate::ratelimit::RateLimits::default()
        );
        assert_eq!(config.secrets_ttl, tollgate::secrets::DEFAULT_TTL);
        let jwt = config.jwt.expect("issuer set");
        assert_eq!(
            jwt.jwks_url,
            tollgate::auth::jwt::JwtConfig::new("tollgate-dev").jwks_url
        );
        assert!(jwt.inline_jwks.is_none());
        let secrets = SecretValues::from_lookup(|name| with_empty.get(name).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", function.logical_id));
        assert!(secrets.stripe_secret_key.is_none());
        assert!(secrets.stripe_webhook_secrets.is_empty());
        assert!(secrets.service_key_hashes.is_empty());
        assert!(secrets.encryption_keys.is_none());
        if function.binary == "notifier" {
            let settings =
                notifier::NotifierSettings::from_lookup(|name| with_empty.get(name).cloned())
                    .unwrap_or_else(|e| panic!("{}: {e}", function.logical_id));
            let unset =
                notifier::NotifierSettings::from_lookup(|name| without_empty.get(name).cloned())
                    .unwrap_or_else(|e| panic!("{}: {e}", function.logical_id));
            assert_eq!(settings, unset);
            assert_eq!(settings.sqs_endpoint, None);
        }
    }
}

#[test]
fn env_example_sets_only_declared_variables_of_functions_that_exist() {
    let template = template();
    let functions = functions(&template);
    let example = env_example();
    assert!(
        example.contains_key("Parameters"),
        "env.example.json sets variables for every function under \"Parameters\""
    );
    for (scope, variables) in &example {
        let variables = variables
            .as_object()
            .unwrap_or_else(|| panic!("env.example.json: {scope} is not an object"));
        let targets: Vec<&TemplateFunction> = if scope == "Parameters" {
            functions.iter().collect()
        } else {
            let function = functions
                .iter()
                .find(|function| &function.logical_id == scope)
                .unwrap_or_else(|| {
                    panic!("env.example.json: no function {scope} in template.yaml")
                });
            vec![function]
        };
        for (name, value) in variables {
            assert!(
                value.is_string(),
                "env.example.json: {scope}.{name} is not a string"
            );
            for function in &targets {
                assert!(
                    function.declared.contains(name),
                    "env.example.json sets {name} for {}, which does not declare it: sam local would drop it",
                    function.logical_id
                );
            }
        }
    }
    let parameters = &example["Parameters"];
    // Secrets from the environment, not from a Secrets Manager secret SAM cannot resolve.
    assert_eq!(parameters["SECRETS_ARN"], "");
    // Every function reads its configuration the same way, so every one must start with it.
    let environment: BTreeMap<String, String> = parameters
        .as_object()
        .expect("Parameters")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let config = Config::from_lookup(|name| environment.get(name).cloned())
        .expect("env.example.json is a valid configuration");
    assert!(config.dynamodb_endpoint.is_some() && config.jwt.is_some());
    SecretValues::from_lookup(|name| environment.get(name).cloned())
        .expect("env.example.json's secret values are valid");
}

#[test]
fn samconfig_local_sections_point_at_files_that_exist() {
    let text = read("samconfig.toml");
    let samconfig: toml_edit::DocumentMut = text.parse().expect("samconfig.toml parses");
    let mut local_sections = 0;
    for (environment, commands) in samconfig.iter() {
        let Some(commands) = commands.as_table_like() else {
            continue;
        };
        for (command, section) in commands.iter() {
            if !command.starts_with("local_") {
                continue;
            }
            local_sections += 1;
            let parameters = section
                .get("parameters")
                .and_then(|p| p.as_table_like())
                .unwrap_or_else(|| panic!("[{environment}.{command}] has no parameters table"));
            for key in ["env_vars", "event", "template_file", "container_env_vars"] {
                if let Some(file) = parameters.get(key) {
                    let file = file
                        .as_str()
                        .unwrap_or_else(|| panic!("{environment}.{command}.{key} is not a string"));
                    assert!(
                        root().join(file).is_file(),
                        "[{environment}.{command}.parameters] {key} = {file:?}: no such file"
                    );
                }
            }
            let hosts: Vec<&str> = parameters
                .get("add_host")
                .and_then(|hosts| hosts.as_array())
                .map(|hosts| hosts.iter().filter_map(|host| host.as_str()).collect())
                .unwrap_or_default();
            assert!(
                hosts.contains(&"host.docker.internal:host-gateway"),
                "[{environment}.{command}.parameters]: env.example.json's host.docker.internal \
                 needs add_host host.docker.internal:host-gateway on Linux (got {hosts:?})"
            );
        }
    }
    assert!(
        local_sections >= 2,
        "local_start_api and local_invoke sections"
    );
    let start_api = &samconfig["default"]["local_start_api"]["parameters"];
    assert_eq!(start_api["env_vars"].as_str(), Some("env.example.json"));
    let port = start_api["port"].as_integer().expect("a port");
    assert_ne!(port, 3000, "the dev gateway listens on 3000");
    assert_eq!(
        samconfig["default"]["local_invoke"]["parameters"]["env_vars"].as_str(),
        Some("env.example.json")
    );
    // The containers reach the host by the name samconfig maps.
    for (name, value) in env_example()["Parameters"].as_object().expect("Parameters") {
        let value = value.as_str().unwrap_or_default();
        if let Some(rest) = value.strip_prefix("http://") {
            let host = rest.split([':', '/']).next().unwrap_or_default();
            assert_eq!(
                host, "host.docker.internal",
                "{name} = {value}: a container's 127.0.0.1 is the container itself"
            );
        }
    }
}

#[test]
fn example_events_are_http_api_events_of_routes_in_the_table() {
    let template = template();
    let functions = functions(&template);
    let guide = read("docs/sam-local.md");
    let mut events = 0;
    for entry in std::fs::read_dir(root().join("events")).expect("events/") {
        let path = entry.expect("entry").path();
        let name = format!(
            "events/{}",
            path.file_name().expect("file name").to_string_lossy()
        );
        let text = std::fs::read_to_string(&path).expect("event file");
        let event: Json = serde_json::from_str(&text).expect("event JSON");
        if event.get("Records").is_some() {
            // A stream or queue event of a function without routes (org-cleanup's, the
            // notifier's; their shapes are checked in those crates' tests): the guide shows how
            // to invoke it.
            let function = if name.starts_with("events/org-cleanup-") {
                "OrgCleanupFunction"
            } else if name.starts_with("events/notifier-") {
                "NotifierFunction"
            } else {
                panic!("{name}: a Records event of no known function")
            };
            assert!(
                guide.contains(&format!("sam local invoke {function} --event {name}")),
                "docs/sam-local.md shows how to invoke {name}"
            );
            assert!(
                template["Resources"][function].is_mapping(),
                "{name}: its function is in the template"
            );
            continue;
        }
        assert_eq!(event["version"], "2.0", "{name}: payload format 2.0");
        let route_key = event["routeKey"].as_str().expect("routeKey");
        assert_eq!(event["requestContext"]["routeKey"], route_key, "{name}");
        assert_eq!(
            event["requestContext"]["http"]["path"], event["rawPath"],
            "{name}"
        );
        // Read as the functions read their events.
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not an HTTP API event: {e}"));
        let route = match match_route(routes(), request.method(), request.uri().path()) {
            RouteMatch::Found(route, _) => route,
            other => panic!("{name}: {} {}: {other:?}", request.method(), request.uri()),
        };
        assert_eq!(
            route_key,
            format!("{} {}", route.method, route.path),
            "{name}"
        );
        let function = functions
            .iter()
            .find(|function| function.binary == route.function.name())
            .expect("the route's function is in the template");
        let invoke = format!("sam local invoke {}", function.logical_id);
        assert!(
            guide.contains(&invoke) && guide.contains(&name),
            "docs/sam-local.md shows `{invoke}` with {name}"
        );
        events += 1;
    }
    assert!(events > 0, "events/ has an example event");
}
