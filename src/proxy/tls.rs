//! Building the TLS configurations the running proxy hands out: one for
//! accepting clients of each protocol (one certificate, each protocol's
//! ALPN) and one per database for its servers, from the configuration once
//! at startup and again on RELOAD (new handshakes use the new files,
//! established sessions keep theirs). Maps PgBouncer's sslmodes onto
//! `crate::tls`'s builders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use crate::config::{ClientTls, Config, DatabaseConfig, Protocol, ServerTls, ServerTlsMode};
use crate::tls::{
    ClientTlsContext, Identity, POSTGRES_ALPN, ServerVerification, TlsContexts, TlsError,
    UpstreamTls, acceptor, connector, load_roots, provider, system_roots,
};

/// Why the TLS configurations could not be built; names the file and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("client TLS: {0}")]
    Client(TlsError),
    #[error("database {database:?}: server TLS: {source}")]
    Upstream { database: String, source: TlsError },
    #[error(
        "database {database:?}: host {host:?} is not a DNS name or IP address that \
         server_tls_sslmode = \"verify-full\" can check a certificate against"
    )]
    ServerName { database: String, host: String },
}

/// The TLS configurations `config` asks for; reads every certificate,
/// key and CA file it names.
pub fn build_tls(config: &Config) -> Result<TlsContexts, TlsSetupError> {
    let clients = client_context(&config.general.client_tls).map_err(TlsSetupError::Client)?;
    let mut upstreams = BTreeMap::new();
    let mut shared = SharedUpstreams::default();
    for (name, database) in &config.databases {
        if let Some(tls) = upstream_tls(name, database, &mut shared)? {
            upstreams.insert(name.clone(), tls);
        }
    }
    Ok(TlsContexts::new(clients, upstreams))
}

fn client_context(tls: &ClientTls) -> Result<Option<ClientTlsContext>, TlsError> {
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        // The configuration loader refuses a mode without these files.
        return Ok(None);
    };
    if !tls.sslmode.offers_tls() {
        return Ok(None);
    }
    let identity = Identity::load(cert, key, &provider())?;
    let client_ca = match (&tls.ca_file, tls.sslmode.verifies_client_certificates()) {
        (Some(ca), true) => Some(Arc::new(load_roots(ca)?)),
        _ => None,
    };
    let accept = |alpn: &[&[u8]]| acceptor(&identity, client_ca.clone(), tls.protocols, alpn);
    Ok(Some(ClientTlsContext {
        required: tls.sslmode.requires_tls(),
        sslmode: tls.sslmode.name(),
        postgres: accept(&[POSTGRES_ALPN])?,
        mysql: accept(&[])?,
    }))
}

/// What databases with the same settings share while one build runs: CA
/// files read once, the system store loaded once, and one ClientConfig
/// (with its session cache, so reconnects resume) per set of settings.
#[derive(Default)]
struct SharedUpstreams {
    roots: BTreeMap<Option<PathBuf>, Arc<RootCertStore>>,
    configs: BTreeMap<(&'static str, String), Arc<ClientConfig>>,
}

impl SharedUpstreams {
    fn roots(&mut self, ca_file: &Option<PathBuf>) -> Result<Arc<RootCertStore>, TlsError> {
        if let Some(roots) = self.roots.get(ca_file) {
            return Ok(Arc::clone(roots));
        }
        let roots = Arc::new(match ca_file {
            Some(path) => load_roots(path)?,
            None => system_roots(),
        });
        self.roots.insert(ca_file.clone(), Arc::clone(&roots));
        Ok(roots)
    }

    fn config(
        &mut self,
        protocol: Protocol,
        tls: &ServerTls,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let key = (protocol.name(), format!("{tls:?}"));
        if let Some(config) = self.configs.get(&key) {
            return Ok(Arc::clone(config));
        }
        let verification = match tls.sslmode {
            ServerTlsMode::VerifyCa => ServerVerification::Chain(self.roots(&tls.ca_file)?),
            ServerTlsMode::VerifyFull => {
                ServerVerification::ChainAndName(self.roots(&tls.ca_file)?)
            }
            _ => ServerVerification::EncryptOnly,
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Some(Identity::load(cert, key, &provider())?),
            _ => None,
        };
        let alpn: &[&[u8]] = match protocol {
            Protocol::Postgres => &[POSTGRES_ALPN],
            Protocol::Mysql => &[],
        };
        let config = connector(&verification, identity.as_ref(), tls.protocols, alpn)?;
        self.configs.insert(key, Arc::clone(&config));
        Ok(config)
    }
}

fn upstream_tls(
    name: &str,
    database: &DatabaseConfig,
    shared: &mut SharedUpstreams,
) -> Result<Option<UpstreamTls>, TlsSetupError> {
    let tls = &database.pool.server_tls;
    if !tls.sslmode.asks_for_tls() || database.host.starts_with('/') {
        return Ok(None);
    }
    let server_name = match ServerName::try_from(database.host.clone()) {
        Ok(server_name) => server_name,
        Err(_) if tls.sslmode == ServerTlsMode::VerifyFull => {
            return Err(TlsSetupError::ServerName {
                database: name.to_owned(),
                host: database.host.clone(),
            });
        }
        // Nothing checks the name; it only travels as SNI.
        Err(_) => ServerName::try_from("localhost").expect("a valid DNS name"),
    };
    let config =
        (shared.config(database.protocol, tls)).map_err(|source| TlsSetupError::Upstream {
            database: name.to_owned(),
            source,
        })?;
    Ok(Some(UpstreamTls {
        required: tls.sslmode.requires_tls(),
        sslmode: tls.sslmode.name(),
        mysql_sslmode: tls.sslmode.mysql_name(),
        config,
        server_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::tls::test_pki::TestPki;

    fn quoted(path: &std::path::Path) -> String {
        format!("{:?}", path.display().to_string())
    }

    #[test]
    fn defaults_build_no_client_tls_and_encrypt_only_upstreams() {
        let text = "[databases.app]\n[databases.local]\nhost = \"/run/postgresql\"\n\
                    [databases.plain]\nserver_tls_sslmode = \"disable\"\n\
                    [databases.shop]\nprotocol = \"mysql\"\n[users.a]\npassword = \"x\"\n";
        let contexts = build_tls(&parse_str(text, "c.toml").unwrap()).unwrap();
        assert!(contexts.clients.is_none());
        let app = contexts.upstream("app").unwrap();
        assert_eq!((app.required, app.sslmode), (false, "prefer"));
        assert_eq!(app.config.alpn_protocols, [b"postgresql".to_vec()]);
        assert_eq!(app.server_name, ServerName::try_from("127.0.0.1").unwrap());
        assert!(contexts.upstream("local").is_none());
        assert!(contexts.upstream("plain").is_none());
        let shop = contexts.upstream("shop").unwrap();
        assert!(shop.config.alpn_protocols.is_empty());
    }

    #[test]
    fn client_tls_builds_one_acceptor_per_protocol_and_databases_share_configs() {
        let pki = TestPki::new();
        let server = pki.server("server", &["localhost"]);
        let text = format!(
            "[general]\nclient_tls_sslmode = \"verify-ca\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\nclient_tls_ca_file = {}\n\
             [pool]\nserver_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = {}\n\
             [databases.a]\nhost = \"db.internal\"\n[databases.b]\nhost = \"db.internal\"\n\
             [users.u]\npassword = \"x\"\n",
            quoted(&server.cert),
            quoted(&server.key),
            quoted(&pki.ca()),
            quoted(&pki.ca()),
        );
        let contexts = build_tls(&parse_str(&text, "c.toml").unwrap()).unwrap();
        let clients = contexts.clients.as_ref().unwrap();
        assert_eq!((clients.required, clients.sslmode), (true, "verify-ca"));
        assert_eq!(clients.postgres.alpn_protocols, [b"postgresql".to_vec()]);
        assert!(clients.mysql.alpn_protocols.is_empty());
        let (a, b) = (
            contexts.upstream("a").unwrap(),
            contexts.upstream("b").unwrap(),
        );
        assert!(Arc::ptr_eq(&a.config, &b.config));
        assert_eq!(a.server_name, ServerName::try_from("db.internal").unwrap());
    }

    #[test]
    fn a_file_that_went_bad_after_loading_is_named() {
        let pki = TestPki::new();
        let server = pki.server("server", &["localhost"]);
        let text = format!(
            "[general]\nclient_tls_sslmode = \"require\"\nclient_tls_cert_file = {}\n\
             client_tls_key_file = {}\n[databases.app]\n[users.u]\npassword = \"x\"\n",
            quoted(&server.cert),
            quoted(&server.key),
        );
        let config = parse_str(&text, "c.toml").unwrap();
        std::fs::remove_file(&server.key).unwrap();
        let error = build_tls(&config).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "client TLS: cannot read {}: No such file or directory (os error 2)",
                server.key.display()
            )
        );
    }

    #[test]
    fn verify_full_needs_a_host_name_it_can_check() {
        let text = "[databases.app]\nhost = \"db..internal\"\nserver_tls_sslmode = \"verify-full\"\n\
                    server_tls_ca_file = \"/nonexistent\"\n[users.u]\npassword = \"x\"\n";
        // The loader already refuses the missing CA file; build the rest by hand.
        let mut config = parse_str(
            "[databases.app]\nhost = \"db..internal\"\n[users.u]\npassword = \"x\"\n",
            "c.toml",
        )
        .unwrap();
        assert!(parse_str(text, "c.toml").is_err());
        let database = config.databases.get_mut("app").unwrap();
        database.pool.server_tls.sslmode = ServerTlsMode::VerifyFull;
        let error = build_tls(&config).unwrap_err().to_string();
        assert_eq!(
            error,
            "database \"app\": host \"db..internal\" is not a DNS name or IP address that \
             server_tls_sslmode = \"verify-full\" can check a certificate against"
        );
        database_with_require_still_connects(&mut config);
    }

    fn database_with_require_still_connects(config: &mut Config) {
        let database = config.databases.get_mut("app").unwrap();
        database.pool.server_tls.sslmode = ServerTlsMode::Require;
        let contexts = build_tls(config).unwrap();
        assert_eq!(
            contexts.upstream("app").unwrap().server_name,
            ServerName::try_from("localhost").unwrap()
        );
    }
}
