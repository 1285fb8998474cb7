//! Generators of hostile input for the property-based tests: any JSON value,
//! and texts shaped like JSON-RPC messages, whole, cut short or in batches.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value, nested a few levels.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("JSON has no NaN or infinity", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..6).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Member names a JSON-RPC message may have, and one it may not.
const MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error", "extra"];

/// Values that make a member look right more often than chance would.
fn plausible(member: &'static str, methods: &'static [&'static str]) -> BoxedStrategy<Value> {
    match member {
        "jsonrpc" => prop_oneof![4 => Just(Value::from("2.0")), 1 => json()].boxed(),
        "method" => prop_oneof![4 => proptest::sample::select(methods).prop_map(Value::from), 1 => json()].boxed(),
        "id" => prop_oneof![
            3 => any::<u32>().prop_map(Value::from),
            1 => ".{0,6}".prop_map(Value::from),
            1 => json(),
        ]
        .boxed(),
        "error" => prop_oneof![
            2 => (any::<i32>(), ".{0,8}", json()).prop_map(|(code, message, data)| {
                serde_json::json!({"code": code, "message": message, "data": data})
            }),
            1 => json(),
        ]
        .boxed(),
        _ => json().boxed(),
    }
}

/// An object built from JSON-RPC member names with plausible or arbitrary values.
fn message(methods: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::sample::subsequence(MEMBERS, 0..=MEMBERS.len())
        .prop_flat_map(move |members| {
            members
                .into_iter()
                .map(|member| plausible(member, methods).prop_map(move |v| (member, v)))
                .collect::<Vec<_>>()
        })
        .prop_map(|members| Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()))
}

/// The text of a frame: a message, a batch of them, any JSON, or any of
/// these cut short.
pub(crate) fn frame_text(methods: &'static [&'static str]) -> impl Strategy<Value = String> {
    let whole = prop_oneof![
        4 => message(methods).prop_map(|m| m.to_string()),
        2 => vec(message(methods), 0..5).prop_map(|ms| Value::Array(ms).to_string()),
        1 => json().prop_map(|v| v.to_string()),
    ];
    (whole, any::<Option<proptest::sample::Index>>()).prop_map(|(text, cut)| match cut {
        Some(at) if !text.is_empty() => {
            let mut end = at.index(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        }
        _ => text,
    })
}
