// Rule: `callback = X` names a contract trait; a plain trait has no generated stub.
pub trait Plain {
    fn ping(&self);
}

#[wsduplex::service(namespace = "x", callback = Plain)]
pub trait Service {
    async fn a(&self) -> u8;
}

fn main() {}
