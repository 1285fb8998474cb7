// Rule: codes in -32768..=-32000 belong to JSON-RPC and wsduplex; a derived error cannot use them.
#[derive(Debug, wsduplex::RpcError)]
pub enum ShopError {
    #[rpc(code = -32601)]
    Literal,
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

fn main() {}
