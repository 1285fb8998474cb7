// Rule: codes written as constants are checked when the crate compiles: none
// in the reserved range, no two alike.
#[derive(Debug, wsduplex::RpcError)]
pub enum ShopError {
    #[rpc(code = TIMED_OUT)]
    Reserved,
    #[rpc(code = SAME)]
    First,
    #[rpc(code = SAME)]
    Second,
}

const TIMED_OUT: i32 = -32020;
const SAME: i32 = 9;

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shop error")
    }
}

fn main() {}
