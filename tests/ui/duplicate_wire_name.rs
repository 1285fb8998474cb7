// Rule: two methods cannot share a wire name (here through a rename).
#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn first(&self) -> u8;
    #[method(name = "first")]
    async fn second(&self) -> u8;
}

fn main() {}
