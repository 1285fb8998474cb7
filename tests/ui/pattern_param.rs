// Rule: parameters are plain names, because the names are the keys on the wire.
#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn point(&self, (x, y): (i32, i32)) -> i32;
}

fn main() {}
