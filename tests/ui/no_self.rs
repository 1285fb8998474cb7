// Rule: every contract method takes `&self` (not `&mut self`, not `self`, not nothing).
#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn no_receiver(value: u8) -> u8;
    async fn by_value(self) -> u8;
    async fn mutable(&mut self) -> u8;
}

fn main() {}
