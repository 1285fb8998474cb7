// Rule: a method cannot take a name the generated stub already uses.
#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn connect(&self) -> u8;
}

fn main() {}
