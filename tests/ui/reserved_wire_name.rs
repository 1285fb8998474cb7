// Rule: wire names starting with `rpc.` (JSON-RPC's) or `$/` (wsduplex's) are reserved.
#[wsduplex::service]
pub trait Service {
    #[method(name = "rpc.discover")]
    async fn discover(&self) -> u8;
}

fn main() {}
