//! Run with: cargo run --example auth -- --token s3cret
//!
//! Who may connect is decided on the upgrade request: an authentication hook
//! reads a bearer token (or `?token=` for browsers, which cannot set
//! headers) and lets the connection in as a user, or refuses it with 401;
//! an origin allow-list refuses pages from other sites with 403. Three
//! clients try; each prints how it fared.

use clap::Parser;
use http::{HeaderName, HeaderValue};
use wsduplex::server::{Handshake, Identity, Refusal};
use wsduplex::{Client, Connection, Error, Server};

#[wsduplex::service(namespace = "me")]
pub trait WhoAmI {
    /// The user this connection was let in as.
    async fn whoami(&self) -> String;
}

struct Session(Connection);

impl WhoAmI for Session {
    async fn whoami(&self) -> String {
        self.0.user().unwrap_or("nobody").to_owned()
    }
}

#[derive(Parser)]
struct Options {
    /// The token that lets a client in.
    #[arg(long, default_value = "s3cret")]
    token: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let token = options.token.clone();
    let server = Server::builder()
        .allow_origin("https://chat.example")
        .authenticate(move |handshake: &Handshake| {
            let given = handshake.bearer_token().map(str::to_owned).or_else(|| handshake.query("token"));
            match given {
                Some(given) if given == token => Ok(Identity::user("ada")),
                Some(_) => Err(Refusal::forbidden("wrong token")),
                None => Err(Refusal::unauthorized("a token is needed")),
            }
        })
        .build("127.0.0.1:0")
        .await?;
    let url = format!("ws://{}/", server.local_addr()?);
    tokio::spawn(server.serve(|conn| Session(conn).into_service()));

    let bearer = HeaderValue::from_str(&format!("Bearer {}", options.token))?;
    let with_token = Client::builder().header(http::header::AUTHORIZATION, bearer);
    let client = with_token.connect(&url, wsduplex::contract::NoCallbacks::service()).await?;
    println!("with the token: in as {}", WhoAmIClient::new(client).whoami().await?);

    match WhoAmIClient::connect(&url).await {
        Err(Error::Refused { status }) => println!("without a token: refused with HTTP {status}"),
        other => println!("without a token: unexpectedly {:?}", other.map(|_| ())),
    }

    let origin = HeaderName::from_static("origin");
    let from_elsewhere = Client::builder().header(origin, HeaderValue::from_static("https://evil.example"));
    let query_url = format!("{url}?token={}", options.token);
    match from_elsewhere.connect(&query_url, wsduplex::contract::NoCallbacks::service()).await {
        Err(Error::Refused { status }) => println!("from another site's page: refused with HTTP {status}"),
        other => println!("from another site's page: unexpectedly {:?}", other.map(|_| ())),
    }
    Ok(())
}
