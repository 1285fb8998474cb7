// Rule: `callback = X` names a trait declared with #[wsduplex::callback], not a service.
#[wsduplex::service(namespace = "other")]
pub trait Other {
    async fn ping(&self);
}

#[wsduplex::service(namespace = "x", callback = Other)]
pub trait Service {
    async fn a(&self) -> u8;
}

fn main() {}
