// Rule: unknown macro and method arguments are errors, spanned at the key.
#[wsduplex::service(namespace = "x", colour = "blue")]
pub trait Service {
    #[method(name = "a", alias = "b")]
    async fn a(&self) -> u8;
}

#[wsduplex::callback(namespace = "x", callback = Service)]
pub trait Events {
    async fn b(&self);
}

fn main() {}
