//! Contract metadata, OpenRPC documents and generated TypeScript.

#[path = "../examples/shared/chat_contract.rs"]
#[allow(dead_code)]
mod chat_contract;

#[test]
fn print_chat() {
    let doc = wsduplex::openrpc::document(chat_contract::ChatClient::contract());
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}

#[test]
fn print_chat_ts() {
    let ts = wsduplex::typescript::render(&[chat_contract::ChatClient::contract()]);
    println!("{}\n-----\n{}", ts.javascript, ts.declarations);
}
