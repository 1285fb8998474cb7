// Rule: every variant of a #[derive(RpcError)] enum names its code (or is transparent).
#[derive(Debug, wsduplex::RpcError)]
pub enum ShopError {
    #[rpc(code = 1)]
    SoldOut,
    Closed,
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

fn main() {}
