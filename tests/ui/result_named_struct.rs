// Rule: a return type whose name ends in `Result` is read as a `Result`; a struct
// so named gets an error that says how to return it.
#[derive(serde::Serialize)]
pub struct SearchResult<T>(Vec<T>);

#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn search(&self) -> SearchResult<u8>;
}

fn main() {}
