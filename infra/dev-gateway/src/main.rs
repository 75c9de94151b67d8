//! `tollgate-dev`: the local stack's command line (`serve`, `create-table`, `token`,
//! `service-key`, `stripe`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::config::Config;
use tollgate::pipeline::AppState;
use tollgate::store::{Store, schema};
use tollgate_dev::issuer::{LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer};
use tollgate_dev::stripe_pay::{self, PayTarget};
use tollgate_dev::stripe_standin::{self, StripeStandIn};

#[derive(Parser)]
#[command(
    name = "tollgate-dev",
    about = "Tollgate's local stack: API gateway, table, tokens, Stripe stand-in"
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
    /// Where the local Stripe webhook signing secret is kept: the gateway checks it when it runs
    /// with the Stripe stand-in, and `stripe pay` signs with it.
    #[arg(
        long,
        env = "TOLLGATE_DEV_WEBHOOK_SECRET_FILE",
        default_value = ".tollgate/dev-stripe-webhook-secret",
        global = true
    )]
    webhook_secret_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route of the route table on TOLLGATE_ADDR (default 127.0.0.1:3000).
    Serve {
        #[arg(long, env = "TOLLGATE_ADDR", default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Also run the local Stripe stand-in on this address (port 0: a free one) and bill
        /// through it: no Stripe account needed. Refused when STRIPE_SECRET_KEY is set.
        #[arg(long, env = "TOLLGATE_STRIPE_STANDIN", value_name = "ADDR")]
        stripe_standin: Option<SocketAddr>,
    },
    /// The local Stripe stand-in: run it on its own, or pay a checkout through it.
    Stripe {
        #[command(subcommand)]
        command: StripeCommand,
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
    /// Print a new service key (`tgsk_` and 256 random bits from the system's CSPRNG) as
    /// `SERVICE_KEY=...` and its SHA-256 as `SERVICE_KEY_HASHES=...`: the key goes to the calling
    /// service, the hash to the deployment.
    ServiceKey {
        /// Keep the key in this file instead: made (mode 0600) if missing, else read and printed
        /// again (`make dev`'s local key is in .tollgate/dev-service-key).
        #[arg(long)]
        file: Option<PathBuf>,
    },
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

#[derive(Subcommand)]
enum StripeCommand {
    /// Run the stand-in on its own, selling the STRIPE_PRICE_* prices (for a gateway started
    /// elsewhere with STRIPE_API_BASE pointing at it).
    Serve {
        #[arg(long, default_value = stripe_standin::DEFAULT_ADDR)]
        addr: SocketAddr,
    },
    /// Complete a checkout as a paying customer would: pay the session at the stand-in, then send
    /// the gateway the signed events Stripe sends (checkout.session.completed,
    /// customer.subscription.created, invoice.paid).
    Pay {
        /// The checkout's `sessionId` (cs_...), from POST /api/billing/checkout.
        session_id: String,
        /// The gateway's base URL.
        #[arg(long, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:3000")]
        gateway: String,
        /// The stand-in's base URL.
        #[arg(long, env = "STRIPE_API_BASE", default_value = stripe_standin::DEFAULT_URL)]
        stripe_api_base: String,
        /// The gateway's webhook signing secret; default: the local one `serve --stripe-standin`
        /// made (`make dev` runs it so). Not read from STRIPE_WEBHOOK_SECRET: a secret left in the
        /// shell from a Stripe CLI session is not the one the stand-in gateway checks.
        #[arg(long)]
        webhook_secret: Option<String>,
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
            let report = rotate_keys::rotate_keys(&state.store, ring)
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
        Command::ServiceKey { file } => {
            let key = match file {
                Some(path) => {
                    tollgate_dev::local::load_or_create_service_key(&path).map_err(|e| {
                        format!(
                            "cannot read or write the service key at {}: {e}",
                            path.display()
                        )
                    })?
                }
                None => tollgate::auth::service_key::generate().map_err(|e| e.to_string())?,
            };
            println!("SERVICE_KEY={key}");
            println!(
                "SERVICE_KEY_HASHES={}",
                tollgate::auth::service_key::ServiceKeys::hash_hex(&key)
            );
            Ok(())
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
        Command::Serve {
            addr,
            stripe_standin,
        } => {
            let local_jwks = if config.jwt.is_none() {
                tollgate_dev::local::check_local_issuer(config.dynamodb_endpoint.as_deref())?;
                let issuer =
                    LocalIssuer::load_or_create(&cli.key_file).map_err(|e| e.to_string())?;
                let jwks = issuer.jwks();
                let mut jwt = tollgate::auth::jwt::JwtConfig::new(LOCAL_ISSUER);
                jwt.audience = vec![LOCAL_AUDIENCE.to_owned()];
                jwt.inline_jwks = Some(jwks.to_string());
                jwt.jwks_url = Some(format!("http://{addr}/.well-known/jwks.json"));
                config.jwt = Some(jwt);
                Some(jwks)
            } else {
                None
            };
            // Receivers on this machine (`http://127.0.0.1:...`) may be webhook endpoints here,
            // unless WEBHOOK_ALLOW_LOOPBACK says otherwise.
            if std::env::var_os("WEBHOOK_ALLOW_LOOPBACK").is_none() {
                config.webhook_allow_loopback = true;
            }
            // Kept alive while the gateway serves; dropping it stops the stand-in.
            let _standin = match stripe_standin {
                Some(standin_addr) => {
                    Some(start_standin(&mut config, standin_addr, &cli.webhook_secret_file).await?)
                }
                None => None,
            };
            let store = Store::connect(&config).await;
            // Deletion jobs run from the table's stream, as the org-cleanup Lambda does in AWS.
            let reader = tollgate_dev::stream::StreamReader::new(
                config.dynamodb_endpoint.as_deref(),
                &config.table_name,
            )
            .await;
            let _stream_workers = AbortOnDrop(tokio::spawn(tollgate_dev::stream::run_workers(
                store.clone(),
                reader,
            )));
            let stream_endpoint = config.dynamodb_endpoint.clone();
            let table = config.table_name.clone();
            let state = AppState::new(config, store).map_err(|e| e.to_string())?;
            // Audit events to webhook endpoints, from the stream through moto's SQS, as the
            // notifier Lambda delivers them in AWS.
            let _notifier = match tollgate_dev::notify::local_notifier(state.clone()).await? {
                Some(notifier) => {
                    let reader =
                        tollgate_dev::stream::StreamReader::new(stream_endpoint.as_deref(), &table)
                            .await
                            .from_latest();
                    Some(AbortOnDrop(tokio::spawn(tollgate_dev::notify::run(
                        notifier, reader,
                    ))))
                }
                None => None,
            };
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
        Command::Stripe {
            command: StripeCommand::Serve { addr },
        } => {
            if !addr.ip().is_loopback() {
                // The stand-in takes any key: whoever reaches it can create and pay checkout sessions.
                eprintln!(
                    "tollgate-dev: warning: the Stripe stand-in listens on {addr}, beyond this machine's \
             loopback; anyone who reaches it can create and pay checkout sessions (events still \
             need the local webhook secret)"
                );
            }
            let standin = StripeStandIn::start_on(addr, &config.prices)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            println!("Stripe stand-in listening on {}", standin.base_url);
            println!(
                "  STRIPE_API_BASE={} STRIPE_SECRET_KEY={}",
                standin.base_url,
                stripe_standin::SECRET_KEY
            );
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
        }
        Command::Stripe {
            command:
                StripeCommand::Pay {
                    session_id,
                    gateway,
                    stripe_api_base,
                    webhook_secret,
                },
        } => {
            let webhook_secret = match webhook_secret.as_deref().and_then(stripe_pay::first_secret)
            {
                Some(secret) => secret.to_owned(),
                None => stripe_pay::read_webhook_secret(&cli.webhook_secret_file)
                    .map_err(|e| e.to_string())?,
            };
            let target = PayTarget {
                gateway_url: gateway,
                stripe_api_base,
                stripe_secret_key: stripe_standin::SECRET_KEY.to_owned(),
                webhook_secret,
            };
            let payment = stripe_pay::pay(&target, &session_id)
                .await
                .map_err(|e| e.to_string())?;
            print_payment(&target, &payment);
            if payment.deliveries.iter().all(|d| d.accepted()) {
                Ok(())
            } else {
                Err("the gateway refused an event (see above)".to_owned())
            }
        }
    }
}

/// Starts the Stripe stand-in on `addr` selling the configured prices, and points `config`'s
/// billing at it: its URL, the stand-in's key, and the local webhook secret kept in `secret_file`.
async fn start_standin(
    config: &mut Config,
    addr: SocketAddr,
    secret_file: &std::path::Path,
) -> Result<StripeStandIn, String> {
    if config.stripe_secret_key.is_some() {
        return Err(
            "STRIPE_SECRET_KEY is set: unset it to bill through the Stripe stand-in, or run without \
             --stripe-standin (TOLLGATE_STRIPE_STANDIN) to use Stripe test mode"
                .to_owned(),
        );
    }
    if !addr.ip().is_loopback() {
        // The stand-in takes any key: whoever reaches it can create and pay checkout sessions.
        eprintln!(
            "tollgate-dev: warning: the Stripe stand-in listens on {addr}, beyond this machine's \
             loopback; anyone who reaches it can create and pay checkout sessions (events still \
             need the local webhook secret)"
        );
    }
    let standin = StripeStandIn::start_on(addr, &config.prices)
        .await
        .map_err(|e| format!("cannot start the Stripe stand-in on {addr}: {e}"))?;
    config.stripe_api_base = standin.base_url.clone();
    config.stripe_secret_key = Some(stripe_standin::SECRET_KEY.to_owned());
    // Always the local secret file, which `stripe pay` reads too: a STRIPE_WEBHOOK_SECRET left
    // from a Stripe CLI session would make the stand-in's events fail their signature check.
    config.stripe_webhook_secrets = stripe_pay::load_or_create_webhook_secret(secret_file)
        .map_err(|e| {
            format!(
                "cannot read or write the local webhook secret at {}: {e}",
                secret_file.display()
            )
        })?;
    println!(
        "Stripe stand-in (no Stripe account) listening on {}: every plan's monthly and yearly price; \
         pay a checkout with `tollgate-dev stripe pay <sessionId>`",
        standin.base_url
    );
    Ok(standin)
}

/// One line per event sent (type, id and what it says) and the gateway's answer.
fn print_payment(target: &PayTarget, payment: &stripe_pay::Payment) {
    let session = &payment.session;
    let subscription = &payment.subscription;
    let item = &subscription["items"]["data"][0];
    println!(
        "Checkout session {} ({} mode, {}) for organization {}, customer {}",
        text(&session["id"]),
        text(&session["mode"]),
        text(&session["status"]),
        text(&session["client_reference_id"]),
        text(&session["customer"]),
    );
    println!(
        "Paid at the stand-in: subscription {} ({}, price {} at {} {} per {}), invoice {} ({})",
        text(&subscription["id"]),
        text(&subscription["status"]),
        text(&item["price"]["id"]),
        item["price"]["unit_amount"]
            .as_u64()
            .map(tollgate::pricing::format_usd_cents)
            .unwrap_or_default(),
        text(&item["price"]["currency"]).to_uppercase(),
        text(&item["price"]["recurring"]["interval"]),
        text(&payment.invoice["id"]),
        text(&payment.invoice["status"]),
    );
    println!(
        "Sent to {}/api/webhooks/stripe, signed with the gateway's webhook secret:",
        target.gateway_url.trim_end_matches('/')
    );
    for delivery in &payment.deliveries {
        let object = &delivery.event["data"]["object"];
        let about = match delivery.event_type() {
            "checkout.session.completed" => format!(
                "session {}, subscription {}, client_reference_id {}",
                text(&object["id"]),
                text(&object["subscription"]),
                text(&object["client_reference_id"])
            ),
            "customer.subscription.created" => format!(
                "subscription {} {}, price {}, metadata {}",
                text(&object["id"]),
                text(&object["status"]),
                text(&object["items"]["data"][0]["price"]["id"]),
                object["metadata"]
            ),
            _ => format!(
                "invoice {} {}, amount_paid {}",
                text(&object["id"]),
                text(&object["status"]),
                object["amount_paid"]
            ),
        };
        println!(
            "  {} {} ({about})\n    -> {} {}",
            delivery.event_type(),
            delivery.event_id(),
            delivery.status,
            delivery.answer
        );
    }
}

/// A JSON string without quotes; anything else as JSON.
fn text(value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(text) => text.to_owned(),
        None => value.to_string(),
    }
}

/// Stops a background task when the command that started it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
