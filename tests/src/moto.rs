//! moto's server (`moto[server]`, pinned in `infra/requirements-test.txt`, installed into the
//! project venv by `make test`) as a local Secrets Manager for tests: started on a free 127.0.0.1
//! port, killed on drop (also when the test panics). Missing moto fails the test, never skips it.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to start (it imports a lot of Python).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running `moto_server`; killed on drop (also when the test panics).
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
    log: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tollgate crate lives in the workspace");
        let binary = repo.join(".venv/bin/moto_server");
        assert!(
            binary.is_file(),
            "{} not found. This test needs moto's server as a local Secrets Manager: run \
             `.venv/bin/pip install -r infra/requirements-test.txt` in the repository root \
             (the venv comes from infra/scripts/venv.sh). It fails rather than skips, so the \
             Secrets Manager path is never silently untested.",
            binary.display()
        );
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("tollgate-moto-{}-{port}.log", std::process::id()));
        let log_file = File::create(&log).expect("create the moto log file");
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {}: {error}", binary.display()));
        // From here on, Drop kills the child even if waiting fails.
        let mut moto = Moto {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        moto.wait_until_answering(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        moto
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until an HTTP request gets an HTTP response.
    fn wait_until_answering(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "moto_server exited ({status}) before answering:\n{}",
                    self.log_text()
                );
            }
            if answers_http(addr) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {addr} within {STARTUP_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}
