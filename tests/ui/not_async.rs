// Rule: every contract method is an `async fn`.
#[wsduplex::service(namespace = "x")]
pub trait Service {
    fn sync_method(&self) -> u8;
}

fn main() {}
