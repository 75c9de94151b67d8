//! The `tollgate-dev` binary's own guards and tools (built by `cargo build --workspace --bins`,
//! which `make test` runs first): the local issuer only over a local table, and service keys.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::auth::service_key::{ServiceKeys, is_well_formed};

fn tollgate_dev() -> PathBuf {
    let path = tollgate_tests::runtime_api::function_binary_dir().join("tollgate-dev");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A scratch directory for the files `tollgate-dev` keeps (never the repository's .tollgate/).
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-dev-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tollgate-dev` with a clean environment for the settings it reads.
fn command(dir: &std::path::Path) -> Command {
    let mut command = Command::new(tollgate_dev());
    for name in [
        "JWT_ISSUER",
        "SERVICE_KEY_HASHES",
        "STRIPE_SECRET_KEY",
        "SECRETS_ARN",
        "TABLE_NAME",
    ] {
        command.env_remove(name);
    }
    command
        .env("TOLLGATE_DEV_KEY", dir.join("dev-issuer-key.p8"))
        .env(
            "TOLLGATE_DEV_WEBHOOK_SECRET_FILE",
            dir.join("dev-stripe-webhook-secret"),
        )
        .env("TOLLGATE_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    command
}

/// Runs `serve`; it must exit by itself within `limit` (a gateway that starts serving is killed
/// and reported).
fn serve_exits(mut command: Command, limit: Duration) -> (bool, String) {
    let mut child = command
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate-dev");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tollgate-dev serve kept running: it started the local issuer");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_dev_gateway_refuses_its_local_issuer_with_a_non_loopback_dynamodb_endpoint() {
    for endpoint in [
        Some("http://192.0.2.10:8000"),
        Some("http://host.docker.internal:8000"),
        None,
    ] {
        let dir = scratch();
        let mut command = command(&dir);
        match endpoint {
            Some(endpoint) => command.env("DYNAMODB_ENDPOINT", endpoint),
            None => command.env_remove("DYNAMODB_ENDPOINT"),
        };
        let (success, stderr) = serve_exits(command, Duration::from_secs(20));
        assert!(!success, "{endpoint:?}: {stderr}");
        assert!(
            stderr.contains("refusing the local issuer") && stderr.contains("DYNAMODB_ENDPOINT"),
            "{endpoint:?}: {stderr}"
        );
        assert!(
            !dir.join("dev-issuer-key.p8").exists(),
            "{endpoint:?}: no issuer key was made"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn service_key_prints_a_new_key_and_its_hash() {
    let dir = scratch();
    let run = |args: &[&str]| {
        let output = command(&dir)
            .arg("service-key")
            .args(args)
            .output()
            .expect("run tollgate-dev service-key");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {text}"))
                .to_owned()
        };
        (value("SERVICE_KEY"), value("SERVICE_KEY_HASHES"))
    };
    let (key, hash) = run(&[]);
    assert!(is_well_formed(&key), "{key}");
    assert_eq!(hash, ServiceKeys::hash_hex(&key));
    assert!(ServiceKeys::from_hex_list(&hash).unwrap().verify(&key));
    assert_ne!(run(&[]).0, key, "a new key each time");

    // --file: made once (0600), then kept.
    let file = dir.join("dev-service-key");
    let file_arg = file.to_str().unwrap();
    let (kept, kept_hash) = run(&["--file", file_arg]);
    assert!(is_well_formed(&kept));
    assert_eq!(run(&["--file", file_arg]), (kept.clone(), kept_hash));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), kept);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
