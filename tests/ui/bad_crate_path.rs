// Rule: `crate = "..."` is a path to the runtime crate.
#[wsduplex::service(crate = "not a path")]
pub trait Service {
    async fn hello(&self) -> u8;
}

#[derive(Debug, wsduplex::RpcError)]
#[rpc(crate = 7)]
pub enum Failure {
    #[rpc(code = 1)]
    Bad,
}

fn main() {}
