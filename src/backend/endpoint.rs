//! Kine-style endpoints of the network databases, as URLs sqlx takes: the database they name
//! (Kine's `kubernetes` when none), Kine's `tcp(host:port)` form of MySQL addresses, and the TLS
//! files as URL parameters.

use super::DatabaseTls;
use crate::error::{Error, Result};

/// The database name used when an endpoint names none (Kine's default).
pub const DEFAULT_DATABASE: &str = "kubernetes";

/// A PostgreSQL or MySQL endpoint, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkEndpoint {
    /// The URL of the database itself.
    pub url: String,
    /// The same server, but `admin` instead of the database (to create the database).
    pub admin_url: String,
    pub database: String,
}

/// The TLS mode to ask for when the endpoint names none: with a CA file, without one, and
/// when verification is skipped.
pub struct TlsModes {
    pub verify: &'static str,
    pub plain: &'static str,
    pub unverified: &'static str,
}

impl NetworkEndpoint {
    /// Resolves `endpoint` (Kine's MySQL form accepted), with `tls` applied and `admin` as the
    /// database to connect to before the endpoint's own exists.
    pub fn parse(
        endpoint: &str,
        admin: &str,
        tls: &DatabaseTls,
        modes: TlsModes,
    ) -> Result<NetworkEndpoint> {
        let url = kine_mysql_url(endpoint);
        let database = database_name(&url).unwrap_or(DEFAULT_DATABASE).to_string();
        if !is_plain_name(&database) {
            return Err(Error::InvalidEndpoint(
                "the database name may hold only letters, digits, '_' and '-'".into(),
            ));
        }
        let url = tls.apply(&url, modes);
        Ok(NetworkEndpoint {
            admin_url: with_database(&url, admin),
            url: with_database(&url, &database),
            database,
        })
    }
}

impl DatabaseTls {
    /// `url` with the TLS files and mode as query parameters, which PostgreSQL and MySQL URLs
    /// both take.
    fn apply(&self, url: &str, modes: TlsModes) -> String {
        let mut params = Vec::new();
        for (name, file) in [
            ("ssl-ca", &self.ca_file),
            ("ssl-cert", &self.cert_file),
            ("ssl-key", &self.key_file),
        ] {
            if let Some(file) = file {
                params.push(format!("{name}={}", escape_query(&file.to_string_lossy())));
            }
        }
        let names_mode = url.contains("sslmode=") || url.contains("ssl-mode=");
        if !names_mode {
            // With a CA, verify everything. Without one, plain TCP, as Kine does: the drivers'
            // default ("prefer") tries TLS first, and its fallback connection was measured at a
            // tenth of the throughput (responses stalled ~40 ms).
            let mode = match (self.skip_verify, self.ca_file.is_some()) {
                (true, _) => modes.unverified,
                (false, true) => modes.verify,
                (false, false) => modes.plain,
            };
            params.push(mode.to_string());
        }
        if params.is_empty() {
            return url.to_string();
        }
        let joiner = if url.contains('?') { '&' } else { '?' };
        format!("{url}{joiner}{}", params.join("&"))
    }
}

/// Percent-encodes what would end a query parameter.
fn escape_query(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '&' | '=' | '#' | '+' | ' ' | '?' => {
                escaped.push_str(&format!("%{:02X}", c as u32))
            }
            c => escaped.push(c),
        }
    }
    escaped
}

/// Kine's (Go driver's) `mysql://user:pass@tcp(host:port)/db` as a URL; other forms unchanged.
fn kine_mysql_url(endpoint: &str) -> String {
    match (endpoint.find("@tcp("), endpoint.rfind(")/")) {
        (Some(open), Some(close)) if close > open => format!(
            "{}@{}{}",
            &endpoint[..open],
            &endpoint[open + 5..close],
            &endpoint[close + 1..]
        ),
        _ => endpoint.to_string(),
    }
}

/// The database a URL names in its path, if any.
fn database_name(url: &str) -> Option<&str> {
    let after_scheme = &url[url.find("://")? + 3..];
    let path = &after_scheme[after_scheme.find('/')? + 1..];
    let name = path.split('?').next().unwrap_or_default();
    (!name.is_empty()).then_some(name)
}

/// `url` with its path set to `/database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{database}{query}", &base[..host_end])
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: TlsModes = super::super::postgres::TLS_MODES;
    const MY: TlsModes = super::super::mysql::TLS_MODES;

    #[test]
    fn kine_endpoints_become_urls_with_a_database() {
        assert_eq!(
            kine_mysql_url("mysql://root:pw@tcp(127.0.0.1:3306)/k8s"),
            "mysql://root:pw@127.0.0.1:3306/k8s"
        );
        assert_eq!(
            kine_mysql_url("mysql://root@127.0.0.1:3306/k8s"),
            "mysql://root@127.0.0.1:3306/k8s"
        );
        assert_eq!(
            database_name("postgres://u:p@h:5432/db?sslmode=disable"),
            Some("db")
        );
        assert_eq!(database_name("postgres://u:p@h:5432/"), None);
        assert_eq!(database_name("postgres://u:p@h:5432"), None);
        let parsed = NetworkEndpoint::parse(
            "mysql://root@tcp(127.0.0.1:3306)/",
            "",
            &DatabaseTls::default(),
            MY,
        )
        .expect("valid endpoint");
        assert_eq!(
            parsed,
            NetworkEndpoint {
                url: "mysql://root@127.0.0.1:3306/kubernetes?ssl-mode=DISABLED".into(),
                admin_url: "mysql://root@127.0.0.1:3306/?ssl-mode=DISABLED".into(),
                database: "kubernetes".into(),
            }
        );
        assert!(
            NetworkEndpoint::parse("postgres://h/a;b", "postgres", &DatabaseTls::default(), PG)
                .is_err()
        );
    }

    #[test]
    fn database_tls_files_become_url_parameters() {
        let tls = DatabaseTls {
            ca_file: Some("/etc/ca.pem".into()),
            cert_file: Some("/etc/my cert.pem".into()),
            key_file: None,
            skip_verify: false,
        };
        assert_eq!(
            tls.apply("postgres://u@h/db", PG),
            "postgres://u@h/db?ssl-ca=/etc/ca.pem&ssl-cert=/etc/my%20cert.pem&sslmode=verify-full"
        );
        assert_eq!(
            tls.apply("mysql://u@h/db?ssl-mode=REQUIRED", MY),
            "mysql://u@h/db?ssl-mode=REQUIRED&ssl-ca=/etc/ca.pem&ssl-cert=/etc/my%20cert.pem"
        );
        assert_eq!(
            DatabaseTls::default().apply("mysql://u@h/db", MY),
            "mysql://u@h/db?ssl-mode=DISABLED"
        );
        assert_eq!(
            DatabaseTls::default().apply("postgres://u@h/db?sslmode=require", PG),
            "postgres://u@h/db?sslmode=require"
        );
        let unverified = DatabaseTls {
            skip_verify: true,
            ..DatabaseTls::default()
        };
        assert_eq!(
            unverified.apply("mysql://u@h/db", MY),
            "mysql://u@h/db?ssl-mode=REQUIRED"
        );
    }
}
