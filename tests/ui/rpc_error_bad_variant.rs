// Rule: a coded variant's `data` is one unnamed field or named fields; a
// transparent variant holds exactly one field; #[rpc] takes only `code` or `transparent`.
#[derive(Debug, wsduplex::RpcError)]
pub enum ShopError {
    #[rpc(code = 1)]
    Between(u32, u32),
    #[rpc(transparent)]
    Nothing,
    #[rpc(status = 3)]
    Odd,
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

fn main() {}
