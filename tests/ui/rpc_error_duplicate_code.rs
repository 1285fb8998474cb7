// Rule: two variants of a #[derive(RpcError)] enum cannot share a code.
#[derive(Debug, wsduplex::RpcError)]
pub enum ShopError {
    #[rpc(code = 7)]
    SoldOut,
    #[rpc(code = 7)]
    Closed,
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

fn main() {}
