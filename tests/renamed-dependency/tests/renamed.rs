//! Calls and callbacks over loopback with contracts generated against a
//! renamed runtime crate and a facade.

use std::time::Duration;

use duplex::{Connection, Server};
use wsduplex_renamed_dependency::{Echo, EchoClient, Facaded, FacadedClient, Failure, Ping, PingClient, Refusal};

struct Session(Connection<PingClient>);

impl Echo for Session {
    async fn echo(&self, text: String) -> Result<String, Failure> {
        let seven = self.0.callback().ping().await.map_err(|e| Failure::Callback { reason: e.to_string() })?;
        if text.is_empty() {
            return Err(Failure::Empty);
        }
        Ok(format!("{text} {seven}"))
    }
}

struct Seven;

impl Ping for Seven {
    async fn ping(&self) -> u8 {
        7
    }
}

struct One;

impl Facaded for One {
    async fn one(&self) -> Result<u8, Refusal> {
        Ok(1)
    }
}

#[tokio::test]
async fn a_renamed_dependency_serves_calls_callbacks_and_typed_errors() {
    let work = async {
        let server = Server::builder().build("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", server.local_addr().unwrap());
        tokio::spawn(server.serve(|conn| Session(conn).into_service()));
        let echo = EchoClient::connect(&url, Seven).await.unwrap();
        assert_eq!(echo.echo("hi".into()).await.unwrap(), "hi 7");
        match echo.echo(String::new()).await {
            Err(duplex::CallError::Method(Failure::Empty)) => {}
            other => panic!("expected Failure::Empty, got {other:?}"),
        }
        let codes: Vec<i32> =
            EchoClient::contract().method("r.echo").unwrap().documented_errors().iter().map(|e| e.code).collect();
        assert_eq!(codes, [1, 2]);
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("timed out");
}

#[tokio::test]
async fn a_contract_names_the_runtime_through_a_facade() {
    let work = async {
        let server = Server::builder().build("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", server.local_addr().unwrap());
        tokio::spawn(server.serve(|_conn: Connection| One.into_service()));
        let facaded = FacadedClient::connect(&url).await.unwrap();
        assert_eq!(facaded.one().await.unwrap(), 1);
        let errors = FacadedClient::contract().method("f.one").unwrap().documented_errors();
        assert_eq!((errors[0].code, errors[0].name), (3, "No"));
    };
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("timed out");
}
