// Rule: #[service] and #[callback] go on a trait, nothing else.
#[wsduplex::service(namespace = "x")]
pub struct NotATrait;

fn main() {}
