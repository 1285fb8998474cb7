// Rule: a `Result` under a name that does not end in `Result` is refused, since
// it would be sent as `{"Ok": ...}` instead of a result or an error object.
pub type Answer = Result<bool, wsduplex::ErrorObjectOwned>;

#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn ask(&self) -> Answer;
}

fn main() {}
