// Rule: a #[oneway] method sends no reply, so it returns nothing (or Result<(), E>).
#[wsduplex::service(namespace = "x")]
pub trait Service {
    #[oneway]
    async fn fire(&self) -> u32;
}

fn main() {}
