//! Run with: cargo run --example typescript -- --out target/ts
//!
//! A contract's metadata makes its OpenRPC document (what servers answer
//! `rpc.discover` with) and a typed TypeScript client over the npm package
//! `wsduplex` (`clients/js`): `calc.js` and `calc.d.ts`, written to `--out`
//! (printed when left out).

use clap::Parser;
use wsduplex::codegen::{openrpc, typescript};

/// A calculator.
#[wsduplex::service(namespace = "calc", callback = Display)]
pub trait Calculator {
    /// Adds two numbers; `c` may be left out.
    async fn add(&self, a: i64, b: i64, c: Option<i64>) -> i64;
}

/// What the calculator shows on the caller's display.
#[wsduplex::callback(namespace = "calc")]
pub trait Display {
    #[oneway]
    async fn show(&self, text: String);
}

#[derive(Parser)]
struct Options {
    /// A directory to write `calc.js`, `calc.d.ts` and `calc.openrpc.json` into.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::parse();
    let contract = CalculatorClient::contract();
    let client = typescript::render(&[contract]);
    let document = serde_json::to_string_pretty(&openrpc::document(contract))?;
    match options.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            client.write(&dir, "calc")?;
            std::fs::write(dir.join("calc.openrpc.json"), document)?;
            println!("wrote calc.js, calc.d.ts and calc.openrpc.json to {}", dir.display());
        }
        None => println!("{}\n{}", client.declarations, document),
    }
    Ok(())
}
