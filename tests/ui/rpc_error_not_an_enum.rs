// Rule: #[derive(RpcError)] goes on an enum.
#[derive(Debug, wsduplex::RpcError)]
pub struct ShopError {
    code: i32,
}

fn main() {}
