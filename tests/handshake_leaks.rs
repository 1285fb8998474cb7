//! Refused handshakes (HTTP and TLS) leave no task and no file descriptor
//! behind. Alone in its own test binary: file descriptors are counted for the
//! whole process.

mod common;

use std::time::Duration;

use common::*;
use wsduplex::{
    Client, Server, contract::NoCallbacks, server::Handshake, server::Identity, server::Refusal, tls::RootCertificates,
    tls::Tls,
};

/// Tokens: `s3cret` lets in, `boom` panics the hook, `banned` is forbidden.
fn check_token(handshake: &Handshake) -> Result<Identity, Refusal> {
    match handshake.query("token").as_deref() {
        Some("s3cret") => Ok(Identity::user("ada")),
        Some("boom") => panic!("this hook panics on purpose"),
        Some("banned") => Err(Refusal::forbidden("this account may not connect")),
        Some(_) => Err(Refusal::unauthorized("that token is not valid")),
        None => Err(Refusal::unauthorized("a token is required")),
    }
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count()).unwrap_or(0)
}

#[tokio::test]
async fn refused_handshakes_leave_no_task_and_no_file_descriptor_behind() {
    let server =
        start_server_with(Server::builder().authenticate(check_token).allow_origin("https://chat.example")).await;
    // One of each first, so that lazily made things (the runtime's, the log's) exist already.
    let refusals: [(&str, &[&str]); 5] = [
        ("/ws", &[]),
        ("/ws?token=banned", &[]),
        ("/ws?token=boom", &[]),
        ("/ws?token=s3cret", &["Origin: https://evil.example"]),
        ("/ws", &["Sec-WebSocket-Version: 8"]),
    ];
    for (path, extra) in refusals {
        upgrade_response(server.addr, path, extra).await;
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let wait_for_baseline = |tasks: usize, fds: usize| {
        let metrics = metrics.clone();
        async move {
            within(async {
                while metrics.num_alive_tasks() > tasks || open_fds() > fds {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
        }
    };
    // The HTTP connections of the warm-up end when the server reads their end.
    let (tasks, fds) = (1, open_fds());
    wait_for_baseline(tasks, fds).await;
    let fds = open_fds();
    for _ in 0..20 {
        for (path, extra) in refusals {
            let response = upgrade_response(server.addr, path, extra).await;
            assert!(!response.starts_with("http/1.1 101"), "{path}: {response}");
        }
    }
    wait_for_baseline(tasks, fds).await;
    assert_eq!(metrics.num_alive_tasks(), 1, "only the accept loop");
    assert_eq!(open_fds(), fds);

    // TLS handshakes that fail: the client trusts another certificate.
    let dir = std::env::temp_dir().join(format!("wsduplex-leaks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    let tls = Tls::from_pem_files(dir.join("cert.pem"), dir.join("key.pem")).unwrap();
    let tls_server = start_server_with(Server::builder().tls(tls)).await;
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap().cert.pem();
    let url = format!("wss://127.0.0.1:{}/ws", tls_server.addr.port());
    let untrusting = || {
        Client::builder()
            .root_certificates(RootCertificates::from_pem(&stranger).unwrap())
            .connect(&url, NoCallbacks::service())
    };
    assert!(within(untrusting()).await.is_err());
    let tasks = 2;
    wait_for_baseline(tasks, fds + 2).await;
    let fds = open_fds();
    for _ in 0..20 {
        assert!(within(untrusting()).await.is_err());
    }
    wait_for_baseline(tasks, fds).await;
    assert_eq!(metrics.num_alive_tasks(), tasks, "only the two accept loops");
    assert_eq!(open_fds(), fds);
    let _ = std::fs::remove_dir_all(&dir);
}
