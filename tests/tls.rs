//! TLS: `wss://` on the standalone server and on an axum router, with a
//! certificate made at test time; a client that does not trust it fails its
//! handshake while the server goes on serving others.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsduplex::{Client, Connection, Error, Server, tls::RootCertificates, tls::Tls, tls::TlsListener};

/// A self-signed certificate for localhost, written as PEM files into a
/// directory of its own, removed on drop.
struct Certificate {
    dir: PathBuf,
    pem: String,
}

impl Certificate {
    fn new() -> Certificate {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "wsduplex-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = made.cert.pem();
        std::fs::write(dir.join("cert.pem"), &pem).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Certificate { dir, pem }
    }

    fn tls(&self) -> Tls {
        Tls::from_pem_files(self.dir.join("cert.pem"), self.dir.join("key.pem")).unwrap()
    }

    fn trusting_client(&self) -> wsduplex::client::ClientBuilder {
        Client::builder().root_certificates(RootCertificates::from_pem(&self.pem).unwrap())
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_standalone_server_speaks_wss_to_a_client_that_trusts_it() {
    let certificate = Certificate::new();
    let mut server = start_server_with(Server::builder().tls(certificate.tls())).await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    let client =
        within(ServiceClient::connect_with(certificate.trusting_client(), &url, Listener::default())).await.unwrap();
    server.next_connection().await;
    assert_eq!(within(client.echo("over tls".into())).await.unwrap(), "over tls");
    // A callback, the other way, over the same TLS stream.
    assert_eq!(within(client.ask("and back?".into())).await.unwrap(), "answer to and back?");
    // By name too.
    let by_name = format!("wss://localhost:{}/ws", server.addr.port());
    let again = within(ServiceClient::connect_with(certificate.trusting_client(), &by_name, Listener::default()))
        .await
        .unwrap();
    assert_eq!(within(again.echo("by name".into())).await.unwrap(), "by name");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_and_the_server_serves_on() {
    let certificate = Certificate::new();
    let mut server = start_server_with(Server::builder().tls(certificate.tls())).await;
    let url = format!("wss://127.0.0.1:{}/ws", server.addr.port());
    // The client trusts another root (so the TLS handshake does happen, even
    // on a machine without system roots): the server's certificate fails it.
    let stranger = Certificate::new();
    match within(stranger.trusting_client().connect(&url, wsduplex::contract::NoCallbacks::service())).await {
        Err(Error::Transport(error)) => assert!(error.to_string().contains("invalid peer certificate"), "{error}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // With the system's roots only, it fails too.
    assert!(within(Client::builder().connect(&url, wsduplex::contract::NoCallbacks::service())).await.is_err());
    // Plain ws:// to a TLS port is not a WebSocket.
    let plain = format!("ws://127.0.0.1:{}/ws", server.addr.port());
    assert!(within(Client::builder().connect(&plain, wsduplex::contract::NoCallbacks::service())).await.is_err());

    let client =
        within(ServiceClient::connect_with(certificate.trusting_client(), &url, Listener::default())).await.unwrap();
    server.next_connection().await;
    assert_eq!(within(client.echo("still serving".into())).await.unwrap(), "still serving");
}

#[tokio::test]
async fn an_axum_router_serves_wss_through_the_tls_listener_and_bounds_the_http_phase() {
    let certificate = Certificate::new();
    let builder = Server::builder().handshake_timeout(Duration::from_millis(500));
    let endpoint = builder.endpoint(|conn: Connection<EventsClient>| Session::detached(conn).into_service());
    let app =
        axum::Router::new().route("/", axum::routing::get(|| async { "page" })).route_service("/ws", endpoint.clone());
    let tcp = within(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let tls = certificate.tls();
    tokio::spawn(async move { endpoint.serve(TlsListener::new(tcp, tls), app).await });

    let url = format!("wss://127.0.0.1:{}/ws", addr.port());
    let stranger = Certificate::new();
    assert!(
        within(stranger.trusting_client().connect(&url, wsduplex::contract::NoCallbacks::service())).await.is_err()
    );
    let client =
        within(ServiceClient::connect_with(certificate.trusting_client(), &url, Listener::default())).await.unwrap();
    assert_eq!(within(client.echo("mounted, over tls".into())).await.unwrap(), "mounted, over tls");

    // The TLS handshake done, half a request, then nothing: cut off at the handshake timeout.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(certificate.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)] // ring, as the crate itself uses (see src/tls.rs)
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = within(connector.connect(name, tcp)).await.unwrap();
    let start = std::time::Instant::now();
    within(stream.write_all(b"GET / HTTP/1.1\r\nHost: local")).await.unwrap();
    within(stream.flush()).await.unwrap();
    let mut buffer = [0; 64];
    let read = within(stream.read(&mut buffer)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(start.elapsed() >= Duration::from_millis(500), "cut off after {:?}", start.elapsed());
}

#[test]
fn unreadable_or_invalid_pem_files_are_errors_not_panics() {
    let certificate = Certificate::new();
    let missing = Tls::from_pem_files(certificate.dir.join("nope.pem"), certificate.dir.join("key.pem"));
    assert!(missing.unwrap_err().to_string().contains("nope.pem"));
    std::fs::write(certificate.dir.join("junk.pem"), "not a certificate").unwrap();
    assert!(Tls::from_pem_files(certificate.dir.join("junk.pem"), certificate.dir.join("key.pem")).is_err());
    assert!(Tls::from_pem_files(certificate.dir.join("cert.pem"), certificate.dir.join("junk.pem")).is_err());
    let other = Certificate::new();
    let mismatched = Tls::from_pem_files(certificate.dir.join("cert.pem"), other.dir.join("key.pem"));
    assert!(mismatched.is_err(), "a key that is not the certificate's");
    assert!(RootCertificates::from_pem("no pem here").is_err());
    assert!(
        RootCertificates::from_pem_file(certificate.dir.join("nope.pem")).unwrap_err().to_string().contains("nope.pem")
    );
}
