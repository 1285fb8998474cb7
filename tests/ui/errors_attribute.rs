// Rule: `#[errors(..)]` names variants of the method's error enum, written
// out as `Result<T, E>`; a name that is not a variant is reported at it.
#[derive(Debug, wsduplex::RpcError)]
pub enum Failure {
    #[rpc(code = 1)]
    Bad,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad")
    }
}

#[wsduplex::service(namespace = "x")]
pub trait Service {
    #[errors(Bad, Worse)]
    async fn a(&self) -> Result<u8, Failure>;
}

#[wsduplex::service(namespace = "y")]
pub trait Plain {
    #[errors(Bad)]
    async fn b(&self) -> u8;
    #[errors = "Bad"]
    async fn c(&self) -> Result<u8, Failure>;
}

fn main() {}
