//! `tollgate-dev`: the local stack's command line (`serve`, `create-table`, `token`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::config::Config;
use tollgate::pipeline::AppState;
use tollgate::store::{Store, schema};
use tollgate_dev::issuer::{LOCAL_ISSUER, LocalIssuer};

#[derive(Parser)]
#[command(
    name = "tollgate-dev",
    about = "Tollgate's local stack: API gateway, table, tokens"
)]
struct Cli {
    /// Where the local issuer keeps its signing key.
    #[arg(
        long,
        env = "TOLLGATE_DEV_KEY",
        default_value = ".tollgate/dev-issuer-key.p8",
        global = true
    )]
    key_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route of the route table on TOLLGATE_ADDR (default 127.0.0.1:3000).
    Serve {
        #[arg(long, env = "TOLLGATE_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
    },
    /// Create the DynamoDB table (TABLE_NAME at DYNAMODB_ENDPOINT) if it does not exist.
    CreateTable,
    /// Put an organization on a plan in the local table, as a Stripe subscription would
    /// (for trying seats and entitlements locally without Stripe).
    SetPlan {
        #[arg(long)]
        organization: String,
        /// STARTER, PROFESSIONAL or BUSINESS; omit to remove the plan.
        #[arg(long)]
        plan: Option<String>,
        /// Plan status (active, trialing, past_due, canceled, ...).
        #[arg(long, default_value = "active")]
        status: String,
    },
    /// Re-encrypt every integration credential under ENCRYPTION_ACTIVE_KEY (resumable, idempotent).
    RotateKeys,
    /// Print a token from the local issuer (used when JWT_ISSUER is unset).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 12 * 3600)]
        ttl: i64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tollgate::telemetry::init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tollgate-dev: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut config = Config::from_env().map_err(|e| e.to_string())?;
    match cli.command {
        Command::CreateTable => {
            let store = Store::connect(&config).await;
            let created = schema::create_table(store.client(), store.table_name())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "table {} {}",
                store.table_name(),
                if created { "created" } else { "already exists" }
            );
            Ok(())
        }
        Command::SetPlan {
            organization,
            plan,
            status,
        } => {
            let plan = plan
                .map(|p| p.parse::<tollgate::pricing::Plan>())
                .transpose()
                .map_err(|e| e.to_string())?;
            let status: tollgate::store::PlanStatus =
                serde_json::from_value(serde_json::Value::String(status.clone()))
                    .map_err(|_| format!("unknown plan status {status:?}"))?;
            let store = Store::connect(&config).await;
            let tenant = store
                .existing_tenant(&organization)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "no organization {organization} in table {}",
                        store.table_name()
                    )
                })?;
            store
                .set_organization_plan(&tenant, plan, status)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "organization {organization} is now on {} ({status:?})",
                plan.map(|p| p.as_str()).unwrap_or("no plan")
            );
            Ok(())
        }
        Command::RotateKeys => {
            let store = Store::connect(&config).await;
            let state = AppState::new(config, store).map_err(|e| e.to_string())?;
            let secrets = state.secrets().await.map_err(|e| e.message)?;
            let ring = secrets
                .keyring
                .as_ref()
                .ok_or("ENCRYPTION_KEYS and ENCRYPTION_ACTIVE_KEY must be set")?;
            let report = tollgate::maintenance::rotate_keys(&state.store, ring)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} credentials could not be re-encrypted",
                    report.failed.len()
                ))
            }
        }
        Command::Token {
            sub,
            email,
            name,
            ttl,
        } => {
            let issuer = LocalIssuer::load_or_create(&cli.key_file).map_err(|e| e.to_string())?;
            let token = issuer
                .mint(&sub, email.as_deref(), name.as_deref(), ttl)
                .map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(())
        }
        Command::Serve { addr } => {
            let local_jwks = if config.jwt.is_none() {
                let issuer =
                    LocalIssuer::load_or_create(&cli.key_file).map_err(|e| e.to_string())?;
                let jwks = issuer.jwks();
                let mut jwt = tollgate::auth::jwt::JwtConfig::new(LOCAL_ISSUER);
                jwt.inline_jwks = Some(jwks.to_string());
                jwt.jwks_url = Some(format!("http://{addr}/.well-known/jwks.json"));
                config.jwt = Some(jwt);
                Some(jwks)
            } else {
                None
            };
            let store = Store::connect(&config).await;
            let state = AppState::new(config, store).map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let issuer_note = if local_jwks.is_some() {
                format!("local issuer \"{LOCAL_ISSUER}\" (tokens: tollgate-dev token --sub ...)")
            } else {
                "the issuer in JWT_ISSUER".to_owned()
            };
            println!("Tollgate dev gateway listening on http://{addr}, trusting {issuer_note}");
            let router = tollgate_dev::server::router(state, local_jwks);
            tollgate_dev::server::serve(listener, router)
                .await
                .map_err(|e| e.to_string())
        }
    }
}
