//! Run with: cargo run --example tls --features tls
//!
//! `wss://`: the standalone server serves TLS with a certificate and key
//! (PEM files; here a self-signed pair made for `localhost`), and a client
//! trusts that certificate besides the system's roots. In one process; it
//! exits after one call.

use clap::Parser;
use wsduplex::tls::{RootCertificates, Tls};
use wsduplex::{Client, Connection, Server};

#[wsduplex::service(namespace = "secret")]
pub trait Vault {
    /// The secret, over an encrypted connection only.
    async fn open(&self) -> String;
}

struct Safe;

impl Vault for Safe {
    async fn open(&self) -> String {
        "the secret".into()
    }
}

#[derive(Parser)]
struct Options {
    /// A PEM certificate chain; a self-signed one for `localhost` is made when left out.
    #[arg(long, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key.
    #[arg(long, requires = "cert")]
    key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let (cert, key) = match (options.cert, options.key) {
        (Some(cert), Some(key)) => (cert, key),
        _ => self_signed()?,
    };
    let server = Server::builder().tls(Tls::from_pem_files(&cert, &key)?).build("127.0.0.1:0").await?;
    let url = format!("wss://localhost:{}/", server.local_addr()?.port());
    tokio::spawn(server.serve(|_conn: Connection| Safe.into_service()));

    let trusting = Client::builder().root_certificates(RootCertificates::from_pem_file(&cert)?);
    let vault = VaultClient::connect_with(trusting, &url).await?;
    println!("over {url}: {}", vault.open().await?);
    Ok(())
}

/// A certificate for `localhost` and its key, written to a temporary directory.
fn self_signed() -> Result<(std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error>> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let dir = std::env::temp_dir().join(format!("wsduplex-example-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert, key))
}
