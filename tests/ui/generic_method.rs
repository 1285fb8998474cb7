// Rule: contract traits and methods are not generic: the wire has one shape per method.
#[wsduplex::service(namespace = "x")]
pub trait Service<T> {
    async fn any<U: Clone>(&self, value: U) -> u8;
}

fn main() {}
