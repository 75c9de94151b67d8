//! Cold start: each function binary (and the hello-world baseline) started `--runs` times under
//! the local Runtime API with the environment `template.yaml` gives it. Measured per start: process
//! spawn → first `invocation/next` (init), and spawn → the answer to a first event (an unknown path,
//! which every function answers with a 404 without calling a dependency, so the figure is runtime +
//! init + dispatch, comparable with hello world). Every dependency endpoint is a local listener
//! that counts connections: any connection before the first `invocation/next` fails the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_tests::runtime_api::{
    FunctionProcess, HttpApiResponse, Outcome, RuntimeApi, http_api_event, lambda_environment,
    template_environment,
};

use crate::BenchResult;

#[derive(clap::Args)]
pub struct Args {
    /// Where the binaries are (e.g. target/measure).
    #[arg(long)]
    pub bin_dir: PathBuf,
    /// Starts per binary.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// The baseline binary in --bin-dir.
    #[arg(long, default_value = "hello-world")]
    pub baseline: String,
    /// The baseline of the functions that call Stripe: a hello world making one async-stripe call.
    #[arg(long, default_value = "hello-stripe")]
    pub stripe_baseline: String,
    /// The functions compared with --stripe-baseline (those whose crate depends on async-stripe).
    #[arg(long, value_delimiter = ',')]
    pub stripe_functions: Vec<String>,
    /// Markdown section output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

const FUNCTIONS: [&str; 12] = [
    "user-load",
    "permission-check",
    "organizations",
    "team",
    "checkout",
    "billing-portal",
    "billing",
    "stripe-webhook",
    "usage-tracking",
    "integrations",
    "api-keys",
    "rotate-keys",
];

const INIT_LIMIT: Duration = Duration::from_secs(10);

struct Sample {
    init: Duration,
    first_response: Option<Duration>,
}

/// A listener standing in for every dependency; counts connections and never answers.
async fn counting_endpoint() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    Ok((url, connections))
}

fn environment(binary: &str, endpoint: &str, args: &Args) -> Vec<(String, String)> {
    if binary == args.baseline || binary == args.stripe_baseline {
        return vec![
            ("RUST_LOG".to_owned(), "info".to_owned()),
            ("STRIPE_API_BASE".to_owned(), endpoint.to_owned()),
        ];
    }
    let mut environment = template_environment(binary, &|target| match target {
        "TollgateTable" => Some("tollgate-bench".to_owned()),
        "TollgateSecret" => {
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:tollgate-AbCdEf".to_owned())
        }
        "JwtIssuer" => Some(format!("{endpoint}/")),
        "JwtAudience" => Some("https://api.tollgate.test".to_owned()),
        _ => None,
    });
    environment.extend([
        ("DYNAMODB_ENDPOINT".to_owned(), endpoint.to_owned()),
        ("SECRETS_MANAGER_ENDPOINT".to_owned(), endpoint.to_owned()),
        ("STRIPE_API_BASE".to_owned(), endpoint.to_owned()),
    ]);
    environment
}

async fn start_once(
    binary: &str,
    args: &Args,
    endpoint: &str,
    connections: &AtomicUsize,
) -> Result<Sample, String> {
    let path = args.bin_dir.join(binary);
    let runtime = RuntimeApi::start(binary)
        .await
        .map_err(|e| format!("Runtime API: {e}"))?;
    let mut full = lambda_environment(binary, &runtime);
    full.extend(environment(binary, endpoint, args));
    let before = connections.load(Ordering::SeqCst);
    let process =
        FunctionProcess::spawn(&path, &full).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(first_next) = runtime.wait_for_init(INIT_LIMIT).await else {
        return Err(format!(
            "{binary} did not reach invocation/next within {INIT_LIMIT:?}: {:?}\n{}",
            runtime.init_error(),
            process.output().join("\n")
        ));
    };
    if connections.load(Ordering::SeqCst) != before {
        return Err(format!(
            "{binary} opened a network connection before its first invocation"
        ));
    }
    let init = first_next.duration_since(process.started);
    let first_response = if binary == "rotate-keys" {
        None
    } else {
        let event = http_api_event("$default", "GET", "/api/bench-unknown-path", "", &[], None);
        let outcome = runtime
            .invoke(&event, INIT_LIMIT)
            .await
            .map_err(|e| format!("{binary}: {e}"))?;
        let answered = Instant::now().duration_since(process.started);
        let response = HttpApiResponse::parse(&outcome)?;
        // The baselines answer 200 without a dependency; the functions answer 404 from their route
        // table.
        let expected = if binary == args.baseline || binary == args.stripe_baseline {
            200
        } else {
            404
        };
        if response.status != expected || matches!(outcome, Outcome::Error { .. }) {
            return Err(format!(
                "{binary}: first response {} {}",
                response.status, response.body
            ));
        }
        Some(answered)
    };
    drop(process);
    Ok(Sample {
        init,
        first_response,
    })
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

struct Summary {
    init_median: Duration,
    init_p90: Duration,
    response_median: Option<Duration>,
    response_p90: Option<Duration>,
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut init: Vec<Duration> = samples.iter().map(|s| s.init).collect();
    init.sort();
    let mut response: Vec<Duration> = samples.iter().filter_map(|s| s.first_response).collect();
    response.sort();
    Summary {
        init_median: percentile(&init, 50.0),
        init_p90: percentile(&init, 90.0),
        response_median: (!response.is_empty()).then(|| percentile(&response, 50.0)),
        response_p90: (!response.is_empty()).then(|| percentile(&response, 90.0)),
    }
}

pub async fn run(args: Args) -> BenchResult {
    let (endpoint, connections) = counting_endpoint().await?;
    let mut binaries: Vec<String> = vec![args.baseline.clone(), args.stripe_baseline.clone()];
    binaries.extend(FUNCTIONS.iter().map(|f| (*f).to_owned()));
    for binary in &binaries {
        let path = args.bin_dir.join(binary);
        if !path.is_file() {
            return Err(format!("{} is not built", path.display()).into());
        }
    }
    // Round-robin, so a slow moment of the machine spreads over every binary alike.
    let mut samples: Vec<Vec<Sample>> = binaries.iter().map(|_| Vec::new()).collect();
    for run in 0..args.runs {
        for (index, binary) in binaries.iter().enumerate() {
            let sample = start_once(binary, &args, &endpoint, &connections).await?;
            samples[index].push(sample);
        }
        eprintln!("init: run {}/{} done", run + 1, args.runs);
    }
    let total_connections = connections.load(Ordering::SeqCst);
    if total_connections != 0 {
        return Err(
            format!("{total_connections} connections to dependencies during the runs").into(),
        );
    }
    let summaries: Vec<Summary> = samples.iter().map(|s| summarize(s)).collect();
    let (baseline, stripe_baseline) = (&summaries[0], &summaries[1]);
    let mut markdown = String::new();
    markdown.push_str("## Init (cold start)\n\n");
    markdown.push_str(&format!(
        "Each binary started {} times (round-robin across binaries) under the local Runtime API with \
         the environment `template.yaml` gives it; `{}` is the baseline. *Init* is process spawn → \
         the first `GET /2018-06-01/runtime/invocation/next`; *first response* is spawn → the \
         answer to a first HTTP API event for an unknown path (a 404 from the function's route \
         table; the hello world answers 200), which needs no dependency. Every dependency \
         endpoint (DynamoDB, Secrets Manager, the identity provider, Stripe) pointed at a local \
         listener counting connections: **{} connections** were opened before or during these \
         requests. Target: init ≤ 1.5× its baseline: `{}` for the functions that call Stripe \
         ({}), `{}` for the others.\n\n",
        args.runs,
        args.baseline,
        total_connections,
        args.stripe_baseline,
        args.stripe_functions.join(", "),
        args.baseline
    ));
    markdown.push_str("| Binary | Init median ms | Init p90 ms | Baseline | × baseline (median) | First response median ms | First response p90 ms | Target ≤ 1.5× |\n");
    markdown.push_str("|---|---:|---:|---|---:|---:|---:|---|\n");
    let mut over = Vec::new();
    for (binary, summary) in binaries.iter().zip(&summaries) {
        let (base_name, base) = if args.stripe_functions.contains(binary) {
            (&args.stripe_baseline, stripe_baseline)
        } else {
            (&args.baseline, baseline)
        };
        let ratio = summary.init_median.as_secs_f64() / base.init_median.as_secs_f64().max(1e-9);
        let verdict = if binary == &args.baseline || binary == &args.stripe_baseline {
            "baseline".to_owned()
        } else if ratio <= 1.5 {
            "met".to_owned()
        } else {
            over.push(binary.clone());
            "**not met**".to_owned()
        };
        markdown.push_str(&format!(
            "| {binary} | {} | {} | {base_name} | {ratio:.2} | {} | {} | {verdict} |\n",
            ms(summary.init_median),
            ms(summary.init_p90),
            summary
                .response_median
                .map(ms)
                .unwrap_or_else(|| "—".into()),
            summary.response_p90.map(ms).unwrap_or_else(|| "—".into()),
        ));
    }
    markdown.push('\n');
    if over.is_empty() {
        markdown.push_str("Every function meets the init target.\n\n");
    } else {
        markdown.push_str(&format!("Over target: {}.\n\n", over.join(", ")));
    }
    let raw = json!(binaries
        .iter()
        .zip(&samples)
        .map(|(b, s)| json!({"binary": b, "init_us": s.iter().map(|x| x.init.as_micros() as u64).collect::<Vec<_>>()}))
        .collect::<Vec<_>>());
    eprintln!("init raw samples: {raw}");
    Ok(markdown)
}
