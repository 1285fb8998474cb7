// Rule: #[authorize] is for service methods; a client's callbacks have no caller roles to check.
#[wsduplex::callback(namespace = "x")]
pub trait Events {
    #[authorize(role = "admin")]
    async fn reset(&self) -> u8;
}

fn main() {}
