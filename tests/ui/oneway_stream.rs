// Rule: streams never travel in notifications, so a #[oneway] method takes none.
#[wsduplex::service(namespace = "x")]
pub trait Service {
    #[oneway]
    async fn upload(&self, name: String, values: wsduplex::Incoming<u8>);
}

fn main() {}
