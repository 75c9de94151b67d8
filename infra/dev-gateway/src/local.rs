//! Guards and files of the local stack that are not the issuer's or Stripe's: the check that the
//! local issuer only runs against a local table, and the local service key.

use std::net::IpAddr;
use std::path::Path;

use tollgate::auth::service_key;

/// Whether `endpoint` (a URL such as `DYNAMODB_ENDPOINT`) names this machine's loopback:
/// `localhost`, `127.0.0.0/8`, `::1` or an IPv4-mapped loopback address. Any other name may
/// resolve anywhere, so it is not loopback.
pub fn is_loopback_endpoint(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint.trim()) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The local issuer signs whatever token anyone asks `tollgate-dev token` for, so the gateway
/// only trusts it over a table on this machine: `DYNAMODB_ENDPOINT` must be a loopback address
/// (unset means DynamoDB in AWS). The error says what to change.
pub fn check_local_issuer(dynamodb_endpoint: Option<&str>) -> Result<(), String> {
    match dynamodb_endpoint {
        Some(endpoint) if is_loopback_endpoint(endpoint) => Ok(()),
        Some(endpoint) => Err(format!(
            "refusing the local issuer: DYNAMODB_ENDPOINT ({endpoint}) is not a loopback address, and \
             anyone can mint local tokens; point DYNAMODB_ENDPOINT at DynamoDB Local on 127.0.0.1 \
             (or localhost), or set JWT_ISSUER to a real issuer"
        )),
        None => Err(
            "refusing the local issuer: DYNAMODB_ENDPOINT is unset, so the table would be DynamoDB in \
             AWS, and anyone can mint local tokens; point DYNAMODB_ENDPOINT at DynamoDB Local on \
             127.0.0.1, or set JWT_ISSUER to a real issuer"
                .to_owned(),
        ),
    }
}

/// The service key kept at `path`, made on first use (file mode 0600): `make dev`'s local key.
/// A file that holds no well-formed key is an error that says to delete it.
pub fn load_or_create_service_key(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = text.trim();
            if service_key::is_well_formed(key) {
                Ok(key.to_owned())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} does not hold a service key (tgsk_ and 64 hex characters); delete it to make a new one",
                        path.display()
                    ),
                ))
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = service_key::generate().map_err(std::io::Error::other)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::issuer::write_private(path, key.as_bytes())?;
            Ok(key)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        for endpoint in [
            "http://127.0.0.1:8000",
            "http://127.1.2.3:8000/",
            "http://localhost:8000",
            "http://LOCALHOST:8000",
            "http://[::1]:8000",
            "http://[::ffff:127.0.0.1]:8000",
            " http://127.0.0.1:8000 ",
        ] {
            assert!(is_loopback_endpoint(endpoint), "{endpoint}");
            assert_eq!(check_local_issuer(Some(endpoint)), Ok(()));
        }
    }

    #[test]
    fn other_endpoints_are_not_loopback() {
        for endpoint in [
            "http://0.0.0.0:8000",
            "http://192.168.1.10:8000",
            "http://host.docker.internal:8000",
            "http://localhost.example.com:8000",
            "http://127.0.0.1.nip.io:8000",
            "https://dynamodb.eu-west-1.amazonaws.com",
            "http://[::]:8000",
            "http://[2001:db8::1]:8000",
            "127.0.0.1:8000",
            "not a url",
            "",
        ] {
            assert!(!is_loopback_endpoint(endpoint), "{endpoint}");
            let error = check_local_issuer(Some(endpoint)).unwrap_err();
            assert!(error.contains("DYNAMODB_ENDPOINT"), "{error}");
            assert!(error.contains("loopback"), "{error}");
        }
        let unset = check_local_issuer(None).unwrap_err();
        assert!(unset.contains("DYNAMODB_ENDPOINT is unset"), "{unset}");
    }

    #[test]
    fn the_local_service_key_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("tollgate-dev-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("dev-service-key");
        let key = load_or_create_service_key(&path).unwrap();
        assert!(service_key::is_well_formed(&key), "{key}");
        assert_eq!(load_or_create_service_key(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "tgsk_dev_local_only").unwrap();
        let error = load_or_create_service_key(&path).unwrap_err();
        assert!(error.to_string().contains("delete it"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
