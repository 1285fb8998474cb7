// Rule: a server's hub calls the callback contract of the service it serves.
use wsduplex::{Connection, Hub, Server};

#[wsduplex::callback(namespace = "a")]
pub trait AEvents {
    #[oneway]
    async fn tick(&self);
}

#[wsduplex::callback(namespace = "b")]
pub trait BEvents {
    #[oneway]
    async fn tock(&self);
}

#[wsduplex::service(namespace = "b", callback = BEvents)]
pub trait B {
    async fn hello(&self) -> u8;
}

struct Session;

impl B for Session {
    async fn hello(&self) -> u8 {
        1
    }
}

async fn serve(hub: Hub<AEventsClient>) {
    let server = Server::builder().hub(&hub).build("127.0.0.1:0").await.unwrap();
    server.serve(|_conn: Connection<BEventsClient>| Session.into_service()).await.unwrap();
}

fn main() {
    let _ = serve;
}
