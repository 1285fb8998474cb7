// Rule: parameters are owned types, since they are decoded from the incoming message.
#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn greet(&self, name: &str) -> String;
}

fn main() {}
