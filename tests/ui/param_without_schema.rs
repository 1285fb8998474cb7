// Rule: parameter and result types have a JSON Schema, for the contract's
// OpenRPC document and TypeScript types; the error says what to derive.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Point {
    x: i32,
}

#[wsduplex::service(namespace = "x")]
pub trait Service {
    async fn at(&self, point: Point) -> u8;
}

fn main() {}
