// Rule: a fan-out reaches many clients, so it sends #[oneway] methods only;
// a method with a reply goes to one connection.
#[wsduplex::callback(namespace = "x")]
pub trait Events {
    #[oneway]
    async fn news(&self, text: String);
    async fn ask(&self, question: String) -> bool;
}

async fn broadcast(hub: wsduplex::Hub<EventsClient>) {
    let _ = hub.all().ask("everyone?".into()).await;
}

fn main() {
    let _ = broadcast;
}
